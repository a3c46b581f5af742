"""The keys of a scenario file's tables: what each value must be, checked with one clear message.

`read_keys(table, keys)` checks a TOML table against its declared `Key`s:
unknown keys, missing keys and values of the wrong kind are ConfigErrors.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from ..duration import to_ns
from ..errors import ERRNO_BY_NAME, ConfigError
from ..livepatch import PayloadState
from ..livepatch.oracle import CHECKS
from ..suggest import did_you_mean

ABSENT = "UNLOADED"
MAX_KHZ = 10_000
PAYLOAD_STATES = tuple(state.name for state in PayloadState) + (ABSENT,)


class Value(Enum):
    """What the value of a TOML key (or the word after `KEY=` in a shell `expect`) must be."""

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

    def check(self, key: str, raw: Any) -> Any:
        """`raw` if it is such a value (an errno name becomes its number); ConfigError naming `key`."""
        if self is Value.ERRNO:
            return _errno(key, raw)
        if self is Value.VIOLATIONS:
            return _violations(key, raw)
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
        if self is Value.INTEGER and not 0 <= raw < 2**63:
            raise ConfigError(f"{key} must be an integer 0..2^63-1, got {raw!r}")
        if self in (Value.MS, Value.US):
            to_ns(raw, self.name.lower(), what=key)
        if self is Value.NAMES and not all(isinstance(name, str) for name in raw):
            raise ConfigError(f"{key} must be {self.value}, got {raw!r}")
        for name, state in raw.items() if self is Value.STATES else ():
            if state not in PAYLOAD_STATES:
                raise ConfigError(f"{key} of {name} must be one of {', '.join(PAYLOAD_STATES)}, got {state!r}")
        return raw

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
