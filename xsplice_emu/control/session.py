"""One live machine with its livepatch controller and operator tool.

Scenarios and the interactive shell drive a `Session`: operator commands,
virtual time, stalls and NMIs, and the values every vCPU computes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..duration import NS_PER_MS, NS_PER_US
from ..engines import ENGINES, LivepatchEngine
from ..engines.controller import Livepatch
from ..engines.xen import XenLivepatch, XenMachine
from ..errors import ConfigError
from ..image import load_image
from ..machine import PS_PER_NS, Machine, MachineConfig
from ..provision.debian import load_xen_syms
from ..provision.firmware import builtin_firmware
from ..tracing import EventKind
from .operator import OperatorTool, Outcome
from .verbs import Request

DEFAULT_BOOT_MS = 2.0
DEFAULT_CLOCK_MHZ = 1000
"""Virtual instructions per microsecond."""
DEFAULT_TIMER_HZ = 1000
"""Each vCPU's timer interrupts per virtual second."""
RATE_MAX = 1_000_000
"""The highest clock (MHz) and timer rate (Hz) a session takes."""
XEN_EXTRAVERSION_LEN = 16
"""Bytes of the field Xen's version hypercall (XENVER_extraversion) copies the extra version into, NUL included:
what a tool reading Xen's version sees (xen/include/public/version.h)."""


@dataclass(frozen=True)
class Versions:
    """What one vCPU's calls of Xen's version functions returned."""

    major: int
    minor: int
    extra: str


VERSION_PARTS = ("major", "minor", "extra")
"""The version functions, xen_<part>_version, in the order `versions` calls them."""


def text_digest(machine: Machine | XenMachine) -> str:
    """SHA-256 of the firmware's and the hypervisor's code as guest memory holds it now."""
    return "".join(machine.memory.digest(begin, end) for image in machine.images for begin, end in image.code_ranges())


