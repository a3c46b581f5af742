"""A scenario file (TOML), read and checked whole before anything runs.

    name = "..."                     # optional; default: the file's stem
    description = "..."              # optional
    [machine]                        # vcpus (4), seed (0), firmware, boot_ms (2)
    [[step]]                         # exactly one of: livepatch, run_ms, stall, nmi, expect
    livepatch = "apply hello"        #   + expect_rc (0 or an errno name), expect_output
    run_ms = 5
    stall = { vcpu = 2, ms = 50 }    #   + delay_us: start that much later
    nmi = { vcpu = 1 }               #   + delay_us
    expect = { extra_version = "Hello World", state = { hello = "APPLIED" } }
                                     #   a version may also be { not = 7 }

Every mistake is a ConfigError naming the file, the step and what is wrong.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import ERRNO_BY_NAME, ConfigError
from ..livepatch import PayloadState
from ..platform import NR_CPUS
from ..session import DEFAULT_BOOT_MS, NS_PER_MS
from ..verbs import Request, parse

NS_PER_US = 1_000
ABSENT = "UNLOADED"
PAYLOAD_STATES = tuple(state.name for state in PayloadState) + (ABSENT,)
STEP_KINDS = ("livepatch", "run_ms", "stall", "nmi", "expect")
VERSION_KEYS = {"extra_version": "extra", "major_version": "major", "minor_version": "minor"}
EXPECT_KEYS = {"extra_version": str, "major_version": int, "minor_version": int, "state": dict,
               "applied": list, "console_contains": str, "text_unchanged": bool, "nmis_lost": int}


@dataclass(frozen=True)
class MachineSpec:
    vcpus: int = 4
    seed: int = 0
    firmware: Path | None = None
    boot_ms: float = DEFAULT_BOOT_MS


@dataclass(frozen=True)
class LivepatchStep:
    """An operator command line and what it must give."""

    line: str
    request: Request
    expect_errno: int = 0
    expect_output: str | None = None


@dataclass(frozen=True)
class RunStep:
    ns: int


@dataclass(frozen=True)
class StallStep:
    vcpu: int
    ns: int
    delay_ns: int = 0


@dataclass(frozen=True)
class NmiStep:
    vcpu: int
    delay_ns: int = 0


@dataclass(frozen=True)
class ExpectStep:
    """Checks on the machine's state; keys as in EXPECT_KEYS."""

    checks: dict[str, Any] = field(default_factory=dict)


Step = LivepatchStep | RunStep | StallStep | NmiStep | ExpectStep


@dataclass(frozen=True)
class Scenario:
    path: Path
    name: str
    description: str
    machine: MachineSpec
    steps: tuple[Step, ...]


def load_scenario(path: str | Path, *, vcpus: int | None = None, seed: int | None = None) -> Scenario:
    """Read and check `path`; `vcpus` and `seed` override its [machine] table."""
    path = Path(path)
    try:
        document = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    where = _Where(path)
    _only(where, document, ("name", "description", "machine", "step"))
    machine = _machine(where.at("[machine]"), _typed(where, document, "machine", dict, {}), path.parent)
    if vcpus is not None:
        machine = replace(machine, vcpus=vcpus)
    if seed is not None:
        machine = replace(machine, seed=seed)
    if not 1 <= machine.vcpus <= NR_CPUS:
        raise where.at("[machine]").error(f"vcpus must be 1..{NR_CPUS}, got {machine.vcpus}")
    steps = _typed(where, document, "step", list, [])
    if not steps:
        raise where.error("no [[step]] to run")
    parsed = tuple(_step(where.at(f"step {number}"), raw, machine, path.parent)
                   for number, raw in enumerate(steps, 1))
    return Scenario(path, _typed(where, document, "name", str, path.stem),
                    _typed(where, document, "description", str, ""), machine, parsed)


@dataclass(frozen=True)
class _Where:
    """Where in the file a value is, for error messages."""

    path: Path
    place: str = ""

    def at(self, place: str) -> _Where:
        return _Where(self.path, place)

    def error(self, message: str) -> ConfigError:
        return ConfigError(f"{self.path}: {self.place + ': ' if self.place else ''}{message}")


def _machine(where: _Where, table: dict, base: Path) -> MachineSpec:
    _only(where, table, ("vcpus", "seed", "firmware", "boot_ms"))
    defaults = MachineSpec()
    firmware = _typed(where, table, "firmware", str, None)
    if firmware is not None:
        firmware = base / firmware
        if not firmware.is_file():
            raise where.error(f"firmware {firmware} does not exist")
    boot_ms = _number(where, table, "boot_ms", defaults.boot_ms)
    if boot_ms < 0:
        raise where.error(f"boot_ms must be >= 0, got {boot_ms}")
    return MachineSpec(_typed(where, table, "vcpus", int, defaults.vcpus),
                       _typed(where, table, "seed", int, defaults.seed), firmware, boot_ms)


