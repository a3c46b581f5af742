"""The same registers of any vCPU, read or written in one call into Unicorn."""

from __future__ import annotations

import array
import ctypes
from collections.abc import Sequence

from unicorn.unicorn_py3.unicorn import uclib

from ..errors import MachineError
from .base import CpuState


class RegisterBatch:
    """Registers read, or written, in one call into Unicorn (one by one costs ~0.6-1 us apiece). Their 64-bit
    values are an array('Q') (unpacking a ctypes array costs ~0.8 us, an array ~0.1 us); a wider register (a
    descriptor table's) is read into a ctypes structure of the caller's, named in `structures`. One batch serves
    every vCPU: the host runs one at a time, and nothing runs between a call and the reading of its values."""

    def __init__(self, registers: Sequence[int], *, structures: Sequence[tuple[int, ctypes.Structure]] = ()):
        self.values = array.array("Q", bytes(8 * len(registers)))
        base, _ = self.values.buffer_info()  # (the array never grows: that would move it)
        self._count = len(structures) + len(registers)
        self._ids = (ctypes.c_int * self._count)(*(register for register, _ in structures), *registers)
        self._pointers = (ctypes.c_void_p * self._count)(
            *(ctypes.addressof(structure) for _, structure in structures),
            *(base + self.values.itemsize * i for i in range(len(registers))))

    def read(self, vcpu: CpuState) -> array.array[int]:
        """The registers' 64-bit values on `vcpu`, in the order given (the structures filled too)."""
        status = uclib.uc_reg_read_batch(vcpu.uc._uch, self._ids, self._pointers, self._count)
        if status:
            raise MachineError(f"vCPU {vcpu.index}: reading registers {list(self._ids)} failed ({status})")
        return self.values

    def write(self, vcpu: CpuState, *values: int) -> None:
        """Set the registers (no structures) of `vcpu` to `values`, in the order given."""
        self.values[:] = array.array("Q", values)
        status = uclib.uc_reg_write_batch(vcpu.uc._uch, self._ids, self._pointers, self._count)
        if status:
            raise MachineError(f"vCPU {vcpu.index}: writing registers {list(self._ids)} failed ({status})")
