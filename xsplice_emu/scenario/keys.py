"""The one value grammar of scenario files and shell words: what each value must be, one clear message each.

`Value` says what a value is, as a TOML value (`check`) and as a shell word
(`from_word`), and what a step keeps of it (`kept`, `kept_from_word`:
durations in ns, vCPU numbers checked against the machine). `read_keys(table,
keys)` checks a TOML table against its declared `Key`s: unknown keys, missing
keys and values of the wrong kind are ConfigErrors. A step kind declares its
parameters once as `Param`s: each is a TOML key and a shell word.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Any

from ..duration import MAX_MS, UNIT_NS, parse_duration, to_ns
from ..errors import ERRNO_BY_NAME, ConfigError
from ..livepatch import PayloadState
from ..livepatch.oracle import CHECKS
from ..suggest import did_you_mean

ABSENT = "UNLOADED"
MAX_KHZ = 10_000
PAYLOAD_STATES = tuple(state.name for state in PayloadState) + (ABSENT,)


class Value(Enum):
    """What the value of a TOML key or a shell word must be, and what a step keeps of it."""

    TEXT = "a string"
    TABLE = "a table"
    LIST = "a list"
    INTEGER = "an integer"
    FLAG = "true or false"
    MS = "a duration in ms"
    US = "a duration in us"
    NAMES = "a list of payload names"
    STATES = "a table of payload states"
    ERRNO = "0, an errno number or an errno name"
    VIOLATIONS = ("a count of the safety oracle's violations, or a table of its checks (torn, active, stale, "
                  "nmi_path), each a count or { at_least = N }")
    VCPUS = 'a list of vCPU numbers or "all"'
    KHZ = f"a rate in kHz, more than 0 and at most {MAX_KHZ}"
    VCPU = "a vCPU number of the machine"
    ARGS = "at most two numbers (>= 0) or symbols"

    def check(self, key: str, raw: Any) -> Any:
        """`raw` if it is such a value (an errno name becomes its number); ConfigError naming `key`."""
        if self is Value.ERRNO:
            return _errno(key, raw)
        if self is Value.VIOLATIONS:
            return _violations(key, raw)
        if self is Value.VCPU:
            return Value.INTEGER.check(key, raw)
        if self is Value.ARGS:
            if not (isinstance(raw, list) and len(raw) <= 2
                    and all(isinstance(a, str) or type(a) is int and a >= 0 for a in raw)):
                raise ConfigError(f"{key} must be {self.value}, got {raw!r}")
            return raw
        if self is Value.VCPUS:
            if raw != "all" and not (isinstance(raw, list) and raw and all(type(v) is int and v >= 0 for v in raw)):
                raise ConfigError(f"{key} must be {self.value}, got {raw!r}")
            return raw
        if self is Value.KHZ:
            if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not 0 < raw <= MAX_KHZ:
                raise ConfigError(f"{key} must be {self.value}, got {raw!r}")
            return raw
        matches = isinstance(raw, _PYTHON_TYPES[self])
        if isinstance(raw, bool) and self is not Value.FLAG or not matches:
            raise ConfigError(f"{key} must be {self.value}, got {raw!r}")
        if self is Value.INTEGER and not self.bounds[0] <= raw <= self.bounds[1]:
            raise ConfigError(f"{key} must be an integer 0..2^63-1, got {raw!r}")
        if self in (Value.MS, Value.US):
            to_ns(raw, self.name.lower(), what=key)
        if self is Value.NAMES and not all(isinstance(name, str) for name in raw):
            raise ConfigError(f"{key} must be {self.value}, got {raw!r}")
        for name, state in raw.items() if self is Value.STATES else ():
            if state not in PAYLOAD_STATES:
                raise ConfigError(f"{key} of {name} must be one of {', '.join(PAYLOAD_STATES)}, got {state!r}")
        return raw

    @property
    def bounds(self) -> tuple[int, int]:
        """The least and the most an integer or a duration in ms may be; a command-line option that takes such a
        value takes the same range (cli/common.py)."""
        return {Value.INTEGER: (0, 2**63 - 1), Value.MS: (0, MAX_MS)}[self]

    def from_word(self, key: str, word: str) -> Any:
        """The value a shell word stands for: `5`, `true`, `hello,bye` (empty: none), text as it is."""
        if self is Value.INTEGER:
            if not word.lstrip("-").isdigit():
                raise ConfigError(f"{key} must be {self.value}, got {word!r}")
            return self.check(key, int(word))
        if self is Value.FLAG:
            if word not in ("true", "false"):
                raise ConfigError(f"{key} must be {self.value}, got {word!r}")
            return word == "true"
        if self is Value.NAMES:
            return [name for name in word.split(",") if name]
        if self is Value.VIOLATIONS:
            return Value.INTEGER.from_word(key, word)
        return word

    def kept(self, checked: Any, *, vcpus: int) -> Any:
        """What a step keeps of a checked TOML value, on a machine of `vcpus`: a duration in ns, a vCPU number
        in range, a list of vCPUs (or "all") as a tuple, call arguments as a tuple."""
        if self in (Value.MS, Value.US):
            return int(checked * UNIT_NS[self.name.lower()])
        if self is Value.VCPU:
            return _vcpu(checked, vcpus)
        if self is Value.VCPUS:
            return tuple(range(vcpus)) if checked == "all" else _distinct(tuple(_vcpu(vcpu, vcpus) for vcpu in checked))
        if self is Value.ARGS:
            return tuple(checked)
        return checked

    def kept_from_word(self, key: str, word: str, *, vcpus: int) -> Any:
        """What a step keeps of a shell word, as `kept` does of a TOML value: a duration (5ms, 20us; a bare
        number is ms) in ns, a vCPU number in range, `0,1` or `all`, a rate in kHz, a call argument (a number or
        a symbol)."""
        if self in (Value.MS, Value.US):
            return parse_duration(word)
        if self is Value.VCPU:
            return _vcpu_word(word, vcpus)
        if self is Value.VCPUS:
            if word == "all":
                return tuple(range(vcpus))
            return _distinct(tuple(_vcpu_word(w, vcpus) for w in word.split(",")))
        if self is Value.KHZ:
            try:
                khz = float(word)
            except ValueError:
                raise ConfigError(f"{key} must be {self.value}, got {word!r}") from None
            return self.check(key, khz)
        if self is Value.ARGS:
            if not word[:1].isdigit():
                return word
            try:
                return int(word, 0)
            except ValueError:
                raise ConfigError(f"{key}: {word!r} is neither a number nor a symbol") from None
        return self.from_word(key, word)

    def written(self, kept: Any) -> Any:
        """The TOML value that `kept` reads back from: a duration in ns as the shortest float in this unit that
        gives the same ns, a tuple as a list."""
        if self in (Value.MS, Value.US):
            return _in_unit(kept, UNIT_NS[self.name.lower()])
        return list(kept) if isinstance(kept, tuple) else kept


_PYTHON_TYPES: dict[Value, type | tuple[type, ...]] = {
    Value.TEXT: str, Value.INTEGER: int, Value.FLAG: bool, Value.MS: (int, float), Value.US: (int, float),
    Value.NAMES: list, Value.STATES: dict, Value.TABLE: dict, Value.LIST: list,
    Value.VIOLATIONS: (int, dict), Value.VCPUS: (list, str), Value.KHZ: (int, float),
}


def _violations(key: str, raw: Any) -> Any:
    """A count, or {check: count | {at_least = N}} over the oracle's CHECKS."""
    if not isinstance(raw, dict):
        return Value.INTEGER.check(key, raw)
    for check, wanted in raw.items():
        if check not in CHECKS:
            raise ConfigError(f"{key} has no check {check!r} (one of {', '.join(CHECKS)})")
        if isinstance(wanted, dict):
            read_keys(wanted, (Key("at_least", Value.INTEGER),), where=f"{key}.{check}: ")
        else:
            Value.INTEGER.check(f"{key}.{check}", wanted)
    return raw


