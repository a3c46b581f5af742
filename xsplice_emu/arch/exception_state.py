"""Clearing the exception Unicorn 2.1.4 remembers after reporting it through a hook.

QEMU keeps the exception being delivered (`old_exception`) to turn a fault raised while delivering it into a
double fault, and clears it once the CPU delivered it. An exception Unicorn reports to a `UC_HOOK_INTR` hook is
never delivered by the CPU, so it is never cleared: the next #PF or #GP on that vCPU comes as #DF (vector 8), and
any exception after that is a triple fault that halts the vCPU inside `emu_start` for ever
(docs/unicorn-lost-page-fault.md). The xen engine delivers each exception itself (through Xen's IDT), so it
clears that state as the CPU would, in the vCPU's saved context, at an offset found once by a probe.
"""

from __future__ import annotations

import ctypes
import functools

from unicorn import UC_ARCH_X86, UC_HOOK_INTR, UC_MODE_64, Uc

from ..errors import MachineError

NONE = -1
"""QEMU's `old_exception` when no exception is being delivered."""
PROBE_CODE = bytes.fromhex("31c9f7f1")  # xor ecx, ecx; div ecx: a #DE, which QEMU remembers (contributory)
PROBE_ADDRESS = 0x1000
DIVIDE_ERROR = 0


def forget_reported_exception(uc: Uc) -> None:
    """Clear the exception Unicorn reported last on `uc`, as the CPU's delivery would (call it from the
    `UC_HOOK_INTR` hook that delivers the exception)."""
    offset = _old_exception_offset()
    context = uc.context_save()
    ctypes.c_int32.from_address(_address(context) + offset).value = NONE
    uc.context_restore(context)


@functools.cache
def _old_exception_offset() -> int:
    """Where `old_exception` is in a saved context: the one 32-bit field that goes from none to the vector of an
    exception a hook was told of."""
    uc = Uc(UC_ARCH_X86, UC_MODE_64)
    uc.mem_map(PROBE_ADDRESS, 0x1000)
    uc.mem_write(PROBE_ADDRESS, PROBE_CODE)
    uc.hook_add(UC_HOOK_INTR, lambda uc, intno, data: uc.emu_stop())
    before = _fields(uc)
    uc.emu_start(PROBE_ADDRESS, PROBE_ADDRESS + len(PROBE_CODE))
    after = _fields(uc)
    found = [4 * k for k, (old, new) in enumerate(zip(before, after, strict=True))
             if (old, new) == (NONE, DIVIDE_ERROR)]
    if len(found) != 1:
        raise MachineError("this Unicorn's CPU state does not have the layout 2.1.4 has: the xen engine cannot "
                           "clear the exceptions it delivers (use unicorn 2.1.4)")
    return found[0]


def _fields(uc: Uc) -> list[int]:
    """The saved context of `uc` as 32-bit fields."""
    context = uc.context_save()
    return list((ctypes.c_int32 * (context.size // 4)).from_address(_address(context)))


def _address(context) -> int:
    address = ctypes.cast(context.context, ctypes.c_void_p).value
    assert address is not None
    return address
