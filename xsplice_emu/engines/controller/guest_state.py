"""A payload's hypervisor-side state in guest memory: what its hooks are handed.

Xen passes a hook its `struct payload`: the function records, one
`livepatch_fstate` per record (applied or not, the bytes the patch
overwrote) and the load/unload hook arrays. The controller keeps the same
in one block of guest memory per payload, taken at upload and given back at
unload:

    descriptor (abi.PAYLOAD_DESCRIPTOR) | fstate[nfuncs] | load_funcs[] | unload_funcs[] | name

It is the one record of which functions are applied: the built-in apply and
revert, the hooks and Xen's helpers in the firmware all read and write it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...livepatch.abi import (
    FSTATE,
    HOOK_POINTER,
    LIVEPATCH_FUNC_APPLIED,
    LIVEPATCH_FUNC_NOT_APPLIED,
    PAYLOAD_DESCRIPTOR,
    TAIL_NONE,
)
from ...livepatch.names import name_bytes
from ...livepatch.payload import LoadedPayload
from ...machine import GuestMemory

_TAIL = PAYLOAD_DESCRIPTOR.offset("tail")
_APPLIED = FSTATE.offset("applied")
_INSN_BUFFER = FSTATE.offset("insn_buffer")


def block_size(loaded: LoadedPayload) -> int:
    """Bytes of guest memory the state of `loaded` needs (its name counted in bytes, NUL included)."""
    hooks = len(loaded.hooks.get("load", ())) + len(loaded.hooks.get("unload", ()))
    return (PAYLOAD_DESCRIPTOR.size + FSTATE.size * len(loaded.funcs) + HOOK_POINTER.size * hooks
            + len(name_bytes(loaded.name)) + 1)


@dataclass(frozen=True)
class GuestState:
    """The state block of one payload at `address` (the descriptor a hook gets)."""

    memory: GuestMemory
    address: int
    nfuncs: int

    @classmethod
    def create(cls, memory: GuestMemory, address: int, loaded: LoadedPayload) -> GuestState:
        """Write a fresh block for `loaded` at `address`: nothing applied, no tail."""
        fstate = address + PAYLOAD_DESCRIPTOR.size
        load, unload = loaded.hooks.get("load", ()), loaded.hooks.get("unload", ())
        load_at = fstate + FSTATE.size * len(loaded.funcs)
        unload_at = load_at + HOOK_POINTER.size * len(load)
        name_at = unload_at + HOOK_POINTER.size * len(unload)
        memory.write(address, PAYLOAD_DESCRIPTOR.struct.pack(
            name_at, loaded.records, fstate, len(loaded.funcs), len(load), len(unload), TAIL_NONE,
            load_at, unload_at, b""))
        memory.write(fstate, bytes(FSTATE.size * len(loaded.funcs)))
        memory.write(load_at, b"".join(HOOK_POINTER.pack(hook) for hook in (*load, *unload)))
        memory.write(name_at, name_bytes(loaded.name) + b"\0")
        return cls(memory, address, len(loaded.funcs))

    def _fstate(self, index: int) -> int:
        return self.address + PAYLOAD_DESCRIPTOR.size + FSTATE.size * index

    def applied(self, index: int) -> bool:
        """Whether record `index` is marked applied."""
        return self.memory.read_u32(self._fstate(index) + _APPLIED) == LIVEPATCH_FUNC_APPLIED

    def applied_all(self) -> list[bool]:
        return [self.applied(index) for index in range(self.nfuncs)]

    def overwritten(self, index: int, length: int) -> bytes:
        """The bytes the patch of record `index` overwrote."""
        return self.memory.read(self._fstate(index) + _INSN_BUFFER, length)

    def mark_applied(self, index: int, overwritten: bytes) -> None:
        """Record `index` is patched; `overwritten` are the bytes to put back."""
        self.memory.write(self._fstate(index), FSTATE.struct.pack(0, LIVEPATCH_FUNC_APPLIED, overwritten))

    def mark_reverted(self, index: int) -> None:
        self.memory.write_u32(self._fstate(index) + _APPLIED, LIVEPATCH_FUNC_NOT_APPLIED)

    def take_tail(self) -> int:
        """What a hook's *_payload_tail call asked for (abi.TAIL_*), cleared."""
        tail = self.memory.read_u32(self.address + _TAIL)
        self.memory.write_u32(self.address + _TAIL, TAIL_NONE)
        return tail

    def snapshot(self) -> bytes:
        """The descriptor and every fstate, to put back after a failed action."""
        return self.memory.read(self.address, PAYLOAD_DESCRIPTOR.size + FSTATE.size * self.nfuncs)

    def restore(self, snapshot: bytes) -> None:
        self.memory.write(self.address, snapshot)
