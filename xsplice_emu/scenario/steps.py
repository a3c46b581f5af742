"""Every kind of scenario step, in one table: `STEP_KINDS`.

A kind is a frozen dataclass (the parsed step) whose class declares the rest:
the TOML key that marks it and the keys it reads, its shell syntax and
one-line summary, the same example step in TOML and at the shell, how shell
words parse, how a report line describes it and how it runs on a `Session`.
The TOML loader, the runner and the shell all go through this table: a new
kind is one class here and its entry in `STEP_KINDS`. A step that is a fault
(stall, nmi, preempt, nmi_storm, drop_flush) is also an entry of the fault
registry (`faults.FAULTS`), which says where it exists and how `explore`
draws it; a new fault kind's step needs only that entry.
"""

from __future__ import annotations

import json
import shlex
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

from ..control.operator import Outcome
from ..control.session import Session
from ..control.verbs import VERBS, Request, parse
from ..duration import NS_PER_MS, NS_PER_US, parse_duration
from ..errors import ConfigError, errno_name
from .keys import ABSENT, Key, Value, read_keys


@dataclass(frozen=True)
class Check:
    """One expectation: what was looked at, what it should be, what it was."""

    what: str
    expected: Any
    got: Any
    ok: bool


def _check(what: str, expected: Any, got: Any) -> Check:
    return Check(what, expected, got, expected == got)


@dataclass(frozen=True)
class Done:
    """What running one step gave: its checks, its virtual latency, the operator's outcome if it ran one."""

    checks: tuple[Check, ...] = ()
    latency_ns: int | None = None
    outcome: Outcome | None = None
    value: int | None = None
    """What a call returned."""

    @property
    def rc(self) -> str | None:
        return self.outcome.errno_name if self.outcome else None


@dataclass(frozen=True)
class Step(ABC):
    """Base of the step kinds; each subclass declares its kind in these class attributes."""

    kind: ClassVar[str]                  # its name in reports, and its command at the shell
    key: ClassVar[str]                   # the TOML key that makes a [[step]] this kind
    keys: ClassVar[tuple[Key, ...]]      # what it reads: the [[step]] table's keys, or those of the table at `key`
    nested: ClassVar[bool] = True        # whether its keys are in a table at `key`
    syntax: ClassVar[str]
    summary: ClassVar[str]
    example: ClassVar[tuple[str, str]]   # the same step as a TOML [[step]] and as a shell line

    @classmethod
    def commands(cls) -> tuple[str, ...]:
        """The shell words that start a step of this kind."""
        return (cls.kind,)

    @classmethod
    @abstractmethod
    def from_toml(cls, values: dict[str, Any], *, vcpus: int, base: Path) -> Step:
        """The step from its checked TOML values, on a machine of `vcpus`; relative files from `base`."""

    @classmethod
    @abstractmethod
    def from_words(cls, words: list[str], *, vcpus: int) -> Step:
        """The step from a shell line's words (the command first), on a machine of `vcpus`."""

    @abstractmethod
    def describe(self) -> str:
        """The step as one readable command, for reports."""

    @abstractmethod
    def run(self, session: Session) -> Done:
        """Run the step on `session`."""