def _in_unit(ns: int, unit_ns: int) -> float:
    """`ns` in units of `unit_ns`, the shortest float that `kept` (`int(value * unit_ns)`) turns back into `ns`."""
    value = ns / unit_ns
    while int(value * unit_ns) < ns:
        value = math.nextafter(value, math.inf)
    return value


def _vcpu(vcpu: int, vcpus: int) -> int:
    if not 0 <= vcpu < vcpus:
        raise ConfigError(f"vcpu {vcpu} is out of range: the machine has {vcpus} vCPUs (0..{vcpus - 1})")
    return vcpu


def _distinct(vcpus: tuple[int, ...]) -> tuple[int, ...]:
    """A list of vCPUs that names each once."""
    for k, vcpu in enumerate(vcpus):
        if vcpu in vcpus[:k]:
            raise ConfigError(f"vcpus names vCPU {vcpu} more than once ({', '.join(map(str, vcpus))})")
    return vcpus


def _vcpu_word(word: str, vcpus: int) -> int:
    if not word.isdigit() or int(word) >= vcpus:
        raise ConfigError(f"vCPU {word!r} is out of range: the machine has {vcpus} (0..{vcpus - 1})")
    return int(word)


def _errno(key: str, raw: Any) -> int:
    if isinstance(raw, str):
        if raw not in ERRNO_BY_NAME:
            raise ConfigError(f"{key} {raw!r} is not an errno name (EINVAL, EBUSY, ENOENT, ...)")
        return ERRNO_BY_NAME[raw]
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
        raise ConfigError(f"{key} must be {Value.ERRNO.value}, got {raw!r}")
    return raw


