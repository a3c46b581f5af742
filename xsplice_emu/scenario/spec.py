"""A scenario file (TOML), read and checked whole before anything runs.

    name = "..."                     # optional; default: the file's stem
    description = "..."              # optional
    [machine]                        # vcpus (4), seed (0), firmware, boot_ms (2), xen_syms (a real Xen's
                                     #   xen-syms, "debian" for Debian's pinned Xen 4.17 build,
                                     #   "debian:VERSION" for another; fetched once),
                                     #   oracle (true: the safety oracle checks every run),
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

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..debian import is_debian_build, load_xen_syms
from ..engines import ENGINES
from ..errors import ConfigError, ImageError, ToolchainError
from ..files import read_toml
from ..image import load_image
from ..platform import NR_CPUS
from ..session import DEFAULT_BOOT_MS
from .keys import Key, Value, read_keys
from .steps import STEP_KINDS, ExpectStep, Step


@dataclass(frozen=True)
class MachineSpec:
    vcpus: int = 4
    seed: int = 0
    firmware: Path | None = None
    boot_ms: float = DEFAULT_BOOT_MS
    xen_syms: str | None = None  # a path, or debian[:VERSION]
    oracle: bool = True
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


def load_scenario(path: str | Path, *, vcpus: int | None = None, seed: int | None = None,
                  xen_syms: str | None = None, oracle: bool | None = None, engine: str | None = None) -> Scenario:
    """Read and check `path`; `vcpus`, `seed`, `xen_syms`, `oracle` and `engine` override its [machine]
    table."""
    path = Path(path)
    document = read_toml(path, what="scenario")
    where = _Where(path)
    document = where.read(document, DOCUMENT_KEYS)
    machine = _machine(where.at("[machine]"), document.get("machine", {}), path.parent)
    if vcpus is not None:
        machine = replace(machine, vcpus=vcpus)
    if seed is not None:
        machine = replace(machine, seed=seed)
    if xen_syms is not None:
        machine = replace(machine, xen_syms=xen_syms)
    if oracle is not None:
        machine = replace(machine, oracle=oracle)
    if engine is not None:
        machine = replace(machine, engine=engine)
    if machine.engine == "xen" and machine.xen_syms is None:
        raise where.at("[machine]").error("engine \"xen\" runs a real Xen image: give xen_syms too")
    if not 1 <= machine.vcpus <= NR_CPUS:
        raise where.at("[machine]").error(f"vcpus must be 1..{NR_CPUS}, got {machine.vcpus}")
    steps = document.get("step", [])
    if not steps:
        raise where.error("no [[step]] to run")
    parsed = tuple(_step(where.at(f"step {number}"), raw, vcpus=machine.vcpus, base=path.parent)
                   for number, raw in enumerate(steps, 1))
    if not any(isinstance(step, ExpectStep) and "violations" in step.checks for step in parsed):
        parsed += (ExpectStep({"violations": 0}),)  # patching is checked for safety even when a file never says so
    return Scenario(path, document.get("name", path.stem), document.get("description", ""), machine, parsed,
                    document.get("explore", {}))


@dataclass(frozen=True)
class _Where:
    """Where in the file a value is, for error messages."""

    path: Path
    place: str = ""

    def at(self, place: str) -> _Where:
        return _Where(self.path, place)

    def error(self, message: str) -> ConfigError:
        return ConfigError(f"{self.path}: {self.place + ': ' if self.place else ''}{message}")

    def read(self, table: dict, keys: tuple[Key, ...]) -> dict[str, Any]:
        """`read_keys`, its errors placed here."""
        try:
            return read_keys(table, keys)
        except ConfigError as exc:
            raise self.error(str(exc)) from None


def _machine(where: _Where, table: dict, base: Path) -> MachineSpec:
    table = where.read(table, MACHINE_KEYS)
    firmware = table.get("firmware")
    if firmware is not None:
        firmware = base / firmware
        try:
            load_image(firmware)
        except (ImageError, ConfigError) as exc:
            raise where.error(f"firmware: {exc}") from None
    xen_syms = table.get("xen_syms")
    if xen_syms is not None:
        xen_syms = xen_syms if is_debian_build(xen_syms) else str(base / xen_syms)
        try:
            load_xen_syms(xen_syms)
        except (ImageError, ConfigError, ToolchainError) as exc:
            raise where.error(f"xen_syms: {exc}") from None
    defaults = MachineSpec()
    engine = table.get("engine", defaults.engine)
    if engine not in ENGINES:
        raise where.error(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    return MachineSpec(table.get("vcpus", defaults.vcpus), table.get("seed", defaults.seed), firmware,
                       table.get("boot_ms", defaults.boot_ms), xen_syms, table.get("oracle", defaults.oracle),
                       engine)


def _step(where: _Where, raw: Any, *, vcpus: int, base: Path) -> Step:
    if not isinstance(raw, dict):
        raise where.error("a step must be a table")
    kinds = [kind for kind in STEP_KINDS if kind.key in raw]
    if len(kinds) != 1:
        raise where.error(f"a step needs exactly one of {', '.join(kind.key for kind in STEP_KINDS)}; "
                          f"got {', '.join(kind.key for kind in kinds) or 'none'}")
    kind = kinds[0]
    where = where.at(f"{where.place} ({kind.key})")
    if kind.nested:
        raw = where.read(raw, (Key(kind.key, Value.TABLE),))[kind.key]
    values = where.read(raw, kind.keys)
    try:
        return kind.from_toml(values, vcpus=vcpus, base=base)
    except ConfigError as exc:
        raise where.error(str(exc)) from None
