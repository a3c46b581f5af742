"""The trace format as data: the header's fields, the field types, and checks.

Event kinds and their fields are `kinds.EventKind`. `check_header`,
`check_fields` and `check_event` say what is wrong with a header, an
event's fields or an event about to be emitted, or return None.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..arch import ARCHITECTURES, DEFAULT_ARCH, for_name
from .kinds import EventKind, Field

FORMAT = "xsplice-emu-trace"
VERSION = 4
"""4 (this version): an event that is a step of a live patching action carries its number, `in_action`."""


def _is_int(value: Any) -> bool:
    return type(value) is int


def _is_hex(value: Any) -> bool:
    if type(value) is not str or len(value) % 2:
        return False
    try:
        bytes.fromhex(value)
    except ValueError:
        return False
    return True


TYPES: dict[str, Callable[[Any], bool]] = {
    "int": _is_int,
    "int?": lambda v: v is None or type(v) is int,
    "str": lambda v: type(v) is str,
    "bool": lambda v: type(v) is bool,
    "hex": _is_hex,
    "object": lambda v: type(v) is dict,
}


HEADER: tuple[Field, ...] = (
    Field("format", "str", f"always {FORMAT!r}"),
    Field("version", "int", f"format version ({VERSION})"),
    Field("seed", "int", "the scheduler's seed"),
    Field("options", "object", "every MachineConfig field"),
    Field("firmware_build_id", "hex", "the firmware's GNU build-id; empty on the xen engine (no firmware)"),
    Field("hypervisor_build_id", "hex", "the patched hypervisor's build-id: a real Xen's (--xen-syms), else the "
          "firmware's"),
    Field("arch", "str", f"the guest architecture's name; optional: a trace without it is {DEFAULT_ARCH.name}'s"),
    Field("vcpus", "int", "number of vCPUs"),
    Field("clock_hz", "int", "virtual instructions per second"),
    Field("events", "int", "number of event lines that follow"),
)

EVENT_KEYS = ("t", "vcpu", "kind")
ACTION_KEY = "in_action"
"""The key after `kind` on the events of an action: its number, from 1 (absent on other events)."""


def check_header(header: Any) -> str | None:
    """What is wrong with a parsed header line (version first), or None."""
    if type(header) is not dict or header.get("format") != FORMAT:
        return f"not an xsplice-emu trace (the first line has no \"format\": {FORMAT!r})"
    if header.get("version") != VERSION:
        return f"trace format version {header.get('version')}, this reader knows {VERSION}"
    header = {"arch": DEFAULT_ARCH.name, **header}
    if type(header["arch"]) is str and for_name(header["arch"]) is None:
        return (f"trace of architecture {header['arch']!r}, this reader knows "
                f"{', '.join(arch.name for arch in ARCHITECTURES.values())}")
    return _check(header, HEADER, "header")


def check_fields(kind: EventKind, fields: dict[str, Any]) -> str | None:
    """What is wrong with the fields of an event of `kind`, or None."""
    return _check(fields, kind.fields, f"{kind.value} event")


def check_event(kind: Any, fields: dict[str, Any]) -> str | None:
    """What is wrong with an event about to be emitted (its kind, then its fields), or None."""
    if not isinstance(kind, EventKind):
        return f"{kind!r} is not an EventKind"
    return check_fields(kind, fields)


def _check(record: dict[str, Any], spec: tuple[Field, ...], what: str) -> str | None:
    for f in spec:
        if f.name not in record:
            return f"{what} has no field {f.name!r}"
        if not TYPES[f.type](record[f.name]):
            return f"{what} field {f.name!r} is {record[f.name]!r}, not {f.type}"
    if len(record) != len(spec):
        extra = next(name for name in record if name not in {f.name for f in spec})
        return f"{what} has an unknown field {extra!r}"
    return None