@dataclass(frozen=True)
class LivepatchStep(Step):
    """An operator command line and what it must give."""

    line: str
    request: Request
    expect_errno: int = 0
    expect_output: str | None = None

    kind: ClassVar = "livepatch"
    key: ClassVar = "livepatch"
    keys: ClassVar = (Key("livepatch", Value.TEXT), Key("expect_rc", Value.ERRNO, optional=True),
                      Key("expect_output", Value.TEXT, optional=True), Key("allow_unsafe", Value.FLAG, optional=True))
    nested: ClassVar = False
    syntax: ClassVar = "VERB ARGS... (upload, list, load, apply, revert, replace, unload)"
    summary: ClassVar = ("An xen-livepatch command; a scenario may add expect_rc (Xen's errno, not an exit "
                         "status: 0 or a name such as EINVAL), expect_output "
                         "and, on upload or load, allow_unsafe = true.")
    example: ClassVar = ('livepatch = "apply hello --from-vcpu 1 --timeout-ms 5"',
                         "apply hello --from-vcpu 1 --timeout-ms 5")

    @classmethod
    def commands(cls) -> tuple[str, ...]:
        return tuple(VERBS)

    @classmethod
    def from_toml(cls, values, *, vcpus, base):
        line = values["livepatch"]
        try:
            words = shlex.split(line)
        except ValueError as exc:
            raise ConfigError(f"cannot split {line!r}: {exc}") from None
        if values.get("allow_unsafe"):
            if words[:1] not in (["upload"], ["load"]):
                raise ConfigError(f"allow_unsafe applies to upload and load, not to {line!r}")
            words, line = [*words, "--allow-unsafe"], f"{line} --allow-unsafe"
        step = cls.from_words(words, vcpus=vcpus)
        for file in step.request.files:
            if not (base / file).is_file():
                raise ConfigError(f"payload file {base / file} does not exist")
        return replace(step, line=line, expect_errno=values.get("expect_rc", 0),
                       expect_output=values.get("expect_output"))

    @classmethod
    def from_words(cls, words, *, vcpus):
        request = parse(words)
        from_vcpu = request.params.get("from_vcpu", 0)
        if from_vcpu >= vcpus:
            raise ConfigError(f"--from-vcpu {from_vcpu} is out of range: the machine has {vcpus} vCPUs")
        return cls(shlex.join(words), request)

    def describe(self):
        return self.line

    def run(self, session):
        outcome = session.command(self.request)
        checks = [_check("rc", errno_name(self.expect_errno), outcome.errno_name)]
        if self.expect_output is not None:
            found = self.expect_output in outcome.text
            checks.append(_check("output contains", self.expect_output,
                                 self.expect_output if found else outcome.text.strip()))
        latency = outcome.results[-1].release_ns if outcome.results else None
        return Done(tuple(checks), latency, outcome)


@dataclass(frozen=True)
class RunStep(Step):
    """Virtual time passes."""

    ns: int

    kind: ClassVar = "run"
    key: ClassVar = "run_ms"
    keys: ClassVar = (Key("run_ms", Value.MS),)
    nested: ClassVar = False
    syntax: ClassVar = "run DURATION"
    summary: ClassVar = "Advance virtual time (5ms, 20us, 1s; a bare number is ms)."
    example: ClassVar = ("run_ms = 2.5", "run 2500us")

    @classmethod
    def from_toml(cls, values, *, vcpus, base):
        return cls(int(values["run_ms"] * NS_PER_MS))

    @classmethod
    def from_words(cls, words, *, vcpus):
        (duration,) = _arguments(cls, words, 1)
        return cls(parse_duration(duration))

    def describe(self):
        return f"run {self.ns / NS_PER_MS:g} ms"

    def run(self, session):
        session.advance(self.ns)
        return Done(latency_ns=self.ns)


@dataclass(frozen=True)
class VcpuForAWhile(Step):
    """Something that happens to one vCPU for a duration, from now or a delay from now: its TOML keys are
    `vcpu`, the duration in `unit` (ms or us) and `delay_us`; at the shell `KIND VCPU DURATION [DELAY]`."""

    vcpu: int
    ns: int
    delay_ns: int = 0

    unit: ClassVar[str]
    unit_ns: ClassVar[int]

    @classmethod
    def from_toml(cls, values, *, vcpus, base):
        return cls(_vcpu(values["vcpu"], vcpus), int(values[cls.unit] * cls.unit_ns),
                   int(values.get("delay_us", 0) * NS_PER_US))

    @classmethod
    def from_words(cls, words, *, vcpus):
        vcpu, duration, *delay = _arguments(cls, words, 2, 3)
        return cls(_vcpu_word(vcpu, vcpus), parse_duration(duration), parse_duration(delay[0]) if delay else 0)

    def describe(self):
        return f"{self.kind} vCPU {self.vcpu} for {self.ns / self.unit_ns:g} {self.unit}{_after(self.delay_ns)}"


@dataclass(frozen=True)
class StallStep(VcpuForAWhile):
    """A vCPU spins with IRQs off."""

    kind: ClassVar = "stall"
    key: ClassVar = "stall"
    unit: ClassVar = "ms"
    unit_ns: ClassVar = NS_PER_MS
    keys: ClassVar = (Key("vcpu", Value.INTEGER), Key("ms", Value.MS), Key("delay_us", Value.US, optional=True))
    syntax: ClassVar = "stall VCPU DURATION [DELAY]"
    summary: ClassVar = "That vCPU spins with IRQs off for DURATION, from now (or DELAY from now)."
    example: ClassVar = ("stall = { vcpu = 2, ms = 50, delay_us = 10 }", "stall 2 50ms 10us")

    def run(self, session):
        session.stall(self.vcpu, self.ns, delay_ns=self.delay_ns)
        return Done()


