"""Reading a trace file lazily: the header and an index on open, events on demand.

    trace = TraceFile.open("run.jsonl")     # checks the header, indexes every line
    len(trace)                              # number of events
    trace.time_of(i)                        # virtual ns of event i, without parsing it
    trace.events(0, 100)                    # events 0..99, parsed now
    trace.window(t0_ns, t1_ns)              # events with t0 <= t < t1 (bisect)
    trace.find({EventKind.PATCH}, start=i)  # next patch event at or after i, or None
    trace.find(None, i, vcpus={2, 3})       # next event of any kind on vCPU 2 or 3
    trace.validate()                        # parse every line and check it against the schema
    for event in trace.checked(): ...       # the same, one event at a time

Opening reads the file once, in chunks of bounded size, and keeps each
line's offset and its `t`, taken from the fixed `{"t":` prefix: no JSON is
parsed but the header's, and memory grows with the number of events, not
the file's size. An event is read from the file when it is asked for. The
first bad line ends the read. Errors are `TraceFormatError`s naming the file
and line: `run.jsonl:12: truncated line`.
"""

from __future__ import annotations

import errno
import json
import operator
import os
from array import array
from bisect import bisect_left
from collections.abc import Collection, Iterator
from itertools import accumulate, islice
from pathlib import Path
from typing import Any, BinaryIO

from ..arch import DEFAULT_ARCH, Architecture, for_name
from ..errors import FileError, TraceFormatError
from ..files import file_errors, open_regular
from .kinds import BY_NAME, EventKind
from .schema import ACTION_KEY, check_fields, check_header
from .trace import Event

TRACE_LIMIT = 8 * 1024**3
"""Largest trace file opened (bytes)."""
HEADER_LIMIT = 1024 * 1024
"""Longest header line read (bytes)."""
CHUNK = 16 * 1024 * 1024
"""Bytes read at a time while indexing; also the longest event line."""

_PREFIX = b'{"t":'


