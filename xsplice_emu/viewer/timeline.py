"""The lanes: one row per vCPU (and one for the host) on the shared time axis, drawn line by line."""

from __future__ import annotations

from rich.segment import Segment
from rich.style import Style
from textual.events import Click, Resize
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from ..tracing import EventKind
from ..tracing.trace import Event
from . import canvas
from .frame import Frame

LABEL_WIDTH = 7
_LABEL = Style(color="#bdbdbd")
_LABEL_SELECTED = Style(color="black", bgcolor="bright_white", bold=True)
_CROWDED = Style(color="#424242")
_NO_LANE = object()


def row_label(vcpu: int | None) -> str:
    return ("host" if vcpu is None else f"cpu{vcpu}").ljust(LABEL_WIDTH)


class Timeline(ScrollView, can_focus=True):
    """Lanes of `rows` (vCPU numbers, None for the host) over a frame; scrolls vertically only."""

    DEFAULT_CSS = """
    Timeline { height: 1fr; overflow-x: hidden; overflow-y: auto; scrollbar-gutter: stable; }
    """

    class Picked(Message):
        """The user clicked lane `vcpu` at `time_ns`."""

        def __init__(self, vcpu: int | None, time_ns: int):
            super().__init__()
            self.vcpu, self.time_ns = vcpu, time_ns

    class Resized(Message):
        """The lanes' width changed: the time axis needs drawing again."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.frame: Frame | None = None
        self.rows: tuple[int | None, ...] = ()
        self.compact: bool | None = None
        """Two vCPU lanes a row (half-blocks, colours only), so that 72 vCPUs fit on 40 rows; None: automatic, two
        a row when one a row would leave lanes off screen."""
        self.paired = False
        """Whether the lanes are drawn two a row now."""
        self.lines: tuple[tuple[int | None, ...], ...] = ()  # the lanes of each screen row
        self.marks = canvas.Marks(frozenset(), None)
        self._by_lane: dict[int | None, list[tuple[int, Event]]] = {}
        self._selected_lane: object = _NO_LANE
        self._drawn: dict[tuple[int, int], Strip] = {}
        self._overview: tuple[int, dict[int | None, str]] = (0, {})  # (columns, each lane) of a crowded frame

    @property
    def canvas_width(self) -> int:
        """Columns of time (the width without the lane labels)."""
        return max(1, self.scrollable_content_region.width - LABEL_WIDTH)

    def show(self, frame: Frame, rows: tuple[int | None, ...], marks: canvas.Marks) -> None:
        """Draw `frame`'s lanes for `rows`, marking events as `marks` says."""
        self.frame, self.rows, self.marks = frame, rows, marks
        self._by_lane = {}
        self._drawn = {}
        self._selected_lane = _NO_LANE
        self._overview = (0, {})
        for index, event in frame.indexed():
            self._by_lane.setdefault(event.vcpu, []).append((index, event))
            if event.kind == EventKind.IPI:
                self._by_lane.setdefault(event.fields["to"], []).append((index, event))
            if index == marks.selected:
                self._selected_lane = event.vcpu
        self.paired = self.compact if self.compact is not None else len(rows) > self.scrollable_content_region.height
        self.lines = _paired(rows) if self.paired else tuple((row,) for row in rows)
        self.virtual_size = Size(self.scrollable_content_region.width, len(self.lines))
        self.refresh()

    @property
    def lanes_hidden(self) -> int:
        """How many lanes are scrolled out of view."""
        top, height = round(self.scroll_offset.y), self.scrollable_content_region.height
        return sum(len(line) for number, line in enumerate(self.lines) if not top <= number < top + height)

    def _line_of(self, vcpu: int | None) -> int | None:
        return next((number for number, line in enumerate(self.lines) if vcpu in line), None)

    def scroll_to_lane(self, vcpu: int | None) -> None:
        """Scroll vertically so that the lane of `vcpu` is in view."""
        row = self._line_of(vcpu)
        if row is None:
            return
        top = round(self.scroll_offset.y)
        if not top <= row < top + self.scrollable_content_region.height:
            self.scroll_to(y=max(0, row - self.scrollable_content_region.height // 2), animate=False, immediate=True)

    def render_line(self, y: int) -> Strip:
        row = y + round(self.scroll_offset.y)
        width = self.scrollable_content_region.width
        if self.frame is None or row >= len(self.lines):
            return Strip.blank(width)
        if (row, width) not in self._drawn:
            line = self.lines[row]
            self._drawn[row, width] = self._draw(self.frame, line[0], width) if len(line) == 1 else \
                self._draw_pair(self.frame, line, width)
        return self._drawn[row, width]

    def _draw_pair(self, frame: Frame, pair: tuple[int | None, ...], width: int) -> Strip:
        """Two vCPU lanes in one row (compact)."""
        upper, lower = (self._draw(frame, vcpu, width) for vcpu in pair)
        selected = self._selected_lane in pair
        label = Segment(f"{pair[0]}+{pair[1]}".ljust(LABEL_WIDTH), _LABEL_SELECTED if selected else _LABEL)
        if frame.crowded:
            return Strip([label, *list(upper)[1:]], width)
        return Strip([label, *canvas.halves(list(upper)[1:], list(lower)[1:])], width)

    def _draw(self, frame: Frame, vcpu: int | None, width: int) -> Strip:
        label = Segment(row_label(vcpu), _LABEL_SELECTED if vcpu == self._selected_lane else _LABEL)
        columns = max(1, width - LABEL_WIDTH)
        if frame.crowded:
            if self._overview[0] != columns:
                self._overview = (columns, overview(frame.density, columns))
            return Strip([label, Segment(self._overview[1].get(vcpu, " " * columns), _CROWDED)], width)
        spans = None if vcpu is None else frame.lanes.get(vcpu, [])
        cells = canvas.lane(spans, self._by_lane.get(vcpu, []), frame.actions, frame.viewport, columns, self.marks,
                            vcpu=vcpu)
        return Strip([label, *cells], width)

    def on_resize(self, event: Resize) -> None:
        self.post_message(self.Resized())

    def on_click(self, event: Click) -> None:
        row = event.y + round(self.scroll_offset.y)
        column = event.x - LABEL_WIDTH
        if self.frame is not None and row < len(self.lines) and column >= 0:  # a compact row: its upper lane
            self.post_message(self.Picked(self.lines[row][0], self.frame.viewport.time_at(column, self.canvas_width)))


def _paired(rows: tuple[int | None, ...]) -> tuple[tuple[int | None, ...], ...]:
    """The host alone, then the vCPU lanes two by two (the last alone when their number is odd)."""
    host = tuple((row,) for row in rows if row is None)
    vcpus = [row for row in rows if row is not None]
    return host + tuple(tuple(vcpus[start:start + 2]) for start in range(0, len(vcpus), 2))


SHADES = " ░▒▓█"
"""An overview cell, from no sampled event to the busiest cell of the frame."""



def overview(density: dict[int | None, list[int]], columns: int) -> dict[int | None, str]:
    """Each lane of a crowded frame: a column shaded by how many sampled events fell there."""
    counts = {vcpu: [sum(bins[column * len(bins) // columns:max(column * len(bins) // columns + 1,
                                                                  (column + 1) * len(bins) // columns)])
                     for column in range(columns)] for vcpu, bins in density.items()}
    busiest = max((max(cells) for cells in counts.values()), default=0)
    return {vcpu: "".join(SHADES[0 if not count else 1 + min(3, count * 4 // (busiest + 1))] for count in cells)
            for vcpu, cells in counts.items()}