@dataclass(frozen=True)
class Key:
    """One TOML key of a step kind: its name, its value, and whether it may be left out or be `{ not = X }`."""

    name: str
    value: Value
    optional: bool = False
    negatable: bool = False

    def check(self, raw: Any) -> Any:
        if self.negatable and isinstance(raw, dict):
            read_keys(raw, (Key("not", self.value),), where=f"{self.name}: ")
            return raw
        return self.value.check(self.name, raw)


@dataclass(frozen=True)
class Param:
    """One parameter of a step kind, declared once: the TOML key `name` (its `value`, whether it may be left
    out), the step's dataclass `field` it fills, its shell `word` and its `help`.

    `word` is a positional placeholder (`VCPU`, `DURATION`) or, with an `=`, a keyword word (`expect=N`: the
    shell takes `expect=5` anywhere after the command); `many` positional words may fill one field (a tuple)."""

    name: str
    value: Value
    field: str
    word: str
    help: str
    optional: bool = False
    many: int = 1

    @property
    def key(self) -> Key:
        return Key(self.name, self.value, optional=self.optional)

    @property
    def keyword(self) -> str | None:
        """`expect` for the word `expect=N`; None for a positional parameter."""
        name, equals, _ = self.word.partition("=")
        return name if equals else None

    @property
    def syntax(self) -> str:
        """How `help` writes it: `VCPU`, `[DELAY]`, `[ARG [ARG]]`, `[expect=N]`."""
        if not self.optional and not self.keyword:
            return " ".join([self.word] * self.many)
        count = 1 if self.keyword else self.many
        return " ".join(f"[{self.word}" for _ in range(count)) + "]" * count


class KeyProblem(ConfigError):
    """A ConfigError about one key of a table (unknown, missing or a wrong value): `key` names it, so that the
    scenario loader can give its line."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


def read_keys(table: dict, keys: tuple[Key, ...], *, where: str = "") -> dict[str, Any]:
    """`table` checked against `keys` (unknown, missing or wrong values are KeyProblems; an unknown key names the
    closest known one), in its own order."""
    by_name = {key.name: key for key in keys}
    for name in table:
        if name not in by_name:
            raise KeyProblem(name, f"{where}unknown key {name!r}{did_you_mean(name, by_name)} "
                                   f"(allowed: {', '.join(by_name)})")
    for key in keys:
        if not key.optional and key.name not in table:
            raise KeyProblem(key.name, f"{where}missing key {key.name!r}")
    checked = {}
    for name, raw in table.items():
        try:
            checked[name] = by_name[name].check(raw)
        except ConfigError as exc:
            raise KeyProblem(name, f"{where}{exc}") from None
    return checked
