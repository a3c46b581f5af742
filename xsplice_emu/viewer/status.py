"""The status line under the lanes: what is in view, the filter, the selection, bookmarks, the last message."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from .frame import BUDGET, Frame
from .times import duration, instant


class StatusBar(Static):
    """One line of facts about the view, and a second for the last message (a warning in yellow)."""

    DEFAULT_CSS = """
    StatusBar { height: 2; background: $panel; padding: 0 1; }
    """

    def show(self, frame: Frame, *, filter_text: str, selected: str, bookmarks: int, message: str) -> None:
        viewport = frame.viewport
        line = Text.assemble(
            ("view ", "dim"), f"{instant(viewport.start_ns)} .. {instant(viewport.end_ns)}",
            ("  span ", "dim"), (duration(viewport.span_ns), "bold"),
            ("  filter ", "dim"), filter_text,
            ("  selected ", "dim"), selected,
            ("  bookmarks ", "dim"), str(bookmarks))
        if frame.crowded:
            message = message or f"{frame.crowded:,} events in view (over {BUDGET:,}): zoom in (+) to see the lanes"
        self.update(Text.assemble(line, "\n", (message, "yellow")))
