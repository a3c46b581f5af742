"""Every kind of scenario step, in one table: `STEP_KINDS`.

A kind is a frozen dataclass (the parsed step) whose class declares the rest:
the TOML key that marks it, its parameters (`params`: each one TOML key and
one shell word, with its value and help, from which its TOML keys, its shell
syntax and both parsers follow), its one-line summary, the same example step
in TOML and at the shell, how a report line describes it and how it runs on
a `Session`.
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
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar

from ..control.operator import Outcome
from ..control.session import VERSION_PARTS, Session
from ..control.verbs import VERBS, Request, parse
from ..duration import NS_PER_MS, NS_PER_US
from ..errors import ConfigError, errno_name
from .keys import ABSENT, Key, Param, Value, read_keys


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


VCPU = Param("vcpu", Value.VCPU, "vcpu", "VCPU", "a vCPU of the machine, from 0")
DELAY = Param("delay_us", Value.US, "delay_ns", "DELAY", "from this much later (default: now)", optional=True)


def _duration(name: str, value: Value) -> Param:
    """How long a step lasts: the TOML key `name` (in ms or us), DURATION at the shell; the step keeps ns."""
    return Param(name, value, "ns", "DURATION", "how long (5ms, 20us; a bare number is ms)")


_SPELLED = {1: "one", 2: "two", 3: "three"}


@dataclass(frozen=True)
class Step(ABC):
    """Base of the step kinds; each subclass declares its kind in these class attributes.

    A kind that declares `params` gets its `keys`, its `syntax`, `from_toml`, `from_words` and `toml_values`
    from them (and the shell its help and completion); `made` then checks what concerns several parameters at
    once."""

    kind: ClassVar[str]                  # its name in reports, and its command at the shell
    key: ClassVar[str]                   # the TOML key that makes a [[step]] this kind
    params: ClassVar[tuple[Param, ...]] = ()  # each parameter once: its TOML key, shell word, value and help
    keys: ClassVar[tuple[Key, ...]]      # what it reads: the [[step]] table's keys, or those of the table at `key`
    nested: ClassVar[bool] = True        # whether its keys are in a table at `key`
    syntax: ClassVar[str]
    summary: ClassVar[str]
    example: ClassVar[tuple[str, str]]   # the same step as a TOML [[step]] and as a shell line

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        if "params" in cls.__dict__:
            cls.keys = tuple(param.key for param in cls.params)
            cls.syntax = " ".join((cls.kind, *(param.syntax for param in cls.params)))

    @classmethod
    def commands(cls) -> tuple[str, ...]:
        """The shell words that start a step of this kind."""
        return (cls.kind,)

    @classmethod
    def from_toml(cls, values: dict[str, Any], *, vcpus: int, base: Path) -> Step:
        """The step from its checked TOML values, on a machine of `vcpus`; relative files from `base`."""
        return cls.made(**{param.field: param.value.kept(values[param.name], vcpus=vcpus)
                           for param in cls.params if param.name in values})

    @classmethod
    def from_words(cls, words: list[str], *, vcpus: int) -> Step:
        """The step from a shell line's words (the command first), on a machine of `vcpus`: its positional
        parameters in order, its keyword ones (`expect=5`) anywhere."""
        positional = [param for param in cls.params if param.keyword is None]
        keywords = {param.keyword: param for param in cls.params if param.keyword is not None}
        least = sum(param.many for param in positional if not param.optional)
        most = sum(param.many for param in positional) + len(keywords)
        found: dict[str, Any] = {}
        bare = []
        for word in _arguments(cls, words, least, most):
            name, equals, text = word.partition("=")
            param = keywords.get(name) if equals else None
            if param is None:
                bare.append(word)
            else:
                found[param.field] = param.value.kept_from_word(param.name, text, vcpus=vcpus)
        if len(bare) < least:
            raise _count_error(cls, least, most)
        for param in positional:
            taken, bare = bare[:param.many], bare[param.many:]
            kept = tuple(param.value.kept_from_word(param.name, word, vcpus=vcpus) for word in taken)
            if kept:
                found[param.field] = kept if param.many > 1 else kept[0]
        if bare:
            last = positional[-1]
            raise ConfigError(f"{cls.kind} takes at most {_SPELLED.get(last.many, last.many)} "
                              f"argument{'s' if last.many > 1 else ''}: {cls.syntax}")
        return cls.made(**found)

    @classmethod
    def made(cls, **fields: Any) -> Step:
        """The step of these fields, once the parameters are read; a kind checks here what no one value says."""
        return cls(**fields)

    def toml_values(self) -> dict[str, Any]:
        """The TOML values that read back to this step (its keys; an optional one left out at its default)."""
        defaults = {each.name: each.default for each in fields(self) if each.default is not MISSING}
        kept = {param: getattr(self, param.field) for param in self.params}
        return {param.name: param.value.written(value) for param, value in kept.items()
                if not (param.optional and param.field in defaults and value == defaults[param.field])}

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

    # Its own parsers: its shell words are an xen-livepatch command line, which the verbs' grammar
    # (control/verbs.py) reads; its TOML is that line as one string, with what it must give beside it.
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
        from_vcpu = request.params.get("from_vcpu")
        if from_vcpu is not None and from_vcpu >= vcpus:
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
    params: ClassVar = (_duration("run_ms", Value.MS),)
    nested: ClassVar = False
    summary: ClassVar = "Advance virtual time (5ms, 20us, 1s; a bare number is ms)."
    example: ClassVar = ("run_ms = 2.5", "run 2500us")

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

    def describe(self):
        return f"{self.kind} vCPU {self.vcpu} for {self.ns / self.unit_ns:g} {self.unit}{_after(self.delay_ns)}"


@dataclass(frozen=True)
class StallStep(VcpuForAWhile):
    """A vCPU spins with IRQs off."""

    kind: ClassVar = "stall"
    key: ClassVar = "stall"
    unit: ClassVar = "ms"
    unit_ns: ClassVar = NS_PER_MS
    params: ClassVar = (VCPU, _duration("ms", Value.MS), DELAY)
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
    params: ClassVar = (VCPU, DELAY)
    summary: ClassVar = "An NMI to that vCPU now (or DELAY from now)."
    example: ClassVar = ("nmi = { vcpu = 1, delay_us = 1 }", "nmi 1 1us")

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
    params: ClassVar = (VCPU, Param("function", Value.TEXT, "function", "FUNCTION", "the firmware function"),
                        Param("args", Value.ARGS, "arguments", "ARG", "a number or a symbol, up to two", optional=True,
                              many=2),
                        Param("expect", Value.INTEGER, "expect", "expect=N", "the result it must give", optional=True),
                        Param("delay_us", Value.US, "delay_ns", "delay=DURATION", "post it for this much later",
                              optional=True))
    summary: ClassVar = ("Run the firmware's FUNCTION(ARG, ARG) on that vCPU (an ARG is a number or a symbol) and "
                         "check its result; with a delay, post it for then and go on.")
    example: ClassVar = ('call = { vcpu = 1, function = "call_watch", args = ["answer_a", 1000], expect = 0 }',
                         "call 1 call_watch answer_a 1000 expect=0")

    @classmethod
    def made(cls, **fields):
        if fields.get("delay_ns") and fields.get("expect") is not None:
            raise ConfigError("call: a posted call (delay) gives no result to expect")
        return cls(**fields)

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
    params: ClassVar = (VCPU, _duration("us", Value.US), DELAY)
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
    params: ClassVar = (Param("vcpus", Value.VCPUS, "vcpus", "VCPU,VCPU|all", "the vCPUs it reaches"),
                        Param("rate_khz", Value.KHZ, "rate_khz", "RATE_KHZ", "NMIs per ms to each"),
                        _duration("us", Value.US), DELAY)
    summary: ClassVar = (f"NMIs to those vCPUs at RATE_KHZ for DURATION, from now (or DELAY from now); at most "
                         f"{MAX_STORM_NMIS:,} in all.")
    example: ClassVar = ('nmi_storm = { vcpus = [0, 1], rate_khz = 100, us = 200, delay_us = 5 }',
                         "nmi_storm 0,1 100 200us 5us")

    @classmethod
    def made(cls, **fields):
        count = len(fields["vcpus"]) * max(1, int(fields["ns"] * fields["rate_khz"] / (NS_PER_MS * 1.0)))
        if count > MAX_STORM_NMIS:
            raise ConfigError(f"nmi_storm would send {count:,} NMIs, more than {MAX_STORM_NMIS:,}")
        return cls(**fields)

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
    params: ClassVar = (VCPU,)
    summary: ClassVar = ("The next action does not drop that vCPU's translated code (a missing serialisation): "
                         "the oracle's stale check sees what it then runs.")
    example: ClassVar = ("drop_flush = { vcpu = 1 }", "drop_flush 1")


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

    # Its own parsers: it takes any of its keys, each at most once, in any order and some negated (`KEY!=VALUE`,
    # `{ not = X }`), and `state.NAME=` words that gather into one table; it keeps them as they are.
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

    def toml_values(self):
        return dict(self.checks)

    def describe(self):
        return "expect " + ", ".join(f"{key} = {toml_value(value)}" for key, value in self.checks.items())

    def run(self, session):
        checks = []
        wanted = self.checks
        asked = {VERSION_KEYS[key] for key in wanted.keys() & VERSION_KEYS.keys()}
        versions = {part: session.version(part) for part in VERSION_PARTS if part in asked}  # in the order they run
        for key, part in VERSION_KEYS.items():
            if part in versions:
                checks += _every_vcpu(key, wanted[key], versions[part])
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


def _arguments(kind: type[Step], words: list[str], least: int, most: int) -> list[str]:
    """The words after the command, `least` to `most` of them."""
    if not least <= len(words) - 1 <= most:
        raise _count_error(kind, least, most)
    return words[1:]


def _count_error(kind: type[Step], least: int, most: int) -> ConfigError:
    count = f"{least}" if least == most else f"{least} to {most}"
    return ConfigError(f"{kind.kind} takes {count} argument{'s' if most != 1 else ''}: {kind.syntax}: {kind.summary}")


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
