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

    def show(self, frame: Frame, *, filter_text: str, selected: str, bookmarks: int, message: str,
             lanes_hidden: int = 0, paired: bool = False) -> None:
        """Each line fits the width (80 to 200 columns): facts that matter least go first, then it is cut.
        `lanes_hidden` (lanes scrolled out of view) and `paired` (two vCPUs a row) are said first."""
        viewport = frame.viewport
        facts = [*_lanes(lanes_hidden, paired), ("view", f"{instant(viewport.start_ns)} .. {instant(viewport.end_ns)}"),
                 ("span", duration(viewport.span_ns)), ("filter", filter_text), ("selected", selected),
                 ("bookmarks", str(bookmarks))]
        width = max(20, self.content_region.width or 118)
        for dropped in LEAST_USEFUL:
            if len(_line(facts)) <= width:
                break
            facts = [fact for fact in facts if fact[0] != dropped]
        line = _line(facts)
        line.truncate(width, overflow="ellipsis")
        if frame.crowded:
            message = message or (f"{frame.crowded:,} events in view (over {BUDGET:,}): overview, their density "
                                  "per lane; zoom in (+) to see the lanes")
        shown = Text(message, "yellow")
        shown.truncate(width, overflow="ellipsis")
        self.update(Text.assemble(line, "\n", shown))


def _lanes(hidden: int, paired: bool) -> list[tuple[str, str]]:
    """The `lanes` fact: how they are drawn and how many are off screen, with the key that changes it."""
    off_screen = f"{hidden} off screen" if hidden else ""
    if paired:
        return [("lanes", ", ".join(filter(None, ["two vCPUs a row", off_screen])) + " (c: one a row)")]
    return [("lanes", f"{off_screen} (scroll, or c: two a row)")] if hidden else []


LEAST_USEFUL = ("bookmarks", "filter", "view")
"""Facts left out of a narrow status line, in this order (a filter in use is in the lane list anyway)."""


def _line(facts: list[tuple[str, str]]) -> Text:
    text = Text()
    for number, (label, value) in enumerate(facts):
        text.append(f"{'  ' if number else ''}{label} ", "dim").append(value, "bold" if label == "span" else "")
    return text
