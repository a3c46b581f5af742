"""The trace viewer: lanes of vCPUs on a virtual-time axis, a detail pane, and the keys that drive them.

The app holds the view's state (viewport, filter, selection, bookmarks) and
redraws from a Frame on every change. Events are read lazily through
`tracing.TraceFile`; a bad line met on the way ends the app, which returns
the TraceFormatError for the caller to report.
"""

from __future__ import annotations

from functools import cached_property, wraps

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.timer import Timer
from textual.widgets import Footer
from textual.worker import get_current_worker

from ..errors import TraceFormatError
from ..tracing import EventKind, TraceFile
from . import canvas
from .actions import STEPS, action_of, actions
from .bookmarks import Bookmarks
from .detail import Detail
from .frame import Frame, FrameSource
from .help_screen import HelpScreen
from .query import Query, QueryError
from .ruler import Ruler
from .search_screen import SearchScreen
from .status import StatusBar
from .summary_screen import SummaryScreen
from .symbols import Symbols
from .timeline import Timeline
from .times import instant
from .viewport import Viewport

JUMPS = {"patch": frozenset({EventKind.PATCH}), "IPI": frozenset({EventKind.IPI}),
         "NMI": frozenset({EventKind.NMI}), "abort": frozenset({EventKind.ABORT}),
         "violation": frozenset({EventKind.VIOLATION})}
PAN = 0.25
CHECKPOINT_DELAY_S = 0.5
SCAN_REDRAW_S = 0.5


def _reading(action):
    """Run `action`; a bad trace line met on the way ends the app with that error."""
    @wraps(action)
    def guarded(self: TraceViewer, *args, **kwargs):
        try:
            return action(self, *args, **kwargs)
        except TraceFormatError as exc:
            self.exit(exc, return_code=2)
    return guarded


def _nmi_lost(trace: TraceFile, index: int) -> bool:
    """Whether event `index` is an NMI that was swallowed: its `nmi_lost` follows at the same time."""
    event = trace.event(index)
    if event.kind != EventKind.NMI:
        return False
    following = index + 1
    while following < len(trace) and trace.time_of(following) == event.time_ns:
        after = trace.event(following)
        if after.vcpu == event.vcpu:
            return after.kind == EventKind.NMI_LOST
        following += 1
    return False