class TraceFile:
    """An opened trace: `header`, `len()` events, each read and parsed when asked for."""

    def __init__(self, path: Path, header: dict[str, Any], stream: BinaryIO, offsets: array, times: array):
        self.path = path
        self.header = header
        self._stream = stream
        self._offsets = offsets  # event i is the bytes [offsets[i], offsets[i + 1] - 1) of the file: line i + 2
        self._times = times

    @classmethod
    def open(cls, path: str | Path) -> TraceFile:
        """Open `path`, check its header and index its events (no event is parsed)."""
        path = Path(path)
        stream = open_regular(path, what="trace")
        try:
            if os.fstat(stream.fileno()).st_size > TRACE_LIMIT:
                raise FileError(f"{path}: the trace is larger than {TRACE_LIMIT:,} bytes", errno=errno.EFBIG)
            with file_errors(path, "read the trace"):
                header, start = _read_header(path, stream)
                offsets, times = _index(path, stream, start, header["events"])
        except BaseException:
            stream.close()
            raise
        return cls(path, header, stream, offsets, times)

    # -- the index ---------------------------------------------------------
    def __len__(self) -> int:
        return len(self._times)

    @property
    def arch(self) -> Architecture:
        """The guest architecture the trace was recorded on (its header's `arch`; the default's when it has none)."""
        arch = for_name(self.header.get("arch", DEFAULT_ARCH.name))
        assert arch is not None, "check_header admits only known architectures"
        return arch

    @property
    def vcpus(self) -> int:
        return self.header["vcpus"]

    @property
    def start_ns(self) -> int:
        """Time of the first event (0 for an empty trace)."""
        return self._times[0] if self._times else 0

    @property
    def end_ns(self) -> int:
        """Time of the last event (0 for an empty trace)."""
        return self._times[-1] if self._times else 0

    def time_of(self, index: int) -> int:
        """Virtual ns of event `index`, without parsing it."""
        return self._times[index]

    def line_of(self, index: int) -> int:
        """The file's line number (from 1) of event `index`."""
        return index + 2

    def index_at(self, time_ns: int) -> int:
        """Index of the first event at or after `time_ns` (len() if none)."""
        return bisect_left(self._times, time_ns)

    # -- events, parsed on demand --------------------------------------------
    def event(self, index: int) -> Event:
        """Event `index`, parsed now."""
        return self._parse(index)

    def events(self, start: int = 0, stop: int | None = None) -> list[Event]:
        """Events `start` .. `stop - 1` (like a slice), parsed now."""
        start, stop, _ = slice(start, stop).indices(len(self))
        return [self._parse(i) for i in range(start, stop)]

    def window(self, t0_ns: int, t1_ns: int) -> list[Event]:
        """The events with `t0_ns <= t < t1_ns`."""
        return self.events(self.index_at(t0_ns), self.index_at(t1_ns))

    def __iter__(self) -> Iterator[Event]:
        """Every event in order, parsed one at a time."""
        return (self._parse(i) for i in range(len(self)))

    def find(self, kinds: Collection[EventKind] | None = None, start: int = 0, *,
             vcpus: Collection[int] | None = None, backward: bool = False) -> int | None:
        """Index of the first event at or after `start` (at or before, `backward`)
        whose kind is in `kinds` and whose vCPU is in `vcpus` (None or empty: any,
        the controller included); None if there is none. Matches the raw lines,
        so only a likely hit is parsed."""
        kind_needles = [f'"kind":"{kind}"'.encode() for kind in kinds] if kinds else None
        vcpu_needles = [f'"vcpu":{vcpu},'.encode() for vcpu in vcpus] if vcpus else None
        indices = range(min(start, len(self) - 1), -1, -1) if backward else range(max(start, 0), len(self))
        for index in indices:
            line = self._line(index)
            if ((kind_needles is None or any(needle in line for needle in kind_needles))
                    and (vcpu_needles is None or any(needle in line for needle in vcpu_needles))):
                event = self._parse(index)
                if (not kinds or event.kind in kinds) and (not vcpus or event.vcpu in vcpus):
                    return index
        return None

    def checked(self) -> Iterator[Event]:
        """Every event in order, each checked against the schema as it is parsed
        (raises on the first bad line)."""
        vcpus = self.vcpus
        for index in range(len(self)):
            event = self._parse(index)
            problem = check_fields(event.kind, event.fields)
            if problem is None and event.time_ns != self._times[index]:
                problem = f"\"t\" is {event.time_ns!r}, but the line starts with {self._times[index]}"
            if problem is None and event.vcpu is not None and not 0 <= event.vcpu < vcpus:
                problem = f"vcpu {event.vcpu} is not one of the trace's {vcpus} vCPUs"
            if problem:
                raise self._error(index, problem)
            yield event

    def validate(self) -> None:
        """Parse every event and check it against the schema; raise on the first bad line."""
        for _ in self.checked():
            pass

    # -- parsing -------------------------------------------------------------
    def _line(self, index: int) -> bytes:
        """Event `index`'s line, without its newline, read from the file."""
        begin = self._offsets[index]
        return os.pread(self._stream.fileno(), self._offsets[index + 1] - 1 - begin, begin)

    def _parse(self, index: int) -> Event:
        record = _parse_json(self.path, self.line_of(index), self._line(index))
        if type(record) is not dict:
            raise self._error(index, "not a JSON object")
        time_ns = record.pop("t", None)
        vcpu = record.pop("vcpu", ...)
        name = record.pop("kind", None)
        action = record.pop(ACTION_KEY, None)
        kind = BY_NAME.get(name) if type(name) is str else None
        if type(time_ns) is not int:
            raise self._error(index, f"\"t\" is {time_ns!r}, not a time in ns")
        if vcpu is not None and type(vcpu) is not int:
            raise self._error(index, f"\"vcpu\" is {'missing' if vcpu is ... else repr(vcpu)}, not a vCPU or null")
        if kind is None:
            raise self._error(index, f"unknown event kind {name!r}")
        if action is not None and (type(action) is not int or action < 1):
            raise self._error(index, f"\"{ACTION_KEY}\" is {action!r}, not an action number (1 or more)")
        return Event(time_ns, vcpu, kind, record, action)

    def _error(self, index: int, problem: str) -> TraceFormatError:
        return TraceFormatError(f"{self.path}:{self.line_of(index)}: {problem}")


