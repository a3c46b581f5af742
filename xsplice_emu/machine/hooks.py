"""Every Python Unicorn hook, behind one exception guard.

An exception raised inside a hook is recorded on the vCPU, `emu_stop()` is
called, and the machine re-raises it once `emu_start` has returned. Each
hook first tells the vCPU that Python runs in its slice (`host_entered`:
the C slice loop then hands the slice to the host). The hooks only
forward to the machine's handlers; no logic lives here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from unicorn import UC_HOOK_CODE, UC_HOOK_INTR, UC_HOOK_MEM_UNMAPPED, UC_HOOK_MEM_WRITE_PROT
from unicorn.unicorn_py3.unicorn import HOOK_CODE_CFUNC

from ..platform import RAM_BASE, STACK_GUARD_SIZE, TEXT_ALIAS_OFFSET
from . import native
from .devices import NO_DEVICE, Ports
from .memory import GuestMemory
from .vcpu import StopReason, Vcpu


def guarded(vcpu: Vcpu, body: Callable[..., Any], default: Any = None) -> Callable[..., Any]:
    """A Unicorn hook calling `body` whose exception is kept on `vcpu` (re-raised after the slice); the
    hook then returns `default`."""
    budget = vcpu.budget

    def hook(uc, *args):
        if not budget.host_ran:
            vcpu.host_entered()
        try:
            return body(*args[:-1])
        except BaseException as exc:  # re-raised by the machine after emu_start
            _keep(vcpu, exc)
            return default
    return hook


def _keep(vcpu: Vcpu, error: BaseException) -> None:
    """A hook of `vcpu` raised `error`: stop the slice; the machine re-raises it after emu_start."""
    vcpu.hook_error = error
    vcpu.stop(StopReason.HOOK)


class HookedMachine(Protocol):
    """What the hooks forward to: the machine's ports, exceptions, stores into code and serialisation."""

    ports: Ports
    memory: GuestMemory

    def exception(self, vcpu: Vcpu, intno: int) -> None: ...

    def interrupt_return(self, vcpu: Vcpu) -> None: ...

    def serialise(self, vcpu: Vcpu) -> bool: ...

    def alias_write_fault(self, vcpu: Vcpu, alias_address: int, size: int) -> bool: ...

    def stack_guard(self, index: int) -> int: ...

    def guard_page_fault(self, vcpu: Vcpu, access: int, address: int) -> bool: ...


def install(vcpu: Vcpu, machine: HookedMachine, *, interrupt_returns: list[int], serialising: list[int]) -> None:
    """Register the port, exception, code-write, interrupt-return and serialising hooks of `vcpu` on `machine`."""
    uc = vcpu.uc
    ports = machine.ports

    budget = vcpu.budget

    def port_write(port: int, size: int, value: int) -> None:
        if not budget.host_ran:
            vcpu.host_entered()
        try:
            ports.write(vcpu, port, value)
        except BaseException as exc:
            _keep(vcpu, exc)

    def port_read(port: int, size: int) -> int:
        if not budget.host_ran:
            vcpu.host_entered()
        try:
            return ports.read(vcpu, port)
        except BaseException as exc:
            _keep(vcpu, exc)
            return NO_DEVICE
    vcpu.arch.add_port_hooks(uc, port_write, port_read,
                             out_first=(native.on_out_address(), ports.console_ports[vcpu.index]))
    uc.hook_add(UC_HOOK_INTR, guarded(vcpu, lambda intno: machine.exception(vcpu, intno)))
    uc.hook_add(UC_HOOK_MEM_WRITE_PROT,
                guarded(vcpu, lambda access, address, size, value: machine.alias_write_fault(vcpu, address, size),
                         False),
                None, TEXT_ALIAS_OFFSET + RAM_BASE, TEXT_ALIAS_OFFSET + machine.memory.size - 1)
    guard = machine.stack_guard(vcpu.index)
    uc.hook_add(UC_HOOK_MEM_UNMAPPED,
                guarded(vcpu, lambda access, address, size, value: machine.guard_page_fault(vcpu, access, address),
                         False),
                None, guard, guard + STACK_GUARD_SIZE - 1)
    for address in interrupt_returns:
        _hook_instruction(vcpu, address, guarded(vcpu, lambda address, size: machine.interrupt_return(vcpu)))
    for address in serialising:
        _hook_instruction(vcpu, address, guarded(vcpu, lambda address, size: machine.serialise(vcpu)))


def _hook_instruction(vcpu: Vcpu, address: int, hook: Callable[..., Any]) -> None:
    """Call `hook(uc, address, size, user_data)` before the instruction at `address` runs; registered straight
    with Unicorn (the binding's wrapper costs ~1 us a call, and every interrupt return comes here)."""
    callback = HOOK_CODE_CFUNC(hook)
    vcpu.add_hook(UC_HOOK_CODE, callback, None, address, address)
    vcpu.instruction_hooks.append(callback)  # alive as long as the vCPU
