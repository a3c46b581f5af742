"""Xen's `struct livepatch_func` (the payload ABI, public/sysctl.h) as the host reads it while Xen's patching code
runs: the rendezvous observer and the safety oracle's feed both note the record Xen patches from.

Xen's loader may take a record whose name points outside RAM, or whose target does (a damaged payload): the
host only observes, so such a record reads with a stand-in name, or not at all, and never stops the run; Xen's
own code then meets what it meets (its stores fault, and it panics as it would on hardware).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ...errors import MachineError
from ...machine.memory import GuestMemory

FUNC_NAME, FUNC_NEW_ADDR, FUNC_OLD_ADDR, FUNC_SIZES = 0x0, 0x8, 0x10, 0x18
"""Offsets of name, new_addr, old_addr, then new_size and old_size (two uint32)."""
NAME_MAX = 128
"""XEN_LIVEPATCH_NAME_SIZE: a record's name is read up to this many bytes."""


@dataclass(frozen=True)
class FuncRecord:
    """What one record says: the function's name, the new code (0: a NOP record) and the old, and their sizes."""

    name: str
    new_addr: int
    old_addr: int
    new_size: int
    old_size: int


def read_func_record(memory: GuestMemory, address: int) -> FuncRecord | None:
    """The record at `address`, None when it lies outside RAM; a name outside RAM reads `<name at 0x...>`."""
    try:
        name_at, new_addr, old_addr = (memory.read_u64(address + offset)
                                       for offset in (FUNC_NAME, FUNC_NEW_ADDR, FUNC_OLD_ADDR))
        new_size, old_size = struct.unpack("<II", memory.read(address + FUNC_SIZES, 8))
    except MachineError:
        return None
    try:
        name = memory.read_cstring(name_at, NAME_MAX)
    except MachineError:
        name = f"<name at {name_at:#x}>"
    return FuncRecord(name, new_addr, old_addr, new_size, old_size)