# json.loads without its per-call overhead; errors come from json.loads. JSONDecoder sets scan_once in
# __init__, and typeshed does not declare it.
_scan = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def _parse_json(path: Path, line_number: int, line: bytes) -> Any:
    try:
        text = line.decode()
        value, end = _scan(text, 0)
        if end == len(text):
            return value
    except (StopIteration, ValueError, RecursionError):
        pass
    try:
        return json.loads(line)
    except RecursionError:
        raise TraceFormatError(f"{path}:{line_number}: bad JSON: nested too deeply") from None
    except ValueError as exc:
        where = f" at column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise TraceFormatError(f"{path}:{line_number}: bad JSON: {reason}{where}") from None


def _read_header(path: Path, stream: BinaryIO) -> tuple[dict[str, Any], int]:
    """The checked header (line 1) and the offset of the line after it."""
    line = stream.readline(HEADER_LIMIT + 1)
    if not line:
        raise TraceFormatError(f"{path}:1: empty file, no header")
    if not line.endswith(b"\n"):
        raise TraceFormatError(f"{path}:1: not a trace header (no end of line in its first {HEADER_LIMIT:,} bytes)"
                               if len(line) > HEADER_LIMIT else
                               f"{path}:1: truncated line (the file does not end with a newline)")
    header = _parse_json(path, 1, line[:-1])
    problem = check_header(header)
    if problem:
        raise TraceFormatError(f"{path}:1: {problem}")
    return header, len(line)


def _index(path: Path, stream: BinaryIO, start: int, announced: int) -> tuple[array, array]:
    """Offsets and times of the event lines from `start`, read a chunk at a time; the first bad line raises."""
    offsets, times = array("q", [start]), array("q")
    carry = b""
    while chunk := stream.read(CHUNK):
        lines = (carry + chunk).split(b"\n")
        carry = lines.pop()
        if len(carry) > CHUNK:
            raise TraceFormatError(f"{path}:{len(times) + 2}: not an event line (longer than {CHUNK:,} bytes)")
        _add_lines(path, lines, offsets, times, announced)
    if carry:
        _add_lines(path, [carry], offsets, times, announced)
        raise TraceFormatError(f"{path}:{len(times) + 1}: truncated line (the file does not end with a newline)")
    if len(times) < announced:
        raise TraceFormatError(f"{path}:{len(times) + 1}: truncated file: the header announces "
                               f"{announced} events, the file ends after {len(times)}")
    return offsets, times


def _add_lines(path: Path, lines: list[bytes], offsets: array, times: array, announced: int) -> None:
    """Index `lines` (event lines number len(times) + 2 on): their times and where the next line starts."""
    first = len(times) + 2
    if len(times) + len(lines) > announced:
        raise TraceFormatError(f"{path}:{announced + 2}: the header announces {announced} events, more follow")
    try:
        new = [int(line[5:line.index(b",", 5)]) for line in lines if line.startswith(_PREFIX)]
    except ValueError:
        new = []
    if len(new) != len(lines):
        for index, line in enumerate(lines):
            if not _has_time_prefix(line):
                raise TraceFormatError(f"{path}:{first + index}: not an event line (an event line starts with "
                                       f"{{\"t\":<ns>,)" if line else f"{path}:{first + index}: empty line")
    both = [*times[-1:], *new]
    if not all(map(operator.le, both, islice(both, 1, None))):
        index = next(i for i in range(1, len(both)) if both[i] < both[i - 1])
        raise TraceFormatError(f"{path}:{first + index - (len(both) - len(new))}: time {both[index]} is before the "
                               f"previous line's {both[index - 1]} (events must be sorted by time)")
    times.extend(new)
    offsets.extend(accumulate((len(line) + 1 for line in lines), initial=offsets[-1]))
    del offsets[-len(lines) - 1]  # accumulate repeats the running start


def _has_time_prefix(line: bytes) -> bool:
    comma = line.find(b",", 5)
    return line.startswith(_PREFIX) and comma > 5 and line[5:comma].isdigit()
