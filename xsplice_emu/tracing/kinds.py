"""Every kind of trace event, with what it means and its own fields.

`EventKind` is the one registry: emitters pass its members to `Trace.emit`,
readers compare `event.kind` with them, `schema` checks fields against
them and docs/trace-format.md describes them (a test checks it). A member
is its string (`EventKind.PATCH == "patch"`), which is what a file holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True)
class Field:
    """A named field, its type (a key of `schema.TYPES`) and what it means."""

    name: str
    type: str
    meaning: str


_VECTOR = ("vector", "int", "the vector")
_SENDER = ("sender", "int?", "the sending vCPU; null: the controller or the local timer")
_PAYLOAD = ("payload", "str", "the payload's name")
_PHASE = ("phase", "str", "CPU or IRQ")
_TEXT = ("text", "str", "the line")


class EventKind(StrEnum):
    """An event kind: its name (the value), `meaning` and `fields`."""

    meaning: str
    fields: tuple[Field, ...]

    def __new__(cls, name: str, meaning: str, *fields: tuple[str, str, str]) -> EventKind:
        member = str.__new__(cls, name)
        member._value_ = name
        member.meaning = meaning
        member.fields = tuple(Field(*f) for f in fields)
        return member

    # the machine: what each vCPU does
    CPU_START = "cpu_start", "a vCPU started at _start", ("by", "int?", "the vCPU that started it; null: the machine")
    TIMER = "timer", "the vCPU programmed its periodic timer", ("vector", "int", "the timer's vector (0: off)")
    TASK = "task", "the scheduler switched the vCPU to a task", ("task", "str", "the task function's symbol")
    HALT = "halt", "the vCPU executed hlt", ("interrupts_enabled", "bool", "IF at the hlt")
    WAKE = "wake", "a halted vCPU woke to take an interrupt"
    INTERRUPT = "interrupt", "a maskable interrupt was delivered", _VECTOR, _SENDER
    NMI = "nmi", "an NMI was delivered", _VECTOR, _SENDER
    NMI_LOST = "nmi_lost", "the NMI just delivered is swallowed: nmi_callback was not default_nmi_callback"
    EXCEPTION = "exception", "a CPU exception was delivered", _VECTOR, ("rip", "int", "where it happened")
    IRET = "iret", "the innermost handler returned", ("vector", "int?", "its vector; null: unknown")
    NMI_UNBLOCKED = "nmi_unblocked", "an iretq ended NMI blocking"
    CODE_WRITE = ("code_write", "code written: by the vCPU through the writable alias, or (vcpu null) by the "
                  "host's unsynchronised patch (apply --unsafe)",
                  ("address", "int", "first byte written (its text address)"), ("size", "int", "bytes written"))
    CODE_SYNC = ("code_sync", "a serialising instruction: the vCPU now runs code other vCPUs wrote",
                 ("ranges", "int", "written ranges it had not seen"))
    PARK = "park", "the vCPU waits in check_for_xsplice_work"
    UNPARK = "unpark", "a parked vCPU runs again", ("cause", "str", "release or interrupt")
    IPI = ("ipi", "an interrupt was sent (vcpu: the sender)",
           ("to", "int", "the receiving vCPU"), ("vector", "int", "the vector (2: NMI)"))
    STALL = ("stall", "the testbed asked the vCPU to spin with IRQs off (the call IPI that carries it follows)",
             ("ns", "int", "for how long"))
    PREEMPT = ("preempt", "the host stops scheduling the vCPU for a while (a fault; its IRQ state is untouched)",
               ("ns", "int", "for how long"))
    CONSOLE = "console", "the vCPU printed a line", _TEXT
    FAULT = "fault", "the guest faulted; the run stopped", ("what", "str", "what happened"), ("rip", "int", "where")
    # live patching
    UPLOAD = ("upload", "a payload was loaded", _PAYLOAD, ("build_id", "hex", "its build-id"),
              ("functions", "int", "function records"))
    UNLOAD = "unload", "a payload was dropped", _PAYLOAD
    ACTION_REQUESTED = ("action_requested", "an action was requested; the rendezvous starts", _PAYLOAD,
                        ("action", "str", "apply, revert or replace"),
                        ("from_vcpu", "int", "the vCPU dom0 made the request on, kicked first"),
                        ("timeout_ns", "int", "the rendezvous deadline"))
    MASTER_ELECTED = "master_elected", "the first vCPU in became master", ("cpus", "int", "vCPUs it waits for")
    NMI_MASKED = "nmi_masked", "the master masked NMIs"
    NMI_UNMASKED = "nmi_unmasked", "the master unmasked NMIs", ("lost", "int", "NMIs swallowed meanwhile")
    ARRIVED = ("arrived", "a vCPU reached a phase", _PHASE, ("count", "int", "arrived so far"),
               ("of", "int", "vCPUs awaited"))
    PHASE_COMPLETE = "phase_complete", "every vCPU arrived in a phase", _PHASE
    IRQ_MASKED = "irq_masked", "the vCPU disabled its IRQs for the rendezvous"
    IRQ_UNMASKED = "irq_unmasked", "the vCPU enabled its IRQs again"
    QUIESCED = "quiesced", "every vCPU parked with IRQs off: the patch window opens"
    VIOLATION = ("violation", "the safety oracle saw patching go wrong on this vCPU (docs/oracle.md)",
                 ("check", "str", "torn, active, stale, nmi_path or residue"),
                 ("address", "int", "the offending address"),
                 ("symbol", "str", "that address with symbols"), ("action", "str", "the action it counts towards: "
                                                                                  "ACTION NAME, or -"),
                 ("walk", "str", "how its stack was read: frame pointers, or conservative (every code address on it)"),
                 ("backtrace", "str", "code addresses on its live stack, innermost first, with symbols"),
                 ("detail", "str", "what was seen"))
    PATCH = ("patch", "the master rewrote a function's start", _PAYLOAD, ("function", "str", "the function"),
             ("address", "int", "where"), ("old", "hex", "bytes before"), ("new", "hex", "bytes written"))
    FLUSH = ("flush", "translated code of a range dropped on every vCPU", ("begin", "int", "first address"),
             ("end", "int", "end address"), ("vcpus", "int", "vCPUs flushed"))
    ABORT = ("abort", "the deadline passed: nothing patched, -EBUSY", ("reason", "str", "why"),
             ("arrived", "int", "vCPUs arrived"), ("of", "int", "vCPUs awaited"),
             ("missing", "str", "the vCPUs that never arrived in that phase: cpu2 cpu5"))
    ACTION_FAILED = ("action_failed", "the action failed inside the patch window: what it did is put back",
                  ("error", "str", "the error"), ("restored", "int", "bytes put back"))
    RELEASED = "released", "the action is over; every vCPU is let go", ("rc", "int", "the action's result")
    LEFT = "left", "the vCPU returned from check_for_xsplice_work"
    LOG = "log", "a hypervisor log line", _TEXT
    NOTE = "note", "a remark of the testbed's, not a line Xen prints", _TEXT


BY_NAME: Mapping[str, EventKind] = {kind.value: kind for kind in EventKind}
"""Each kind by its name: a dict lookup, several times cheaper than `EventKind(name)`."""
