"""Trace events: what happened, on which vCPU, at which virtual time.

Events are frozen values kept in the order they were emitted (vCPUs run
ahead of each other in slices, so that is not time order); `emit` only
records a tuple, from inside the machine's hooks, and `events` builds the
values when read. The written file
(docs/trace-format.md) is the header line, then the events sorted by
virtual time, ties in emission order; the digest is the SHA-256 of exactly
those bytes, so the same seed and options give the same digest and
`sha256sum` of the file gives it too. Host timings never enter an event.

With XSPLICE_EMU_CHECK_EVENTS=1 in the environment when a Trace is made
(tests/conftest.py sets it for the test suite), its `emit` checks every
event against `EventKind` and raises ValueError at the emit site; without
it, `emit` does nothing but append.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import Any

from ..files import write_file
from .kinds import EventKind
from .schema import FORMAT, VERSION, check_event

CHECK_EVENTS = "XSPLICE_EMU_CHECK_EVENTS"


@dataclass(frozen=True)
class Event:
    """One thing that happened at `time_ns` on `vcpu` (None: the controller)."""

    time_ns: int
    vcpu: int | None
    kind: EventKind
    fields: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        record = {"t": self.time_ns, "vcpu": self.vcpu, "kind": self.kind, **self.fields}
        return json.dumps(record, sort_keys=False, separators=(",", ":"))


class Trace:
    """The events of a run in emission order; written and digested in time order."""

    def __init__(self, header: dict[str, Any]):
        self.header = {"format": FORMAT, "version": VERSION, **header}
        self._events: list[Event] = []
        self._pending: list[tuple[int, int | None, EventKind, dict[str, Any]]] = []
        self._rendered: tuple[int, bytes] = (-1, b"")
        if os.environ.get(CHECK_EVENTS) == "1":
            self.emit = self._checked_emit  # type: ignore[method-assign]

    def emit(self, time_ns: int, vcpu: int | None, kind: EventKind, **fields: Any) -> None:
        """Record an event (cheap: called from the machine's hooks; the Event is built when read)."""
        self._pending.append((time_ns, vcpu, kind, fields))

    def _checked_emit(self, time_ns: int, vcpu: int | None, kind: EventKind, **fields: Any) -> None:
        """`emit` under XSPLICE_EMU_CHECK_EVENTS=1: raise ValueError on a bad kind or bad fields."""
        problem = check_event(kind, fields)
        if problem:
            raise ValueError(f"emit at {time_ns} ns on vCPU {vcpu}: {problem}")
        self._pending.append((time_ns, vcpu, kind, fields))

    @property
    def events(self) -> list[Event]:
        """Every event so far, in emission order."""
        if self._pending:
            self._events.extend([Event(*pending) for pending in self._pending])
            self._pending.clear()
        return self._events

    @property
    def digest(self) -> str:
        """SHA-256 (hex) of the file `write` would write now."""
        return hashlib.sha256(self._render()).hexdigest()

    def of_kind(self, kind: EventKind) -> list[Event]:
        return [e for e in self.events if e.kind == kind]

    def write(self, path: str | Path) -> None:
        """Write the header line, then one event a line, sorted by virtual time."""
        write_file(path, self._render())

    def _render(self) -> bytes:
        count, data = self._rendered
        if count != len(self.events):
            events = sorted(self.events, key=attrgetter("time_ns"))  # stable: ties keep emission order
            header = json.dumps({**self.header, "events": len(events)}, separators=(",", ":"))
            data = "".join([header, "\n", *(e.to_json() + "\n" for e in events)]).encode()
            self._rendered = (len(events), data)
        return data