@dataclass(frozen=True)
class NmiStep(Step):
    """An NMI to one vCPU."""

    vcpu: int
    delay_ns: int = 0

    kind: ClassVar = "nmi"
    key: ClassVar = "nmi"
    keys: ClassVar = (Key("vcpu", Value.INTEGER), Key("delay_us", Value.US, optional=True))
    syntax: ClassVar = "nmi VCPU [DELAY]"
    summary: ClassVar = "An NMI to that vCPU now (or DELAY from now)."
    example: ClassVar = ("nmi = { vcpu = 1, delay_us = 1 }", "nmi 1 1us")

    @classmethod
    def from_toml(cls, values, *, vcpus, base):
        return cls(_vcpu(values["vcpu"], vcpus), int(values.get("delay_us", 0) * NS_PER_US))

    @classmethod
    def from_words(cls, words, *, vcpus):
        vcpu, *delay = _arguments(cls, words, 1, 2)
        return cls(_vcpu_word(vcpu, vcpus), parse_duration(delay[0]) if delay else 0)

    def describe(self):
        return f"NMI to vCPU {self.vcpu}{_after(self.delay_ns)}"

    def run(self, session):
        session.nmi(self.vcpu, delay_ns=self.delay_ns)
        return Done()


@dataclass(frozen=True)
class CallStep(Step):
    """A firmware function run on one vCPU (as the host's tests do), now and checked, or posted for later."""

    vcpu: int
    function: str
    arguments: tuple[int | str, ...] = ()
    expect: int | None = None
    delay_ns: int = 0

    kind: ClassVar = "call"
    key: ClassVar = "call"
    keys: ClassVar = (Key("vcpu", Value.INTEGER), Key("function", Value.TEXT),
                      Key("args", Value.LIST, optional=True), Key("expect", Value.INTEGER, optional=True),
                      Key("delay_us", Value.US, optional=True))
    syntax: ClassVar = "call VCPU FUNCTION [ARG [ARG]] [expect=N] [delay=DURATION]"
    summary: ClassVar = ("Run the firmware's FUNCTION(ARG, ARG) on that vCPU (an ARG is a number or a symbol) and "
                         "check its result; with a delay, post it for then and go on.")
    example: ClassVar = ('call = { vcpu = 1, function = "call_watch", args = ["answer_a", 1000], expect = 0 }',
                         "call 1 call_watch answer_a 1000 expect=0")

    @classmethod
    def from_toml(cls, values, *, vcpus, base):
        arguments = values.get("args", [])
        if len(arguments) > 2 or not all(isinstance(a, str) or type(a) is int and a >= 0 for a in arguments):
            raise ConfigError(f"args must be at most two numbers (>= 0) or symbols, got {arguments!r}")
        return cls._checked(_vcpu(values["vcpu"], vcpus), values["function"], tuple(arguments),
                            values.get("expect"), int(values.get("delay_us", 0) * NS_PER_US))

    @classmethod
    def from_words(cls, words, *, vcpus):
        vcpu, function, *rest = _arguments(cls, words, 2, 6)
        arguments: list[int | str] = []
        expect, delay = None, 0
        for word in rest:
            if word.startswith("expect="):
                expect = Value.INTEGER.from_word("expect", word.removeprefix("expect="))
            elif word.startswith("delay="):
                delay = parse_duration(word.removeprefix("delay="))
            else:
                arguments.append(int(word, 0) if word[:1].isdigit() else word)
        if len(arguments) > 2:
            raise ConfigError(f"call takes at most two arguments: {cls.syntax}")
        return cls._checked(_vcpu_word(vcpu, vcpus), function, tuple(arguments), expect, delay)

    @classmethod
    def _checked(cls, vcpu, function, arguments, expect, delay_ns) -> CallStep:
        if delay_ns and expect is not None:
            raise ConfigError("call: a posted call (delay) gives no result to expect")
        return cls(vcpu, function, arguments, expect, delay_ns)

    def describe(self):
        arguments = ", ".join(str(a) for a in self.arguments)
        expected = "" if self.expect is None else f" = {self.expect}"
        return f"call {self.function}({arguments}) on vCPU {self.vcpu}{_after(self.delay_ns)}{expected}"

    def run(self, session):
        result = session.call(self.vcpu, self.function, self.arguments, delay_ns=self.delay_ns)
        if self.expect is None:
            return Done(value=result)
        return Done(checks=(_check(f"{self.function} on vCPU {self.vcpu}", self.expect, result),), value=result)


