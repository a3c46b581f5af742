"""What the lanes show for one viewport: its events, each vCPU's states and the actions in view.

Only events near the viewport are parsed. States come from
`tracing.spans.lane_spans`, resumed from the state checkpoint just before
the viewport once `checkpoints` has one there (the viewer builds them in
the background); until then from up to LOOKBACK events before the viewport
(from the very first event in a trace of at most WHOLE events, so those are
exact), and a state entered before that is unknown and drawn blank. Parsed
ranges are rounded out to CHUNK events and the last two are kept, so
panning and zooming nearby parse nothing new.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from ..tracing import ActionSummary, EventKind, Span, StateCheckpoints, TraceFile, lane_spans, summarize
from ..tracing.trace import Event
from .actions import STEPS, action_of
from .viewport import MIN_SPAN_NS, Viewport

WHOLE = 100_000
LOOKBACK = 20_000
CHUNK = 20_000
BUDGET = 60_000

OVERVIEW_SAMPLE = 8_000
"""Events parsed for the overview of a crowded frame."""
OVERVIEW_BINS = 1_000


@dataclass(frozen=True)
class Frame:
    """The viewport's events (event i of the trace is events[i - first]), lanes and actions.

    `crowded` says the viewport holds more than BUDGET events: then only a
    sample of OVERVIEW_SAMPLE of them was parsed, and `density` holds, per lane,
    how many sampled events fell in each of OVERVIEW_BINS equal stretches of time."""

    viewport: Viewport
    first: int
    events: tuple[Event, ...] = ()
    lanes: dict[int, list[Span]] = field(default_factory=dict)
    actions: tuple[ActionSummary, ...] = ()
    crowded: int = 0
    density: dict[int | None, list[int]] = field(default_factory=dict)

    def indexed(self):
        """(trace index, event) of every event in view."""
        return enumerate(self.events, self.first)


class FrameSource:
    """Builds frames of one trace, reusing what nearby frames parsed."""

    def __init__(self, trace: TraceFile):
        self.trace = trace
        self.checkpoints = StateCheckpoints(trace, every=CHUNK)
        self._density_of: tuple[Viewport | None, dict[int | None, list[int]]] = (None, {})
        self._range = lru_cache(maxsize=2)(self._parse_range)

    @property
    def exact(self) -> bool:
        """Whether every frame's lanes are exact (a short trace, or all checkpoints built)."""
        return len(self.trace) <= WHOLE or self.checkpoints.complete

    def forget(self) -> None:
        """Drop the parsed ranges (after new checkpoints: the next frames resume from them)."""
        self._range.cache_clear()

    def first_viewport(self) -> Viewport:
        """The first action framed when the trace has one; else the whole trace, or its first BUDGET / 2
        events when the whole holds more than WHOLE."""
        trace = self.trace
        whole = Viewport.fit(trace.start_ns, trace.end_ns)
        first = trace.find({EventKind.ACTION_REQUESTED})
        if first is not None:
            return self.readable(whole, first)
        if len(trace) <= WHOLE:
            return whole
        return whole.showing(trace.start_ns, trace.time_of(min(BUDGET // 2, len(trace) - 1)) - trace.start_ns)

    def step_viewport(self, start_ns: int, end_ns: int) -> Viewport:
        """A view of a scenario step that ran from `start_ns` to `end_ns`: framed when it ran the machine, else
        the last action requested before it (what an expectation checks), else centred on its time."""
        trace = self.trace
        whole = Viewport.fit(trace.start_ns, trace.end_ns)
        if end_ns > start_ns:
            return self.showing(whole.framing(start_ns, end_ns), start_ns)
        request = trace.find({EventKind.ACTION_REQUESTED}, trace.index_at(start_ns + 1) - 1, backward=True)
        if request is not None:
            return self.readable(whole, request)
        return self.showing(whole, start_ns)

    def readable(self, viewport: Viewport, index: int) -> Viewport:
        """A view of event `index` at a readable zoom: its whole action framed when it is a step of one
        (kept as it is when that is already on screen and at least a tenth of the view), else centred."""
        time_ns = self.trace.time_of(index)
        action = action_of(self.trace, index) if self.trace.event(index).kind in STEPS else None
        if action is None:
            return self.showing(viewport, time_ns)
        end = action.released_ns if action.released_ns is not None else action.aborted_ns or time_ns
        start, end = action.requested_ns, max(end, time_ns)
        if viewport.start_ns <= start and end < viewport.end_ns and (end - start) * 10 >= viewport.span_ns:
            return viewport
        return self.showing(viewport.framing(start, end), time_ns)

    def showing(self, viewport: Viewport, time_ns: int) -> Viewport:
        """`viewport` moved to show `time_ns`, and zoomed in around it until it holds at most BUDGET events."""
        viewport = viewport.centred_on(time_ns)
        while (viewport.span_ns > MIN_SPAN_NS
               and self.trace.index_at(viewport.end_ns) - self.trace.index_at(viewport.start_ns) > BUDGET):
            viewport = viewport.zoom(0.5, around_ns=time_ns)
        return viewport

    def _density(self, viewport: Viewport, first: int, stop: int) -> dict[int | None, list[int]]:
        """Per lane, sampled events per bin of the viewport (an overview of a crowded frame; the last one kept)."""
        if self._density_of[0] == viewport:
            return self._density_of[1]
        density: dict[int | None, list[int]] = {}
        step = max(1, (stop - first) // OVERVIEW_SAMPLE)
        for index in range(first, stop, step):
            event = self.trace.event(index)
            column = min(OVERVIEW_BINS - 1, viewport.column(event.time_ns, OVERVIEW_BINS))
            density.setdefault(event.vcpu, [0] * OVERVIEW_BINS)[column] += 1
        self._density_of = (viewport, density)
        return density

    def frame(self, viewport: Viewport) -> Frame:
        """What `viewport` shows (a crowded frame when it holds more than BUDGET events)."""
        trace = self.trace
        first, stop = trace.index_at(viewport.start_ns), trace.index_at(viewport.end_ns)
        if stop - first > BUDGET:
            return Frame(viewport, first, crowded=stop - first, density=self._density(viewport, first, stop))
        start, end = self._rounded(first, stop)
        events, lanes, actions = self._range(start, end)
        clipped = {vcpu: [s for s in spans if s.end_ns > viewport.start_ns and s.start_ns < viewport.end_ns]
                   for vcpu, spans in lanes.items()}
        visible = tuple(a for a in actions if a.requested_ns < viewport.end_ns
                        and (trace.end_ns if a.released_ns is None else a.released_ns) >= viewport.start_ns)
        return Frame(viewport, first, events[first - start:stop - start], clipped, visible)

    def _rounded(self, first: int, stop: int) -> tuple[int, int]:
        total = len(self.trace)
        if total <= WHOLE:
            return 0, total
        end = min(total, -(-stop // CHUNK) * CHUNK)
        checkpoint = first // CHUNK * CHUNK
        if self.checkpoints.at(checkpoint) is not None:
            return checkpoint, end
        return max(0, (first - LOOKBACK) // CHUNK * CHUNK), end

    def _parse_range(self, start: int, end: int):
        events = self.trace.events(start, end)
        end_ns = self.trace.time_of(end) if end < len(self.trace) else self.trace.end_ns
        lanes = lane_spans(events, end_ns=end_ns, resume=self.checkpoints.at(start), arch=self.trace.arch)
        return tuple(events), lanes, tuple(summarize(events))
