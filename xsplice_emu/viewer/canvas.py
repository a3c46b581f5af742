"""Painting a frame into rows of styled cells: the vCPU lanes and the time ruler.

A row is a list of rich Segments exactly `width` cells wide. A lane's
cell takes the colour of the state that took most of its stretch of time,
and the marker of an event there (so a short NMI still shows, as `!`);
each action's request and release are drawn as edges across every lane
and its deadline as a dotted line.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import groupby

from rich.segment import Segment
from rich.style import Style

from ..tracing import ActionSummary, EventKind, Span, State
from ..tracing.trace import Event
from .times import tick_label, tick_step
from .viewport import Viewport

STATE_COLOURS = {  # distinct hues: grey, green, blue, purple, yellow, pink, brown, red
    State.HALTED: "#3a3a3a",
    State.TASK: "#2e7d32",
    State.RENDEZVOUS: "#1565c0",
    State.PARKED: "#7b1fa2",
    State.IRQ: "#fdd835",
    State.WINDOW: "#ec407a",
    State.EXCEPTION: "#6d4c41",
    State.NMI: "#d32f2f",
}
STATE_GLYPHS = {  # so that a lane reads without colour, and in a text capture
    State.HALTED: " ",
    State.TASK: "=",
    State.RENDEZVOUS: "~",
    State.PARKED: "_",
    State.IRQ: "i",
    State.WINDOW: "#",
    State.EXCEPTION: "e",
    State.NMI: "n",
}
_LIGHT = frozenset({State.IRQ, State.WINDOW})  # states whose colour needs dark glyphs and markers
_STATE_STYLES = {state: Style(color="black" if state in _LIGHT else "#bdbdbd", bgcolor=colour)
                 for state, colour in STATE_COLOURS.items()}
_NO_COLOUR = "#555555"
_UNKNOWN = Style(color=_NO_COLOUR)
_EDGE = Style(color="bright_white", bold=True)
_DEADLINE = Style(color="#ff5252", bold=True)
_SELECTED = Style(color="black", bgcolor="bright_white", bold=True)
_MARK = Style(color="bright_white", bold=True)
_DARK_MARK = Style(color="black", bold=True)
_RULER = Style(color="#9e9e9e")
_BAR = Style(color="black", bgcolor="#4dd0e1", bold=True)

RECEIVED_IPI = "‹"
"""The marker of an IPI on its receiver's lane (the sender's shows `›`)."""
MARKERS = {EventKind.PATCH: "P", EventKind.IPI: "›", EventKind.NMI: "!", EventKind.NMI_LOST: "!",
           EventKind.ABORT: "X", EventKind.FAULT: "F", EventKind.UPLOAD: "U", EventKind.UNLOAD: "u",
           EventKind.ACTION_REQUESTED: "A", EventKind.RELEASED: "R", EventKind.MASTER_ELECTED: "M",
           EventKind.QUIESCED: "Q", EventKind.STALL: "S"}
MARKED_KINDS = frozenset({EventKind.PATCH, EventKind.IPI, EventKind.NMI, EventKind.ABORT, EventKind.FAULT,
                          EventKind.STALL, EventKind.MASTER_ELECTED, EventKind.UPLOAD, EventKind.UNLOAD,
                          EventKind.ACTION_REQUESTED})


@dataclass(frozen=True)
class Marks:
    """Which events get a marker: those of `kinds`, and the selected event (index)."""

    kinds: frozenset[EventKind]
    selected: int | None


def lane(spans: list[Span] | None, events: list[tuple[int, Event]], actions: tuple[ActionSummary, ...],
         viewport: Viewport, width: int, marks: Marks, *, vcpu: int | None = None) -> list[Segment]:
    """vCPU `vcpu`'s lane over `viewport`, a glyph and a colour per state; the host's has no states
    (`spans` None). An IPI in `events` sent by another vCPU is marked as received."""
    states = _dominant(spans or (), viewport, width)
    blank = " " if spans is None else "·"
    chars = [blank if state is None else STATE_GLYPHS[state] for state in states]
    styles = [_UNKNOWN if state is None else _STATE_STYLES[state] for state in states]
    for action in actions:
        _edge(chars, styles, viewport, width, action.requested_ns, "│", _EDGE)
        _edge(chars, styles, viewport, width, action.released_ns, "│", _EDGE)
        _edge(chars, styles, viewport, width, action.deadline_ns, "┆", _DEADLINE)
    for index, event in events:
        column = viewport.column(event.time_ns, width)
        if not 0 <= column < width:
            continue
        marker = RECEIVED_IPI if event.kind == EventKind.IPI and event.vcpu != vcpu else \
            MARKERS.get(event.kind, event.kind[0])
        if index == marks.selected and event.vcpu == vcpu:
            chars[column], styles[column] = MARKERS.get(event.kind, "◆"), _SELECTED
        elif event.kind in marks.kinds:
            chars[column] = marker
            styles[column] = styles[column] + (_DARK_MARK if states[column] in _LIGHT else _MARK)
    return _segments(chars, styles)


def _dominant(spans, viewport: Viewport, width: int) -> list[State | None]:
    """Per column, the state that took most of its time (None: no known state)."""
    shares: list[dict[State, int]] = [{} for _ in range(width)]
    for span in spans:
        start, end = max(span.start_ns, viewport.start_ns), min(span.end_ns, viewport.end_ns)
        if end <= start:
            continue
        for column in range(viewport.column(start, width), viewport.column(end - 1, width) + 1):
            taken = min(end, viewport.time_at(column + 1, width)) - max(start, viewport.time_at(column, width))
            share = shares[column]
            share[span.state] = share.get(span.state, 0) + taken
    return [max(share, key=share.__getitem__) if share else None for share in shares]


def ruler(viewport: Viewport, width: int, actions: tuple[ActionSummary, ...]) -> tuple[list[Segment], list[Segment]]:
    """Two rows: time labels, then tick marks with each action's request..release bar and deadline."""
    labels, ticks = [" "] * width, ["─"] * width
    styles = [_RULER] * width
    step = tick_step(viewport.span_ns, width, spacing=14)
    tick = -(-viewport.start_ns // step) * step
    while tick < viewport.end_ns:
        column = viewport.column(tick, width)
        text = tick_label(tick, step)
        if column + len(text) <= width:
            labels[column:column + len(text)] = text
        ticks[column] = "┴"
        tick += step
    for action in actions:
        first = max(0, viewport.column(action.requested_ns, width))
        end_ns = action.released_ns if action.released_ns is not None else viewport.end_ns
        last = min(width - 1, viewport.column(end_ns, width))
        text = action.caption[:max(0, last - first + 1)]
        for column in range(first, last + 1):
            ticks[column], styles[column] = "━", _BAR
        ticks[first:first + len(text)] = text
        _edge(ticks, styles, viewport, width, action.deadline_ns, "┆", _DEADLINE)
    return _segments(labels, [_RULER] * width), _segments(ticks, styles)


def halves(upper: list[Segment], lower: list[Segment]) -> list[Segment]:
    """Two lanes in one row (compact lanes): per cell an upper half-block in `upper`'s colour over `lower`'s
    (the colour of a cell's state, the selection's, or grey where neither is known); markers are left out."""
    def colours(segments: list[Segment]) -> list[str]:
        return [segment.style.bgcolor.name if segment.style and segment.style.bgcolor else _NO_COLOUR
                for segment in segments for _ in segment.text]
    return _segments(["▀"] * sum(len(segment.text) for segment in upper),
                     [Style(color=top, bgcolor=bottom) for top, bottom in zip(colours(upper), colours(lower),
                                                                               strict=True)])


def _edge(chars: list[str], styles: list[Style], viewport: Viewport, width: int, time_ns: int | None,
          char: str, style: Style) -> None:
    if time_ns is None:
        return
    column = viewport.column(time_ns, width)
    if 0 <= column < width:
        chars[column], styles[column] = char, styles[column] + style


def _segments(chars: list[str], styles: list[Style]) -> list[Segment]:
    """Runs of equal style joined into one Segment each."""
    segments, column = [], 0
    for style, run in groupby(styles):
        length = len(list(run))
        segments.append(Segment("".join(chars[column:column + length]), style))
        column += length
    return segments
