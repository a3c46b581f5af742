"""Trace events: what happened, on which vCPU, at which virtual time.

Events are frozen values; `Trace` keeps them in order and computes a digest
over exactly what is written to the JSON Lines file, so the same seed and
options give the same digest. Host timings never enter an event.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1


@dataclass(frozen=True)
class Event:
    """One thing that happened at `time_ns` on `vcpu` (None: the controller)."""

    time_ns: int
    vcpu: int | None
    kind: str
    fields: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        record = {"t": self.time_ns, "vcpu": self.vcpu, "kind": self.kind, **self.fields}
        return json.dumps(record, sort_keys=False, separators=(",", ":"))


class Trace:
    """An ordered list of events with a digest computed on demand."""

    def __init__(self, header: dict[str, Any]):
        self.header = {"format": "xsplice-emu-trace", "version": FORMAT_VERSION, **header}
        self.events: list[Event] = []
        self._hash = hashlib.sha256()
        self._hashed = 0

    def emit(self, time_ns: int, vcpu: int | None, kind: str, **fields: Any) -> Event:
        event = Event(time_ns, vcpu, kind, fields)
        self.events.append(event)
        return event

    @property
    def digest(self) -> str:
        """SHA-256 of the event lines so far (the header is not included)."""
        for event in self.events[self._hashed:]:
            self._hash.update(event.to_json().encode() + b"\n")
        self._hashed = len(self.events)
        return self._hash.hexdigest()

    def of_kind(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.kind == kind]

    def write(self, path: str | Path) -> None:
        """Write the header line, then one event a line."""
        with Path(path).open("w") as out:
            out.write(json.dumps(self.header, separators=(",", ":")) + "\n")
            for event in self.events:
                out.write(event.to_json() + "\n")