@dataclass(frozen=True)
class PreemptStep(VcpuForAWhile):
    """The host does not schedule a vCPU for a while."""

    kind: ClassVar = "preempt"
    key: ClassVar = "preempt"
    unit: ClassVar = "us"
    unit_ns: ClassVar = NS_PER_US
    keys: ClassVar = (Key("vcpu", Value.INTEGER), Key("us", Value.US), Key("delay_us", Value.US, optional=True))
    syntax: ClassVar = "preempt VCPU DURATION [DELAY]"
    summary: ClassVar = ("The host does not schedule that vCPU for DURATION, from now (or DELAY from now); unlike "
                         "stall, its IRQ state is untouched.")
    example: ClassVar = ("preempt = { vcpu = 2, us = 500, delay_us = 10 }", "preempt 2 500us 10us")

    def run(self, session):
        session.preempt(self.vcpu, self.ns, delay_ns=self.delay_ns)
        return Done()


MAX_STORM_NMIS = 100_000


@dataclass(frozen=True)
class NmiStormStep(Step):
    """NMIs at a steady rate to some vCPUs."""

    vcpus: tuple[int, ...]
    rate_khz: float
    ns: int
    delay_ns: int = 0

    kind: ClassVar = "nmi_storm"
    key: ClassVar = "nmi_storm"
    keys: ClassVar = (Key("vcpus", Value.VCPUS), Key("rate_khz", Value.KHZ), Key("us", Value.US),
                      Key("delay_us", Value.US, optional=True))
    syntax: ClassVar = "nmi_storm VCPU,VCPU|all RATE_KHZ DURATION [DELAY]"
    summary: ClassVar = (f"NMIs to those vCPUs at RATE_KHZ for DURATION, from now (or DELAY from now); at most "
                         f"{MAX_STORM_NMIS:,} in all.")
    example: ClassVar = ('nmi_storm = { vcpus = [0, 1], rate_khz = 100, us = 200, delay_us = 5 }',
                         "nmi_storm 0,1 100 200us 5us")

    @classmethod
    def from_toml(cls, values, *, vcpus, base):
        chosen = values["vcpus"]
        chosen = tuple(range(vcpus)) if chosen == "all" else tuple(_vcpu(vcpu, vcpus) for vcpu in chosen)
        return cls._checked(chosen, values["rate_khz"], int(values["us"] * NS_PER_US),
                            int(values.get("delay_us", 0) * NS_PER_US))

    @classmethod
    def from_words(cls, words, *, vcpus):
        chosen, rate, duration, *delay = _arguments(cls, words, 3, 4)
        picked = tuple(range(vcpus)) if chosen == "all" else tuple(_vcpu_word(w, vcpus) for w in chosen.split(","))
        try:
            khz = float(rate)
        except ValueError:
            raise ConfigError(f"rate_khz must be {Value.KHZ.value}, got {rate!r}") from None
        return cls._checked(picked, Value.KHZ.check("rate_khz", khz), parse_duration(duration),
                            parse_duration(delay[0]) if delay else 0)

    @classmethod
    def _checked(cls, vcpus, rate_khz, ns, delay_ns) -> NmiStormStep:
        count = len(vcpus) * max(1, int(ns * rate_khz / (NS_PER_MS * 1.0)))
        if count > MAX_STORM_NMIS:
            raise ConfigError(f"nmi_storm would send {count:,} NMIs, more than {MAX_STORM_NMIS:,}")
        return cls(vcpus, rate_khz, ns, delay_ns)

    def describe(self):
        return (f"NMI storm at {self.rate_khz:g} kHz to {_vcpu_list(list(self.vcpus))} for "
                f"{self.ns / NS_PER_US:g} us{_after(self.delay_ns)}")

    def run(self, session):
        session.nmi_storm(list(self.vcpus), rate_khz=self.rate_khz, ns=self.ns, delay_ns=self.delay_ns)
        return Done()


