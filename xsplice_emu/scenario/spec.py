"""A scenario file (TOML), read and checked whole before anything runs.

    name = "..."                     # optional; default: the file's stem
    description = "..."              # optional
    [machine]                        # vcpus (4), seed (0), firmware, boot_ms (2), xen_syms (a real Xen's
                                     #   xen-syms, "debian" for Debian's pinned Xen 4.17 build,
                                     #   "debian:VERSION" for another; fetched once),
                                     #   oracle (true: the safety oracle checks every run),
                                     #   clock_mhz (1000), timer_hz (1000)
                                     #   engine ("controller"; "xen": the xen_syms image runs on the
                                     #   vCPUs and livepatches itself, xsplice_emu/engines/xen)
    [[step]]                         # one step of a kind in steps.STEP_KINDS:
    livepatch = "apply hello"        #   + expect_rc (an errno: 0, EINVAL...), expect_output
    run_ms = 5
    stall = { vcpu = 2, ms = 50 }    #   + delay_us: start that much later
    nmi = { vcpu = 1 }               #   + delay_us
    expect = { extra_version = "Hello World", state = { hello = "APPLIED" } }
                                     #   a version may also be { not = 7 }
    expect = { violations = { torn = { at_least = 1 } } }
                                     #   the safety oracle's; without any, the scenario ends with an
                                     #   implicit expect = { violations = 0 }

Every mistake is a ConfigError naming the file, the step and what is wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..control.session import DEFAULT_BOOT_MS, DEFAULT_CLOCK_MHZ, DEFAULT_TIMER_HZ, RATE_MAX
from ..engines import ENGINES
from ..errors import ConfigError, ImageError, ToolchainError
from ..files import read_toml_and_text
from ..image import load_image
from ..platform import NR_CPUS
from ..provision.debian import is_debian_build, load_xen_syms
from ..suggest import did_you_mean
from .faults import step_kinds
from .keys import Key, KeyProblem, Value, read_keys
from .steps import ExpectStep, Step


class ScenarioUnavailable(ConfigError):
    """A scenario this host cannot run: the Debian build or the tool it needs cannot be had here."""


@dataclass(frozen=True)
class MachineSpec:
    vcpus: int = 4
    seed: int = 0
    firmware: Path | None = None
    boot_ms: float = DEFAULT_BOOT_MS
    xen_syms: str | None = None  # a path, or debian[:VERSION]
    oracle: bool = True
    clock_mhz: int = DEFAULT_CLOCK_MHZ
    timer_hz: int = DEFAULT_TIMER_HZ
    engine: str = ENGINES[0]


@dataclass(frozen=True)
class Schedule:
    """How the scheduler draws once the machine has booted (an exploration's run): slices and ties from
    `seed`; with strategy "pct", PCT priorities with `depth` - 1 change points among the next `steps`
    instructions."""

    seed: int
    strategy: str = "random"
    depth: int = 0
    steps: int = 0


DOCUMENT_KEYS = (Key("name", Value.TEXT, optional=True), Key("description", Value.TEXT, optional=True),
                 Key("machine", Value.TABLE, optional=True), Key("step", Value.LIST, optional=True),
                 Key("explore", Value.TABLE, optional=True))
MACHINE_KEYS = (Key("vcpus", Value.INTEGER, optional=True), Key("seed", Value.INTEGER, optional=True),
                Key("firmware", Value.TEXT, optional=True), Key("boot_ms", Value.MS, optional=True),
                Key("xen_syms", Value.TEXT, optional=True), Key("oracle", Value.FLAG, optional=True),
                Key("clock_mhz", Value.INTEGER, optional=True), Key("timer_hz", Value.INTEGER, optional=True),
                Key("engine", Value.TEXT, optional=True))


@dataclass(frozen=True)
class Scenario:
    path: Path
    name: str
    description: str
    machine: MachineSpec
    steps: tuple[Step, ...]
    explore: dict[str, Any] = field(default_factory=dict)  # its [explore] table, as written (explore checks it)
    schedule: Schedule | None = None  # set by a replay: how the scheduler draws after the boot
    replay: Path | None = None  # the replay file that set it
    labels: tuple[str, ...] = ()
    """Each step's number as reports show it, when not 1, 2, 3...: a replay's inserted fault is `6a` (the first
    inserted before step 6), the scenario's own steps keep their numbers."""

    def step_label(self, index: int) -> str:
        """The number reports give the step at `index` (0-based)."""
        return self.labels[index] if self.labels else str(index + 1)


def load_scenario(path: str | Path, *, vcpus: int | None = None, seed: int | None = None,
                  xen_syms: str | None = None, oracle: bool | None = None, clock_mhz: int | None = None,
                  timer_hz: int | None = None, engine: str | None = None) -> Scenario:
    """Read and check `path`; `vcpus`, `seed`, `xen_syms`, `oracle`, `clock_mhz`, `timer_hz` and `engine`
    override its [machine] table."""
    path = Path(path)
    document, text = read_toml_and_text(path, what="scenario")
    where = _Where(path, tuple(text.splitlines()))
    if isinstance(document.get("step"), dict):
        raise where.error("[step] makes one table: write each step as [[step]] (double brackets)", key="step")
    document = where.read(document, DOCUMENT_KEYS)
    at_machine = where.at("[machine]", header="machine")
    machine = _machine(at_machine, document.get("machine", {}), path.parent)
    overrides: dict[str, Any] = {"vcpus": vcpus, "seed": seed, "xen_syms": xen_syms, "oracle": oracle,
                                 "clock_mhz": clock_mhz, "timer_hz": timer_hz, "engine": engine}
    machine = replace(machine, **{key: value for key, value in overrides.items() if value is not None})
    if machine.engine == "xen" and machine.xen_syms is None:
        raise where.at("[machine]").error("engine \"xen\" runs a real Xen image: give xen_syms too")
    if not 1 <= machine.vcpus <= NR_CPUS:
        raise at_machine.error(f"vcpus must be 1..{NR_CPUS}, got {machine.vcpus}", key="vcpus")
    steps = document.get("step", [])
    if not steps:
        raise where.error("no [[step]] to run")
    parsed = tuple(_step(where.at(f"step {number}", header="step", index=number - 1), raw, vcpus=machine.vcpus,
                         base=path.parent)
                   for number, raw in enumerate(steps, 1))
    if not any(isinstance(step, ExpectStep) and "violations" in step.checks for step in parsed):
        parsed += (ExpectStep({"violations": 0}),)  # patching is checked for safety even when a file never says so
    return Scenario(path, document.get("name", path.stem), document.get("description", ""), machine, parsed,
                    document.get("explore", {}))


@dataclass(frozen=True)
class _Where:
    """Where in the file a value is, for error messages: `FILE:LINE: PLACE: message`. `lines` is the file's
    text; `span` the lines of the place (its table's header up to the next header), where a key is looked for."""

    path: Path
    lines: tuple[str, ...]
    place: str = ""
    span: tuple[int, int] | None = None

    def at(self, place: str, *, header: str | None = None, index: int = 0) -> _Where:
        """The place `place`: the `index`-th table named `header` (`[machine]`, `[[step]]`) when it has one."""
        return _Where(self.path, self.lines, place, self.span if header is None else self._table(header, index))

    def error(self, message: str, *, key: str | None = None) -> ConfigError:
        """The error at `key`'s line within this place (else the place's first line, if known)."""
        line = self._line(key)
        return ConfigError(f"{self.path}{f':{line}' if line else ''}: {self.place + ': ' if self.place else ''}"
                           f"{message}")

    def read(self, table: dict, keys: tuple[Key, ...]) -> dict[str, Any]:
        """`read_keys`, its errors placed here, on the line of the key they are about."""
        try:
            return read_keys(table, keys)
        except KeyProblem as exc:
            raise self.error(str(exc), key=exc.key) from None

    def _table(self, header: str, index: int) -> tuple[int, int] | None:
        pattern = re.compile(rf"\s*\[\[?\s*{re.escape(header)}\s*\]")
        starts = [number for number, line in enumerate(self.lines) if pattern.match(line)]
        if index >= len(starts):
            return None  # an inline table or array: no header line of its own
        start = starts[index]
        following = (n for n in range(start + 1, len(self.lines)) if _HEADER.match(self.lines[n]))
        return start, next(following, len(self.lines))

    def _line(self, key: str | None) -> int | None:
        first, end = self.span or (0, len(self.lines))
        if key is not None:
            name = re.escape(key)
            pattern = re.compile(rf"(^|[\s{{,])\"?{name}\"?\s*=|^\s*\[\[?\s*{name}\s*\]")
            for number in range(first, end):
                if pattern.search(self.lines[number]):
                    return number + 1
        return first + 1 if self.span else None


_HEADER = re.compile(r"\s*\[")


def _machine(where: _Where, table: dict, base: Path) -> MachineSpec:
    table = where.read(table, MACHINE_KEYS)
    firmware = table.get("firmware")
    if firmware is not None:
        firmware = base / firmware
        try:
            load_image(firmware)
        except (ImageError, ConfigError) as exc:
            raise where.error(f"firmware: {exc}", key="firmware") from None
    xen_syms = table.get("xen_syms")
    if xen_syms is not None:
        xen_syms = xen_syms if is_debian_build(xen_syms) else str(base / xen_syms)
        try:
            load_xen_syms(xen_syms)
        except ToolchainError as exc:
            raise ScenarioUnavailable(str(where.error(f"xen_syms: {exc}", key="xen_syms"))) from None
        except (ImageError, ConfigError) as exc:
            raise where.error(f"xen_syms: {exc}", key="xen_syms") from None
    defaults = MachineSpec()
    for key in ("clock_mhz", "timer_hz"):
        if not 1 <= table.get(key, 1) <= RATE_MAX:
            raise where.error(f"{key} must be 1..{RATE_MAX}, got {table[key]}", key=key)
    engine = table.get("engine", defaults.engine)
    if engine not in ENGINES:
        raise where.error(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    return MachineSpec(table.get("vcpus", defaults.vcpus), table.get("seed", defaults.seed), firmware,
                       table.get("boot_ms", defaults.boot_ms), xen_syms, table.get("oracle", defaults.oracle),
                       table.get("clock_mhz", defaults.clock_mhz), table.get("timer_hz", defaults.timer_hz), engine)


def _step(where: _Where, raw: Any, *, vcpus: int, base: Path) -> Step:
    if not isinstance(raw, dict):
        raise where.error("a step must be a table")
    kinds = [kind for kind in step_kinds() if kind.key in raw]
    known = [kind.key for kind in step_kinds()]
    if not kinds:
        found = next(iter(raw), None)
        if found is None:
            raise where.error(f"an empty step: a step has one of {', '.join(known)}")
        raise where.error(f"no step kind: found {found!r}{did_you_mean(found, known)}; a step has one of "
                          f"{', '.join(known)}", key=found)
    if len(kinds) > 1:
        raise where.error(f"a step has exactly one kind; got {' and '.join(kind.key for kind in kinds)}",
                          key=kinds[1].key)
    kind = kinds[0]
    where = replace(where, place=f"{where.place} ({kind.key})")
    if kind.nested:
        raw = where.read(raw, (Key(kind.key, Value.TABLE),))[kind.key]
    values = where.read(raw, kind.keys)
    try:
        return kind.from_toml(values, vcpus=vcpus, base=base)
    except ConfigError as exc:
        raise where.error(str(exc), key=kind.key) from None
