"""The code at a patch write, before and after, disassembled with symbol names."""

from __future__ import annotations

from dataclasses import dataclass

from .symbols import Symbols


@dataclass(frozen=True)
class PatchSite:
    """What a patch write replaced at `address`: one line per instruction, old and new."""

    address: int
    before: tuple[str, ...]
    after: tuple[str, ...]

    @classmethod
    def of(cls, address: int, old: bytes, new: bytes, symbols: Symbols, *, payload: str) -> PatchSite:
        """Disassemble `old` and `new` at `address`; branch targets outside the firmware belong to `payload`."""
        return cls(address, _listing(old, address, symbols, payload), _listing(new, address, symbols, payload))


def _listing(code: bytes, address: int, symbols: Symbols, payload: str) -> tuple[str, ...]:
    decoded_list = list(symbols.arch.instructions(code, address))
    width = max((size for _, size, _ in decoded_list), default=0) * 3
    lines = []
    decoded = 0
    for at, size, text in decoded_list:
        instruction = code[at - address:at - address + size]
        targets = list(symbols.arch.direct_branch_targets(instruction, at))
        target = _target(targets[0], symbols, payload) if targets else ""
        lines.append(f"{symbols.describe(at)}  {instruction.hex(' '):<{width}}{text}{target}")
        decoded += size
    if decoded < len(code):
        lines.append(f"{symbols.describe(address + decoded)}  (undecodable bytes {code[decoded:].hex(' ')})")
    return tuple(lines)


def _target(address: int, symbols: Symbols, payload: str) -> str:
    """` <name>` after a direct branch or call to `address`: the firmware's function, or the payload's code."""
    name = symbols.name(address)
    if name:
        return f"  <{name}>"
    return f"  <payload {payload}>" if symbols.image is not None else ""