@dataclass(frozen=True)
class DropFlushStep(Step):
    """The next action leaves a vCPU's translated code in place."""

    vcpu: int

    kind: ClassVar = "drop_flush"
    key: ClassVar = "drop_flush"
    keys: ClassVar = (Key("vcpu", Value.INTEGER),)
    syntax: ClassVar = "drop_flush VCPU"
    summary: ClassVar = ("The next action does not drop that vCPU's translated code (a missing serialisation): "
                         "the oracle's stale check sees what it then runs.")
    example: ClassVar = ("drop_flush = { vcpu = 1 }", "drop_flush 1")

    @classmethod
    def from_toml(cls, values, *, vcpus, base):
        return cls(_vcpu(values["vcpu"], vcpus))

    @classmethod
    def from_words(cls, words, *, vcpus):
        (vcpu,) = _arguments(cls, words, 1)
        return cls(_vcpu_word(vcpu, vcpus))

    def describe(self):
        return f"drop the next action's flush on vCPU {self.vcpu}"

    def run(self, session):
        session.drop_flush(self.vcpu)
        return Done()


VERSION_KEYS = {"extra_version": "extra", "major_version": "major", "minor_version": "minor"}


@dataclass(frozen=True)
class ExpectStep(Step):
    """Checks on the machine's state, keyed as in `keys`."""

    checks: dict[str, Any] = field(default_factory=dict)

    kind: ClassVar = "expect"
    key: ClassVar = "expect"
    keys: ClassVar = (Key("extra_version", Value.TEXT, optional=True, negatable=True),
                      Key("major_version", Value.INTEGER, optional=True, negatable=True),
                      Key("minor_version", Value.INTEGER, optional=True, negatable=True),
                      Key("state", Value.STATES, optional=True), Key("applied", Value.NAMES, optional=True),
                      Key("console_contains", Value.TEXT, optional=True),
                      Key("text_unchanged", Value.FLAG, optional=True), Key("nmis_lost", Value.INTEGER, optional=True),
                      Key("violations", Value.VIOLATIONS, optional=True))
    syntax: ClassVar = "expect KEY=VALUE..."
    summary: ClassVar = ("Check the machine; KEY is extra_version, major_version or minor_version (on every "
                         "vCPU; KEY!=VALUE: anything but), state.NAME, applied (A,B), console_contains, "
                         "text_unchanged, nmis_lost or violations (the safety oracle's, so far).")
    example: ClassVar = ('expect = { extra_version = "Hello World", major_version = { not = 7 }, '
                         'state = { hello = "APPLIED", bye = "UNLOADED" }, applied = ["hello"], '
                         'console_contains = "cpu1: NMI", text_unchanged = false, nmis_lost = 0, violations = 0 }',
                         'expect "extra_version=Hello World" major_version!=7 state.hello=APPLIED state.bye=UNLOADED '
                         'applied=hello "console_contains=cpu1: NMI" text_unchanged=false nmis_lost=0 violations=0')

    @classmethod
    def from_toml(cls, values, *, vcpus, base):
        if not values:
            raise ConfigError("expect has nothing to check")
        return cls(values)

    @classmethod
    def from_words(cls, words, *, vcpus):
        table: dict[str, Any] = {}
        by_name = {key.name: key for key in cls.keys}
        for word in words[1:]:
            name, equals, text = word.partition("=")
            if not equals:
                raise ConfigError(f"expect takes KEY=VALUE words, got {word!r} (syntax: {cls.syntax})")
            negated = name.endswith("!")
            name = name.removesuffix("!")
            if name.startswith("state."):
                table.setdefault("state", {})[name.removeprefix("state.")] = text
                continue
            key = by_name.get(name)
            if key is None or negated and not key.negatable:
                raise ConfigError(f"expect has no check {word.partition('=')[0]!r} (one of {', '.join(by_name)})")
            value = key.value.from_word(name, text)
            table[name] = {"not": value} if negated else value
        return cls.from_toml(read_keys(table, cls.keys), vcpus=vcpus, base=Path("."))

    def describe(self):
        return "expect " + ", ".join(f"{key} = {toml_value(value)}" for key, value in self.checks.items())

    def run(self, session):
        checks = []
        wanted = self.checks
        versions = session.versions() if VERSION_KEYS.keys() & wanted.keys() else []
        for key, name in VERSION_KEYS.items():
            if key in wanted:
                checks += _every_vcpu(key, wanted[key], [getattr(v, name) for v in versions])
        livepatch = session.livepatch
        for name, state in wanted.get("state", {}).items():
            payload = livepatch.payloads.get(name)
            checks.append(_check(f"state of {name}", state, payload.state.name if payload else ABSENT))
        if "applied" in wanted:
            checks.append(_check("applied", list(wanted["applied"]), list(livepatch.applied)))
        if "console_contains" in wanted:
            text = wanted["console_contains"]
            found = text in session.machine.console.text()
            checks.append(_check("console contains", text, text if found else session.machine.console.last_line()))
        if "text_unchanged" in wanted:
            checks.append(_check("text unchanged", wanted["text_unchanged"], session.text_unchanged()))
        if "nmis_lost" in wanted:
            checks.append(_check("NMIs lost", wanted["nmis_lost"], session.nmis_lost))
        if "violations" in wanted:
            checks += _violation_checks(wanted["violations"], session.violations)
        return Done(tuple(checks))


