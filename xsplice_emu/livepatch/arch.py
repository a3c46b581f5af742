"""x86 patch bytes: the jump that redirects an old function, and NOP runs."""

from __future__ import annotations

import struct

from .abi import PATCH_INSN_SIZE

# Intel's recommended multi-byte NOPs, 1 to 9 bytes.
_NOPS = (
    b"",
    bytes.fromhex("90"),
    bytes.fromhex("6690"),
    bytes.fromhex("0f1f00"),
    bytes.fromhex("0f1f4000"),
    bytes.fromhex("0f1f440000"),
    bytes.fromhex("660f1f440000"),
    bytes.fromhex("0f1f8000000000"),
    bytes.fromhex("0f1f840000000000"),
    bytes.fromhex("660f1f840000000000"),
)


def jump(old_addr: int, new_addr: int) -> bytes:
    """`jmp new_addr` encoded at `old_addr` (E9 rel32)."""
    return b"\xe9" + struct.pack("<i", new_addr - (old_addr + PATCH_INSN_SIZE))


def nops(size: int) -> bytes:
    """`size` bytes of NOPs, as few instructions as possible."""
    out = bytearray()
    while size > 0:
        chunk = min(size, len(_NOPS) - 1)
        out += _NOPS[chunk]
        size -= chunk
    return bytes(out)
