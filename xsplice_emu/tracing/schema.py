"""The trace format as data: header fields, event kinds and their fields.

docs/trace-format.md describes the same kinds in prose (a test checks that
they agree). `check_header` and `check_fields` say what is wrong with a
header or an event's fields, or return None.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ..trace import FORMAT_VERSION

FORMAT = "xsplice-emu-trace"
VERSION = FORMAT_VERSION


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


@dataclass(frozen=True)
class Field:
    """A named field, its type (a key of TYPES) and what it means."""

    name: str
    type: str
    meaning: str


@dataclass(frozen=True)
class Kind:
    """An event kind: its name, what it means and its own fields."""

    name: str
    meaning: str
    fields: tuple[Field, ...] = ()


def _kind(name: str, meaning: str, *fields: tuple[str, str, str]) -> Kind:
    return Kind(name, meaning, tuple(Field(*f) for f in fields))


HEADER: tuple[Field, ...] = (
    Field("format", "str", f"always {FORMAT!r}"),
    Field("version", "int", f"format version ({VERSION})"),
    Field("seed", "int", "the scheduler's seed"),
    Field("options", "object", "every MachineConfig field"),
    Field("firmware_build_id", "hex", "the firmware's GNU build-id"),
    Field("vcpus", "int", "number of vCPUs"),
    Field("clock_hz", "int", "virtual instructions per second"),
    Field("events", "int", "number of event lines that follow"),
)

_VECTOR = ("vector", "int", "the vector")
_SENDER = ("sender", "int?", "the sending vCPU; null: the controller or the local timer")
_PAYLOAD = ("payload", "str", "the payload's name")
_PHASE = ("phase", "str", "CPU or IRQ")
_TEXT = ("text", "str", "the line")

KINDS: dict[str, Kind] = {kind.name: kind for kind in (
    # the machine: what each vCPU does
    _kind("cpu_start", "a vCPU started at _start", ("by", "int?", "the vCPU that started it; null: the machine")),
    _kind("timer", "the vCPU programmed its periodic timer", ("vector", "int", "the timer's vector (0: off)")),
    _kind("task", "the scheduler switched the vCPU to a task", ("task", "str", "the task function's symbol")),
    _kind("halt", "the vCPU executed hlt", ("interrupts_enabled", "bool", "IF at the hlt")),
    _kind("wake", "a halted vCPU woke to take an interrupt"),
    _kind("interrupt", "a maskable interrupt was delivered", _VECTOR, _SENDER),
    _kind("nmi", "an NMI was delivered", _VECTOR, _SENDER,
          ("lost", "bool", "nmi_callback was not default_nmi_callback: the NMI is swallowed")),
    _kind("exception", "a CPU exception was delivered", _VECTOR, ("rip", "int", "where it happened")),
    _kind("iret", "the innermost handler returned", ("vector", "int?", "its vector; null: unknown")),
    _kind("nmi_unblocked", "an iretq ended NMI blocking"),
    _kind("park", "the vCPU waits in check_for_xsplice_work"),
    _kind("unpark", "a parked vCPU runs again", ("cause", "str", "release or interrupt")),
    _kind("ipi", "an interrupt was sent (vcpu: the sender)",
          ("to", "int", "the receiving vCPU"), ("vector", "int", "the vector (2: NMI)")),
    _kind("console", "the vCPU printed a line", _TEXT),
    _kind("fault", "the guest faulted; the run stopped", ("what", "str", "what happened"), ("rip", "int", "where")),
    # live patching
    _kind("upload", "a payload was loaded", _PAYLOAD, ("build_id", "hex", "its build-id"),
          ("functions", "int", "function records")),
    _kind("unload", "a payload was dropped", _PAYLOAD),
    _kind("action_requested", "an action was requested; the rendezvous starts", _PAYLOAD,
          ("action", "str", "apply, revert or replace"), ("from_vcpu", "int", "the vCPU kicked first"),
          ("timeout_ns", "int", "the rendezvous deadline")),
    _kind("master_elected", "the first vCPU in became master", ("cpus", "int", "vCPUs it waits for")),
    _kind("nmi_masked", "the master masked NMIs"),
    _kind("nmi_unmasked", "the master unmasked NMIs", ("lost", "int", "NMIs swallowed meanwhile")),
    _kind("arrived", "a vCPU reached a phase", _PHASE, ("count", "int", "arrived so far"),
          ("of", "int", "vCPUs awaited")),
    _kind("phase_complete", "every vCPU arrived in a phase", _PHASE),
    _kind("irq_masked", "the vCPU disabled its IRQs for the rendezvous"),
    _kind("irq_unmasked", "the vCPU enabled its IRQs again"),
    _kind("quiesced", "every vCPU parked with IRQs off: the patch window opens"),
    _kind("patch", "the master rewrote a function's start", _PAYLOAD, ("function", "str", "the function"),
          ("address", "int", "where"), ("old", "hex", "bytes before"), ("new", "hex", "bytes written")),
    _kind("flush", "translated code of a range dropped on every vCPU", ("begin", "int", "first address"),
          ("end", "int", "end address"), ("vcpus", "int", "vCPUs flushed")),
    _kind("abort", "the deadline passed: nothing patched, -EBUSY", ("reason", "str", "why"),
          ("arrived", "int", "vCPUs arrived"), ("of", "int", "vCPUs awaited")),
    _kind("released", "the action is over; every vCPU is let go", ("rc", "int", "the action's result")),
    _kind("left", "the vCPU returned from check_for_xsplice_work"),
    _kind("log", "a hypervisor log line", _TEXT),
)}

EVENT_KEYS = ("t", "vcpu", "kind")


def check_header(header: Any) -> str | None:
    """What is wrong with a parsed header line (version first), or None."""
    if type(header) is not dict or header.get("format") != FORMAT:
        return f"not an xsplice-emu trace (the first line has no \"format\": {FORMAT!r})"
    if header.get("version") != VERSION:
        return f"trace format version {header.get('version')}, this reader knows {VERSION}"
    return _check(header, HEADER, "header")


def check_fields(kind: Kind, fields: dict[str, Any]) -> str | None:
    """What is wrong with the fields of an event of `kind`, or None."""
    return _check(fields, kind.fields, f"{kind.name} event")


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