STEP_KINDS: tuple[type[Step], ...] = (LivepatchStep, RunStep, StallStep, NmiStep, CallStep, PreemptStep,
                                      NmiStormStep, DropFlushStep, ExpectStep)


def _violation_checks(wanted: Any, counts: Counter[str]) -> list[Check]:
    """`violations = N` (all checks together) or `{ CHECK = N | { at_least = N } }`."""
    if not isinstance(wanted, dict):
        return [_check("violations", wanted, dict(counts) if sum(counts.values()) != wanted else wanted)]
    checks = []
    for check, expected in wanted.items():
        got = counts[check]
        if isinstance(expected, dict):
            least = expected["at_least"]
            checks.append(Check(f"{check} violations", f"at least {least}", got, got >= least))
        else:
            checks.append(_check(f"{check} violations", expected, got))
    return checks


def _arguments(kind: type[Step], words: list[str], least: int, most: int | None = None) -> list[str]:
    """The words after the command, `least` to `most` of them."""
    most = least if most is None else most
    if not least <= len(words) - 1 <= most:
        count = f"{least}" if least == most else f"{least} to {most}"
        raise ConfigError(f"{kind.kind} takes {count} argument{'s' if most != 1 else ''}: "
                          f"{kind.syntax}: {kind.summary}")
    return words[1:]


def _vcpu(vcpu: int, vcpus: int) -> int:
    if not 0 <= vcpu < vcpus:
        raise ConfigError(f"vcpu {vcpu} is out of range: the machine has {vcpus} vCPUs (0..{vcpus - 1})")
    return vcpu


def _vcpu_word(word: str, vcpus: int) -> int:
    if not word.isdigit() or int(word) >= vcpus:
        raise ConfigError(f"vCPU {word!r} is out of range: the machine has {vcpus} (0..{vcpus - 1})")
    return int(word)


def _after(delay_ns: int) -> str:
    return f" after {delay_ns / NS_PER_US:g} us" if delay_ns else ""


def _every_vcpu(what: str, expected: Any, values: list[Any]) -> list[Check]:
    """One check for all vCPUs when each value is as `expected` (or `{not = X}`), else one per wrong value
    naming the vCPUs that gave it (`vCPUs 0-3, 6`)."""
    if isinstance(expected, dict):
        shown, good = f"not {expected['not']!r}", lambda value: value != expected["not"]
    else:
        shown, good = expected, lambda value: value == expected
    wrong = [(vcpu, value) for vcpu, value in enumerate(values) if not good(value)]
    if not wrong:
        return [Check(f"{what} on all {len(values)} vCPUs", shown, values[0], True)]
    by_value: dict[Any, list[int]] = {}
    for vcpu, value in wrong:
        by_value.setdefault(value, []).append(vcpu)
    return [Check(f"{what} on {_vcpu_list(vcpus)}", shown, value, False) for value, vcpus in by_value.items()]


def _vcpu_list(vcpus: list[int]) -> str:
    """`vCPU 2`, `vCPUs 0-3, 6`: sorted vCPU numbers with runs joined."""
    runs: list[list[int]] = []
    for vcpu in vcpus:
        if runs and runs[-1][-1] == vcpu - 1:
            runs[-1].append(vcpu)
        else:
            runs.append([vcpu])
    text = ", ".join(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]) for run in runs)
    return f"vCPU{'s' if len(vcpus) > 1 else ''} {text}"


def toml_value(value: Any) -> str:
    """`value` written as in the scenario file."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{key} = {toml_value(item)}" for key, item in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    return json.dumps(value)
