"""The time ruler above the lanes: tick labels, then each action's request..release bar and deadline."""

from __future__ import annotations

from rich.segment import Segment
from textual.strip import Strip
from textual.widget import Widget

from . import canvas
from .frame import Frame
from .timeline import LABEL_WIDTH


class Ruler(Widget):
    """Two rows aligned with the Timeline's columns of time."""

    DEFAULT_CSS = """
    Ruler { height: 2; }
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.frame: Frame | None = None
        self.columns = 1

    def show(self, frame: Frame, columns: int) -> None:
        """Draw `frame`'s time axis over `columns` columns (the lanes' width)."""
        self.frame, self.columns = frame, columns
        self.refresh()

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if self.frame is None or y > 1:
            return Strip.blank(width)
        rows = canvas.ruler(self.frame.viewport, self.columns, self.frame.actions)
        return Strip([Segment(("time" if y == 0 else "").ljust(LABEL_WIDTH)), *rows[y]]).adjust_cell_length(width)