class TraceViewer(App[TraceFormatError | None]):
    """Browse one trace file."""

    TITLE = "xsplice-emu view"
    CSS = "Screen { layout: vertical; }"
    BINDINGS = [
        Binding("plus,equals_sign", "zoom(0.5)", "zoom in", key_display="+/="),
        Binding("minus", "zoom(2)", "zoom out", key_display="-", show=False),
        Binding("left,h", "pan(-1)", "pan back", key_display="←/h", show=False),
        Binding("right,l", "pan(1)", "pan on", key_display="→/l", show=False),
        Binding("f", "fit", "fit"),
        Binding("p", "jump('patch')", "next patch"),
        Binding("i", "jump('IPI')", "next IPI", show=False),
        Binding("m", "jump('NMI')", "next NMI", show=False),
        Binding("a", "jump('abort')", "next abort", show=False),
        Binding("P", "jump('patch', True)", "previous patch", show=False),
        Binding("I", "jump('IPI', True)", "previous IPI", show=False),
        Binding("M", "jump('NMI', True)", "previous NMI", show=False),
        Binding("A", "jump('abort', True)", "previous abort", show=False),
        Binding("v", "jump('violation')", "next violation", show=False),
        Binding("V", "jump('violation', True)", "previous violation", show=False),
        Binding("n", "step(False)", "next match", show=False),
        Binding("N", "step(True)", "previous match", show=False),
        Binding("slash", "search", "search", key_display="/"),
        Binding("escape", "clear", "clear filter", show=False),
        Binding("b", "bookmark", "bookmark", show=False),
        Binding("apostrophe,B", "bookmarks", "next bookmark", key_display="'/B", show=False),
        Binding("enter", "centre", "centre on selection", show=False),
        Binding("d", "toggle_detail", "detail pane", show=False),
        Binding("c", "toggle_compact", "compact lanes", show=False),
        Binding("s", "summary", "summary"),
        Binding("question_mark", "help", "keys", key_display="?"),
        Binding("q", "quit", "quit"),
    ]

    def __init__(self, trace: TraceFile, *, step: tuple[int, int] | None = None, message: str = ""):
        """`step`: open on the scenario step that ran over that (start, end) of virtual time (ns), saying
        `message`; else on the first action."""
        super().__init__()
        self.trace = trace
        self.source = FrameSource(trace)
        self.viewport = self.source.first_viewport() if step is None else self.source.step_viewport(*step)
        self.query_filter = Query()
        self.selected: int | None = None
        self.bookmarks = Bookmarks()
        self.message = message
        self.frame: Frame | None = None
        self._checkpoints_scheduled = False
        self._scan_timer: Timer | None = None

    @cached_property
    def symbols(self) -> Symbols:
        """Names from the trace's image, loaded when a detail first needs them."""
        return Symbols.for_header(self.trace.header, arch=self.trace.arch)

    def compose(self) -> ComposeResult:
        yield Ruler()
        yield Timeline()
        yield Detail()
        yield StatusBar()
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        self.query_one(Detail).display = False  # until an event is selected: its rows go to the lanes
        self.query_one(Timeline).focus()

    def _start_checkpoints(self) -> None:
        """A moment after the first screen: exact lanes for a long trace, from a background scan
        (it shares the interpreter, so it waits until the first screen is up)."""
        if not self.source.exact:
            self.run_worker(self._build_checkpoints, thread=True, exclusive=True, group="checkpoints")
            self._scan_timer = self.set_interval(SCAN_REDRAW_S, self.redraw)

    def _build_checkpoints(self) -> None:
        """In a thread: scan the trace once for state checkpoints, then redraw with exact lanes."""
        worker = get_current_worker()
        self.source.checkpoints.build(cancelled=lambda: worker.is_cancelled)
        if not worker.is_cancelled:
            self.call_from_thread(self._lanes_exact)

    def _lanes_exact(self) -> None:
        if self._scan_timer is not None:
            self._scan_timer.stop()
        self.source.forget()
        self.redraw()

    def on_timeline_resized(self) -> None:
        self.redraw()

    # -- drawing -------------------------------------------------------------
    @_reading
    def redraw(self) -> None:
        """Draw the lanes, ruler and status for the current state."""
        timeline = self.query_one(Timeline)
        self.frame = frame = self.source.frame(self.viewport)
        vcpus = sorted(self.query_filter.vcpus) or range(self.trace.vcpus)
        marks = canvas.Marks(self.query_filter.kinds or canvas.MARKED_KINDS, self.selected)
        timeline.show(frame, (None, *vcpus), marks)
        self.query_one(Ruler).show(frame, timeline.canvas_width)
        scanning = "" if self.source.exact or self._scan_timer is None else \
            f"scanning the trace for exact lanes: {self.source.checkpoints.progress:.0%} (lanes may start blank)"
        self.query_one(StatusBar).show(frame, filter_text=str(self.query_filter), selected=self._selected_text(),
                                       bookmarks=len(self.bookmarks), message=self.message or scanning,
                                       lanes_hidden=timeline.lanes_hidden, paired=timeline.paired)
        if not self._checkpoints_scheduled:
            self._checkpoints_scheduled = True
            self.set_timer(CHECKPOINT_DELAY_S, self._start_checkpoints)

    def _selected_text(self) -> str:
        if self.selected is None:
            return "none"
        event = self.trace.event(self.selected)
        where = "host" if event.vcpu is None else f"cpu{event.vcpu}"
        lost = " (lost)" if _nmi_lost(self.trace, self.selected) else ""
        return f"{event.kind}{lost} on {where} at {instant(event.time_ns)}"

    def _update(self, *, viewport: Viewport | None = None, message: str = "") -> None:
        if viewport is not None:
            self.viewport = viewport
        self.message = message
        self.redraw()

    @_reading
    def select(self, index: int, *, message: str = "") -> None:
        """Select event `index`: bring it into view at a readable zoom (its action framed) and describe it."""
        self.selected = index
        event = self.trace.event(index)
        action = action_of(self.trace, index) if event.kind in STEPS else None
        detail = self.query_one(Detail)
        detail.show(index, self.trace.line_of(index), event, self.symbols, action, lost=_nmi_lost(self.trace, index))
        detail.display = True
        self._update(viewport=self.source.readable(self.viewport, index), message=message)
        self.call_after_refresh(self._show_lane, event.vcpu)

    def _show_lane(self, vcpu: int | None) -> None:
        """Scroll `vcpu`'s lane into view once the layout (the detail pane open or not) is settled."""
        self.query_one(Timeline).scroll_to_lane(vcpu)
        self.redraw()

    # -- actions -----------------------------------------------------------------
    def action_zoom(self, factor: float) -> None:
        around = None if self.selected is None else self.trace.time_of(self.selected)
        if around is not None and not self.viewport.start_ns <= around < self.viewport.end_ns:
            around = None
        self._update(viewport=self.viewport.zoom(factor, around_ns=around))

    def action_pan(self, direction: int) -> None:
        self._update(viewport=self.viewport.pan(direction * PAN))

    def action_fit(self) -> None:
        self._update(viewport=Viewport.fit(self.trace.start_ns, self.trace.end_ns))

    @_reading
    def action_jump(self, name: str, backward: bool = False) -> None:
        self._find(JUMPS[name], backward, what=f"{name} event")

    @_reading
    def action_step(self, backward: bool) -> None:
        what = "event" if self.query_filter.empty else f"event matching {self.query_filter}"
        self._find(self.query_filter.kinds, backward, what=what)

    def _find(self, kinds, backward: bool, *, what: str) -> None:
        """From the selection when it is on screen, else from the edge of what is on screen."""
        on_screen = self.selected is not None and \
            self.viewport.start_ns <= self.trace.time_of(self.selected) < self.viewport.end_ns
        if self.selected is not None and on_screen:
            start = self.selected + (-1 if backward else 1)
        else:
            start = self.trace.index_at(self.viewport.end_ns if backward else self.viewport.start_ns) - backward
        found = self.trace.find(kinds, start, vcpus=self.query_filter.vcpus, backward=backward)
        if found is None:
            self._update(message=f"no {what} {'before' if backward else 'after'} this point")
        else:
            self.select(found)

    def action_search(self) -> None:
        self.push_screen(SearchScreen("" if self.query_filter.empty else str(self.query_filter)), self._searched)

    def _searched(self, text: str | None) -> None:
        if text is None:
            return
        try:
            self.query_filter = Query.parse(text, vcpus=self.trace.vcpus)
        except QueryError as exc:
            self._update(message=str(exc))
            return
        self.query_one(Timeline).scroll_to(y=0, animate=False, immediate=True)
        if self.query_filter.empty:
            self._update(message="filter cleared")
        else:
            self.action_step(False)

    def action_clear(self) -> None:
        self.query_filter = Query()
        self._update(message="filter cleared")

    def action_bookmark(self) -> None:
        if self.selected is None:
            self._update(message="select an event first (p, i, m, a, n or a click), then b bookmarks it")
            return
        marked = self.selected not in self.bookmarks.indices
        self.bookmarks = self.bookmarks.toggle(self.selected)
        self._update(message=f"bookmark {'set' if marked else 'cleared'} ({len(self.bookmarks)} in all)")

    def action_bookmarks(self) -> None:
        found = self.bookmarks.after(self.selected)
        if found is None:
            self._update(message="no bookmarks: b bookmarks the selected event")
        else:
            self.select(found, message=f"bookmark {self.bookmarks.indices.index(found) + 1} of {len(self.bookmarks)}")

    def action_centre(self) -> None:
        """Enter: the selection in the middle, at a readable zoom."""
        if self.selected is not None:
            readable = self.source.readable(self.viewport, self.selected)
            self._update(viewport=readable.showing(self.trace.time_of(self.selected) - readable.span_ns // 2,
                                                   readable.span_ns))

    def action_toggle_detail(self) -> None:
        detail = self.query_one(Detail)
        detail.display = not detail.display
        self.call_after_refresh(self.redraw)

    def action_toggle_compact(self) -> None:
        """Two vCPU lanes a row, or one (from then on, whatever fits); the selection's lane stays in view."""
        timeline = self.query_one(Timeline)
        timeline.compact = not timeline.paired
        self._update()
        if self.selected is not None:
            self.call_after_refresh(self._show_lane, self.trace.event(self.selected).vcpu)

    @_reading
    def action_summary(self) -> None:
        self.push_screen(SummaryScreen(list(actions(self.trace))))

    def action_help(self) -> None:
        keys = [(b.key_display or b.key, b.description) for b in self.BINDINGS if isinstance(b, Binding)]
        self.push_screen(HelpScreen(keys))

    @_reading
    def on_timeline_picked(self, message: Timeline.Picked) -> None:
        """A click on a lane selects the event drawn there (within two columns): a marked one first, the
        nearest column next, the last drawn (on top) last."""
        timeline = self.query_one(Timeline)
        if self.frame is None:
            return
        width = timeline.canvas_width
        clicked = self.viewport.column(message.time_ns, width)
        near = [(event.kind not in timeline.marks.kinds, abs(self.viewport.column(event.time_ns, width) - clicked),
                 -index) for index, event in self.frame.indexed() if event.vcpu == message.vcpu]
        best = min(near, default=None)
        if best is not None and best[1] <= 2:
            self.select(-best[2])
