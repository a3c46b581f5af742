"""The machine's I/O ports (firmware/ABI.md): console, timer, task, CPU start,
call completion and the firmware's fatal report, plus IN ports that other
packages answer (the livepatch controller's PORT_XSPLICE)."""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any, Protocol

from ..arch.base import Architecture
from ..errors import GuestFault
from ..platform import (
    FATAL_PANIC,
    PORT_CALL_DONE,
    PORT_CONSOLE,
    PORT_FATAL,
    PORT_START_CPU,
    PORT_TASK,
    PORT_TIMER,
)
from ..tracing.kinds import EventKind
from . import native
from .console import Console
from .spec import PS_PER_NS
from .vcpu import StopReason, Vcpu

PortReader = Callable[[Vcpu], int]
NO_DEVICE = 0xFFFFFFFF
"""What an IN from a port nobody answers reads (a floating bus)."""


class PortMachine(Protocol):
    """What the devices need of a machine: its architecture, timer period, trace, faults and CPU start."""

    arch: Architecture
    timer_period_ps: int

    def emit(self, vcpu: Vcpu, kind: EventKind, **fields: Any) -> None: ...

    def fault(self, vcpu: Vcpu, what: str, pc: int) -> GuestFault: ...

    def start_cpu(self, index: int, *, by: Vcpu) -> None: ...


class Ports:
    """Dispatches the guest's port accesses to the machine's devices."""

    def __init__(self, machine: PortMachine, *, vcpus: int, describe: Callable[[int], str],
                 awaited: Callable[[int, int], bool]):
        """`describe` names a firmware address (a task's entry); `awaited(vcpu, slot)`: whether the host waits
        for that call slot."""
        self.machine = machine
        self.console = Console(vcpus)
        self.console_ports = (native.ConsolePort * vcpus)(*(native.ConsolePort(port=PORT_CONSOLE)
                                                              for _ in range(vcpus)))
        """Each vCPU's console bytes not yet taken: a line reaches `_console` whole (console_port.c). One array:
        explore's rewind puts it back in one copy."""
        self._describe = describe
        self._awaited = awaited
        self.readers: dict[int, PortReader] = {}
        self._task_names: dict[int, str] = {}
        self._writers: dict[int, Callable[[Vcpu, int], None]] = {
            PORT_CONSOLE: self._console, PORT_TIMER: self._timer, PORT_TASK: self._task,
            PORT_START_CPU: self._start_cpu, PORT_CALL_DONE: self._call_done, PORT_FATAL: self._fatal,
        }

    def answer(self, port: int, reader: PortReader) -> None:
        """Let `reader(vcpu)` give what the guest's IN from `port` reads."""
        self.readers[port] = reader

    def write(self, vcpu: Vcpu, port: int, value: int) -> None:
        writer = self._writers.get(port)
        if writer is None:
            raise self.machine.fault(vcpu, f"write of {value:#x} to unknown port {port:#x}", vcpu.current_pc())
        writer(vcpu, value)

    def read(self, vcpu: Vcpu, port: int) -> int:
        reader = self.readers.get(port)
        return reader(vcpu) if reader else NO_DEVICE

    # -- the devices -------------------------------------------------------
    def console_line(self, index: int) -> str:
        """vCPU `index`'s last console line, or what it has printed of the next one."""
        self.console.write(index, self._kept(index), 0)  # (no line ends in what was kept)
        return self.console.last_line(index)

    def _kept(self, index: int) -> bytes:
        """The console bytes vCPU `index` printed since the host last took them, taken."""
        port = self.console_ports[index]
        data = ctypes.string_at(ctypes.addressof(port.bytes), port.length)
        port.length = 0
        return data

    def _console(self, vcpu: Vcpu, value: int) -> None:
        data = self._kept(vcpu.index) + bytes((value & 0xFF,))
        for line in self.console.write(vcpu.index, data, vcpu.current_time_ps() // PS_PER_NS):
            self.machine.emit(vcpu, EventKind.CONSOLE, text=line.text)

    def _timer(self, vcpu: Vcpu, value: int) -> None:
        vcpu.program_timer(value & 0xFF, now_ps=vcpu.current_time_ps(), period_ps=self.machine.timer_period_ps)
        self.machine.emit(vcpu, EventKind.TIMER, vector=vcpu.timer_vector)

    def _task(self, vcpu: Vcpu, value: int) -> None:
        name = self._task_names.get(value)
        if name is None:
            name = self._task_names[value] = self._describe(value)
        self.machine.emit(vcpu, EventKind.TASK, task=name)

    def _start_cpu(self, vcpu: Vcpu, value: int) -> None:
        self.machine.start_cpu(value, by=vcpu)

    def _call_done(self, vcpu: Vcpu, value: int) -> None:
        if self._awaited(vcpu.index, value):
            vcpu.stop(StopReason.HOOK)

    def _fatal(self, vcpu: Vcpu, value: int) -> None:
        what = "panic" if value == FATAL_PANIC else f"exception {self.machine.arch.exception_names.get(value, value)}"
        raise self.machine.fault(vcpu, what, vcpu.argument(0))