def _step(where: _Where, raw: Any, machine: MachineSpec, base: Path) -> Step:
    if not isinstance(raw, dict):
        raise where.error("a step must be a table")
    kinds = [kind for kind in STEP_KINDS if kind in raw]
    if len(kinds) != 1:
        raise where.error(f"a step needs exactly one of {', '.join(STEP_KINDS)}; got {', '.join(kinds) or 'none'}")
    kind = kinds[0]
    where = where.at(f"{where.place} ({kind})")
    if kind == "livepatch":
        _only(where, raw, ("livepatch", "expect_rc", "expect_output"))
        return _livepatch(where, raw, machine, base)
    if kind == "run_ms":
        _only(where, raw, ("run_ms",))
        return RunStep(_duration(where, raw, "run_ms", NS_PER_MS))
    if kind == "stall":
        table = _typed(where, raw, "stall", dict, None)
        _only(where, table, ("vcpu", "ms", "delay_us"), required=("vcpu", "ms"))
        return StallStep(_vcpu(where, table, machine), _duration(where, table, "ms", NS_PER_MS),
                         _duration(where, table, "delay_us", NS_PER_US, 0))
    if kind == "nmi":
        table = _typed(where, raw, "nmi", dict, None)
        _only(where, table, ("vcpu", "delay_us"), required=("vcpu",))
        return NmiStep(_vcpu(where, table, machine), _duration(where, table, "delay_us", NS_PER_US, 0))
    table = _typed(where, raw, "expect", dict, None)
    _only(where, table, tuple(EXPECT_KEYS))
    if not table:
        raise where.error("expect has nothing to check")
    for key, kind_of in EXPECT_KEYS.items():
        if key in VERSION_KEYS and isinstance(table.get(key), dict):
            _only(where, table[key], ("not",), required=("not",))
            _typed(where.at(f"{where.place}: {key}"), table[key], "not", kind_of, None)
        else:
            _typed(where, table, key, kind_of, None)
    for name, state in table.get("state", {}).items():
        if state not in PAYLOAD_STATES:
            raise where.error(f"state of {name} must be one of {', '.join(PAYLOAD_STATES)}, got {state!r}")
    if not all(isinstance(name, str) for name in table.get("applied", [])):
        raise where.error("applied must be a list of payload names")
    return ExpectStep(dict(table))


def _livepatch(where: _Where, raw: dict, machine: MachineSpec, base: Path) -> LivepatchStep:
    line = _typed(where, raw, "livepatch", str, None)
    try:
        request = parse(line)
    except ConfigError as exc:
        raise where.error(str(exc)) from None
    for file in request.files:
        if not (base / file).is_file():
            raise where.error(f"payload file {base / file} does not exist")
    from_vcpu = request.params.get("from_vcpu", 0)
    if from_vcpu >= machine.vcpus:
        raise where.error(f"--from-vcpu {from_vcpu} is out of range: the machine has {machine.vcpus} vCPUs")
    expect_rc = raw.get("expect_rc", 0)
    if isinstance(expect_rc, str):
        if expect_rc not in ERRNO_BY_NAME:
            raise where.error(f"expect_rc {expect_rc!r} is not an errno name (EINVAL, EBUSY, ENOENT, ...)")
        expect_rc = ERRNO_BY_NAME[expect_rc]
    elif isinstance(expect_rc, bool) or not isinstance(expect_rc, int) or expect_rc < 0:
        raise where.error(f"expect_rc must be 0, an errno number or an errno name, got {expect_rc!r}")
    return LivepatchStep(line, request, expect_rc, _typed(where, raw, "expect_output", str, None))


def _vcpu(where: _Where, table: dict, machine: MachineSpec) -> int:
    vcpu = _typed(where, table, "vcpu", int, None)
    if not 0 <= vcpu < machine.vcpus:
        raise where.error(f"vcpu {vcpu} is out of range: the machine has {machine.vcpus} vCPUs (0..{machine.vcpus - 1})")
    return vcpu


def _duration(where: _Where, table: dict, key: str, unit_ns: int, default: float | None = None) -> int:
    value = _number(where, table, key, default)
    if value < 0:
        raise where.error(f"{key} must be >= 0, got {value}")
    return int(value * unit_ns)


def _number(where: _Where, table: dict, key: str, default: float | None) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise where.error(f"{key} must be a number, got {value!r}")
    return value


def _typed(where: _Where, table: dict, key: str, kind: type, default: Any) -> Any:
    if key not in table:
        return default
    value = table[key]
    if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
        raise where.error(f"{key} must be {_KIND_NAMES[kind]}, got {value!r}")
    return value


_KIND_NAMES = {str: "a string", int: "an integer", bool: "true or false", dict: "a table", list: "a list"}


def _only(where: _Where, table: dict, allowed: tuple[str, ...], *, required: tuple[str, ...] = ()) -> None:
    for key in table:
        if key not in allowed:
            raise where.error(f"unknown key {key!r} (allowed: {', '.join(allowed)})")
    for key in required:
        if key not in table:
            raise where.error(f"missing key {key!r}")
