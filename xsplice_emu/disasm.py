"""Capstone helpers: name and disassemble guest code for messages and views."""

from __future__ import annotations

from functools import cache

import capstone


@cache
def _disassembler() -> capstone.Cs:
    return capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)


def instructions(code: bytes, address: int, *, limit: int = 0):
    """(address, size, text) of each instruction decoded from `code`."""
    for insn in _disassembler().disasm(code, address, limit):
        yield insn.address, insn.size, f"{insn.mnemonic} {insn.op_str}".strip()


def first_instruction(code: bytes, address: int) -> str:
    """The text of the instruction at the start of `code`, or a note that it does not decode."""
    for _, _, text in instructions(code, address, limit=1):
        return text
    return f"(undecodable bytes {code[:8].hex(' ')})"
