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

Every event from an `action_requested` to that action's `released` (in
emission order: the controller runs one action at a time) carries the
action's number, `in_action` (from 1); a `violation` carries the number of
the latest action its `action` label names. Stamped when the events are
built, not in `emit`, so that an emit site never passes it.

A long-lived machine (`serve`) bounds the memory its trace takes: `spool`
moves the events, sorted, to a temporary file as one run each time
`SPOOL_EVENTS` have gathered, and `write` and `digest` merge the runs (the
same bytes as without spooling); `discard` keeps no events at all.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import IO, Any

from ..files import file_errors
from .kinds import EventKind
from .schema import ACTION_KEY, FORMAT, VERSION, check_event

CHECK_EVENTS = "XSPLICE_EMU_CHECK_EVENTS"
SPOOL_EVENTS = 100_000
"""Events a spooled trace keeps in memory before it moves them to its file."""
SPOOL_BLOCK = 1 << 16


@dataclass(frozen=True)
class Event:
    """One thing that happened at `time_ns` on `vcpu` (None: the controller), a step of action number
    `in_action` (None: of no action)."""

    time_ns: int
    vcpu: int | None
    kind: EventKind
    fields: dict[str, Any] = field(default_factory=dict)
    in_action: int | None = None

    def to_json(self) -> str:
        record: dict[str, Any] = {"t": self.time_ns, "vcpu": self.vcpu, "kind": self.kind}
        if self.in_action is not None:
            record[ACTION_KEY] = self.in_action
        record.update(self.fields)
        return json.dumps(record, sort_keys=False, separators=(",", ":"))


def _line_time(line: str) -> int:
    """The virtual time of an event line (`to_json` puts it first: `{"t":123,...`)."""
    return int(line[5:line.index(",")])


class Trace:
    """The events of a run in emission order; written and digested in time order."""

    def __init__(self, header: dict[str, Any]):
        self.header = {"format": FORMAT, "version": VERSION, **header}
        self._events: list[Event] = []
        self._pending: list[tuple[int, int | None, EventKind, dict[str, Any]]] = []
        self._rendered: tuple[int, bytes] = (-1, b"")
        self._spool: IO[bytes] | None = None
        self._runs: list[tuple[int, int]] = []
        self._spilled = 0
        self._actions = ActionNumbers()
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

    def discard(self) -> None:
        """Keep no events from now on (a machine whose trace is never written)."""
        self._events.clear()
        self._pending.clear()
        self.emit = _ignore  # type: ignore[method-assign]

    def spool(self, *, every: int = SPOOL_EVENTS) -> None:
        """From now on keep fewer than `every` events in memory: the rest go, sorted, to a temporary file (after
        which `events` is not available; `write` and `digest` are, byte for byte as without spooling)."""
        self._spool = tempfile.TemporaryFile(buffering=0)
        record = self.emit

        def emit(time_ns: int, vcpu: int | None, kind: EventKind, **fields: Any) -> None:
            record(time_ns, vcpu, kind, **fields)
            if len(self._pending) >= every:
                self._spill()
        self.emit = emit  # type: ignore[method-assign]
        self._spill()

    def _spill(self) -> None:
        """Move the events in memory to the spool as one run sorted by time (ties in emission order)."""
        assert self._spool is not None
        events = sorted(self._built(), key=attrgetter("time_ns"))
        data = "".join([e.to_json() + "\n" for e in events]).encode()
        start = self._spool.seek(0, os.SEEK_END)
        self._spool.write(data)
        self._runs.append((start, start + len(data)))
        self._spilled += len(events)
        self._events.clear()

    def _built(self) -> list[Event]:
        if self._pending:
            number = self._actions.number
            self._events.extend([Event(*pending, number(pending[2], pending[3])) for pending in self._pending])
            self._pending.clear()
        return self._events

    @property
    def events(self) -> list[Event]:
        """Every event so far, in emission order (RuntimeError once spooled events went to the file)."""
        if self._runs:
            raise RuntimeError("this trace's events are spooled to a file; write the trace and read that")
        return self._built()

    @property
    def digest(self) -> str:
        """SHA-256 (hex) of the file `write` would write now."""
        sha = hashlib.sha256()
        for chunk in self._chunks():
            sha.update(chunk)
        return sha.hexdigest()

    def of_kind(self, kind: EventKind) -> list[Event]:
        return [e for e in self.events if e.kind == kind]

    def write(self, path: str | Path) -> None:
        """Write the header line, then one event a line, sorted by virtual time."""
        with file_errors(path, "write"), open(path, "wb") as stream:
            stream.writelines(self._chunks())

    def _chunks(self) -> Iterator[bytes]:
        """The bytes of the file, in pieces: the rendering kept in memory, or streamed from the spool's runs."""
        if not self._runs:
            yield self._render()
            return
        for line in self._lines():
            yield line.encode()

    def _lines(self) -> Iterator[str]:
        """The header line, then the event lines in time order (a stable merge: ties keep emission order)."""
        events = sorted(self._built(), key=attrgetter("time_ns"))  # stable: ties keep emission order
        yield json.dumps({**self.header, "events": self._spilled + len(events)}, separators=(",", ":")) + "\n"
        lines: Iterator[str] = (e.to_json() + "\n" for e in events)
        if self._runs:
            lines = heapq.merge(*(self._run(start, end) for start, end in self._runs), lines, key=_line_time)
        yield from lines

    def _run(self, start: int, end: int) -> Iterator[str]:
        """The lines of one spilled run, read a block at a time."""
        assert self._spool is not None
        rest = b""
        while start < end:
            block = os.pread(self._spool.fileno(), min(SPOOL_BLOCK, end - start), start)
            start += len(block)
            *lines, rest = (rest + block).split(b"\n")
            yield from (line.decode() + "\n" for line in lines)

    def _render(self) -> bytes:
        count, data = self._rendered
        if count != len(self._built()):
            data = "".join(self._lines()).encode()
            self._rendered = (len(self._events), data)
        return data


class ActionNumbers:
    """Which action each event, taken in emission order, is a step of (see the module docstring)."""

    def __init__(self) -> None:
        self.requested = 0
        self._open = False
        self._latest: dict[str, int] = {}  # action label (`apply NAME`) -> the latest action of that label

    def number(self, kind: EventKind, fields: dict[str, Any]) -> int | None:
        """The number of the action the next event, of `kind` with `fields`, belongs to, or None."""
        if kind is EventKind.ACTION_REQUESTED:
            self.requested += 1
            self._open = True
            self._latest[f"{fields['action']} {fields['payload']}"] = self.requested
        elif kind is EventKind.VIOLATION:
            return self._latest.get(fields["action"])
        elif kind is EventKind.RELEASED and self._open:
            self._open = False
            return self.requested
        return self.requested if self._open else None


def _ignore(*_: Any, **__: Any) -> None:
    """`emit` of a trace that keeps nothing."""
