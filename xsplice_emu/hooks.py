"""Every Python Unicorn hook, behind one exception guard.

An exception raised inside a hook is recorded on the vCPU, `emu_stop()` is
called, and the machine re-raises it once `emu_start` has returned. The
hooks only forward to the machine's handlers; no logic lives here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from unicorn import UC_HOOK_CODE, UC_HOOK_INSN, UC_HOOK_INTR
from unicorn.x86_const import UC_X86_INS_IN, UC_X86_INS_OUT

from .vcpu import StopReason, Vcpu

if TYPE_CHECKING:
    from .machine import Machine


def _guarded(vcpu: Vcpu, body: Callable, default=None) -> Callable:
    def hook(uc, *args):
        try:
            return body(*args[:-1])
        except BaseException as exc:  # re-raised by the machine after emu_start
            vcpu.hook_error = exc
            vcpu.stop_reason = StopReason.HOOK
            uc.emu_stop()
            return default
    return hook


def install(vcpu: Vcpu, machine: Machine, iretq_addresses: list[int]) -> None:
    """Register the port, exception and iretq hooks of `vcpu` on `machine`."""
    uc = vcpu.uc
    uc.hook_add(UC_HOOK_INSN, _guarded(vcpu, lambda port, size, value: machine.port_out(vcpu, port, value)),
                None, 1, 0, UC_X86_INS_OUT)
    uc.hook_add(UC_HOOK_INSN, _guarded(vcpu, lambda port, size: machine.port_in(vcpu, port), 0xFFFFFFFF),
                None, 1, 0, UC_X86_INS_IN)
    uc.hook_add(UC_HOOK_INTR, _guarded(vcpu, lambda intno: machine.exception(vcpu, intno)))
    for address in iretq_addresses:
        uc.hook_add(UC_HOOK_CODE, _guarded(vcpu, lambda address, size: machine.iretq(vcpu)), None, address, address)