class Session:
    """A booted machine that takes operator commands and scenario verbs."""

    def __init__(self, *, vcpus: int, seed: int, firmware: str | Path | None = None,
                 xen_syms: str | Path | None = None, boot_ms: float = DEFAULT_BOOT_MS, base: Path = Path("."),
                 oracle: bool = True, clock_mhz: int = DEFAULT_CLOCK_MHZ, timer_hz: int = DEFAULT_TIMER_HZ,
                 engine: str = ENGINES[0]):
        """`engine` "controller": the firmware boots and the Python controller livepatches it (or the real
        `xen_syms` image beside it); "xen": the real `xen_syms` image runs on every vCPU and livepatches
        itself."""
        hypervisor = None if xen_syms is None else load_xen_syms(xen_syms)
        config = MachineConfig(vcpus=vcpus, seed=seed, clock_hz=clock_mhz * 1_000_000, timer_hz=timer_hz)
        config.validate()
        self.machine: Machine | XenMachine
        self.livepatch: LivepatchEngine
        if engine == "xen":
            if hypervisor is None:
                raise ConfigError("the xen engine runs a real Xen image: give one (xen_syms, --xen-syms debian)")
            self.machine = XenMachine(hypervisor, config=config)
            self.text_as_built = text_digest(self.machine)
            self.livepatch = XenLivepatch(self.machine, oracle=oracle)
        elif engine == ENGINES[0]:
            self.machine = Machine(load_image(firmware or builtin_firmware()), config=config, hypervisor=hypervisor)
            self.text_as_built = text_digest(self.machine)
            self.machine.run_for(int(boot_ms * NS_PER_MS))
            self.livepatch = Livepatch(self.machine, oracle=oracle)
        else:
            raise ConfigError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
        self.engine = engine
        self.tool = OperatorTool(self.livepatch, base=base)

    def close(self) -> None:
        """Free the machine's emulators now (`close` of its machine); its trace, guest memory and what the
        oracle saw stay readable. Leaving a `with Session(...) as session:` block closes it too."""
        self.machine.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def command(self, request: Request) -> Outcome:
        """Run one operator command to its end."""
        return request.run(self.tool)

    def advance(self, ns: int) -> None:
        """Let virtual time pass."""
        self.machine.run_for(ns)

    def stall(self, vcpu: int, ns: int, *, delay_ns: int = 0) -> None:
        """From now (+ `delay_ns`), `vcpu` spins for `ns` with IRQs off (a `stall` event marks it): the
        firmware's stall function through a call IPI, or on the xen engine Xen's own `__udelay` once the vCPU is
        idle (whole microseconds). Meanwhile dom0 makes its requests on another vCPU (`Dom0Placement`)."""
        machine = self.machine
        at_ps = self._at(delay_ns)
        machine.trace.emit(at_ps // PS_PER_NS, vcpu, EventKind.STALL, ns=ns)
        if isinstance(machine, XenMachine):
            machine.post_call(vcpu, "__udelay", -(-ns // NS_PER_US), at_ps=at_ps, interrupts=False)
        else:
            machine.post_call(vcpu, "call_stall_irqs_off", ns, at_ps=at_ps)
        machine.dom0.hold(vcpu, begin_ps=at_ps, end_ps=at_ps + ns * PS_PER_NS)

    def call(self, vcpu: int, function: str, arguments: tuple[int | str, ...], *, delay_ns: int = 0) -> int | None:
        """Run `function` on `vcpu` (arguments: numbers, or symbols for their addresses) and give its result;
        with `delay_ns`, post it for then and give None. Names are the hypervisor's (a real Xen's when one is
        given), then the firmware's."""
        machine = self.machine
        values = [machine.address(arg) if isinstance(arg, str) else arg for arg in arguments]
        if delay_ns:
            machine.post_call(vcpu, function, *values, at_ps=self._at(delay_ns))
            return None
        return machine.call(vcpu, function, *values)

    def nmi(self, vcpu: int, *, delay_ns: int = 0) -> None:
        """An NMI to `vcpu` now (+ `delay_ns`)."""
        self.machine.send_interrupt(vcpu, self.machine.arch.nmi_vector, at_ps=self._at(delay_ns))

    def nmi_storm(self, vcpus: list[int], *, rate_khz: float, ns: int, delay_ns: int = 0) -> int:
        """NMIs to each of `vcpus` at `rate_khz` for `ns` from now (+ `delay_ns`); how many were sent."""
        machine = self.machine
        period_ps = round(PS_PER_NS * NS_PER_MS / rate_khz)
        count = max(1, ns * PS_PER_NS // period_ps)
        start = self._at(delay_ns)
        for k in range(count):
            for vcpu in vcpus:
                machine.send_interrupt(vcpu, machine.arch.nmi_vector, at_ps=start + k * period_ps)
        return count * len(vcpus)

    def preempt(self, vcpu: int, ns: int, *, delay_ns: int = 0) -> None:
        """From now (+ `delay_ns`) the host does not schedule `vcpu` for `ns` (IRQs as they were)."""
        self.machine.preempt(vcpu, ns, at_ps=self._at(delay_ns))

    def drop_flush(self, vcpu: int) -> None:
        """The next action does not drop `vcpu`'s translated code (a missing serialisation)."""
        self.livepatch.drop_flush.add(vcpu)

    @property
    def violations(self) -> Counter[str]:
        """The safety oracle's checks that fired so far, by check (empty with the oracle off)."""
        oracle = self.livepatch.oracle
        return Counter() if oracle is None else oracle.counts

    def versions(self) -> list[Versions]:
        """Each vCPU's own xen_major_version(), xen_minor_version() and xen_extra_version() (`version`)."""
        return [Versions(*each) for each in zip(*(self.version(part) for part in VERSION_PARTS), strict=True)]

    def version(self, part: str) -> list:
        """What each vCPU's own call of xen_`part`_version() returns (`part`: one of VERSION_PARTS): an int, or
        the extra version's string. On a real Xen image, what its version hypercall returns from them: the extra
        version in its 16-byte field (at most 15 characters, as /sys/hypervisor/version/extra shows it); the
        firmware has no such hypercall."""
        machine = self.machine
        results = machine.call_all(f"xen_{part}_version")
        if part != "extra":
            return [machine.arch.int_result(result) for result in results]
        extras = [machine.memory.read_cstring(address) for address in results]
        if self.livepatch.real_xen:
            extras = [extra.encode()[:XEN_EXTRAVERSION_LEN - 1].decode(errors="replace") for extra in extras]
        return extras

    def text_unchanged(self) -> bool:
        """Whether the firmware's code is byte for byte as it was built."""
        return text_digest(self.machine) == self.text_as_built

    @property
    def nmis_lost(self) -> int:
        """NMIs that landed while the rendezvous had them masked, over all actions."""
        return sum(result.nmis_lost for result in self.livepatch.results)

    def controller_machine(self, what: str) -> Machine:
        """The controller engine's machine (ConfigError: `what` is not available on the xen engine yet)."""
        if not isinstance(self.machine, Machine):
            raise ConfigError(f"{what} is not available on the xen engine yet (issue 21)")
        return self.machine

    def controller_livepatch(self, what: str) -> Livepatch:
        """The controller engine's livepatch controller (ConfigError on the xen engine, as `controller_machine`)."""
        if not isinstance(self.livepatch, Livepatch):
            raise ConfigError(f"{what} is not available on the xen engine yet (issue 21)")
        return self.livepatch

    def _at(self, delay_ns: int) -> int:
        return self.machine.now_ps + delay_ns * PS_PER_NS

