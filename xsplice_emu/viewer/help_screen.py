"""The `?` screen: every key of the viewer and what it does."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from .canvas import MARKERS, RECEIVED_IPI, STATE_COLOURS, STATE_GLYPHS


class HelpScreen(ModalScreen[None]):
    """A table of (keys, action) and a legend of the lane colours and markers; any of escape, q, ? closes it."""

    BINDINGS = [("escape,q,question_mark", "dismiss", "close")]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 80; max-width: 100%; height: auto; max-height: 90%;
                                  border: thick $primary; padding: 0 1; }
    """

    def __init__(self, keys: list[tuple[str, str]]):
        super().__init__()
        self.keys = keys

    def compose(self) -> ComposeResult:
        table = Table(title="keys", show_header=False, box=None, padding=(0, 2), title_justify="left")
        for key, description in self.keys:
            table.add_row(Text(key, "bold cyan"), description)
        legend = Text("lanes:")
        for state, colour in STATE_COLOURS.items():  # each item on its own, so none wraps in the middle
            legend.append("\n  ").append(f" {STATE_GLYPHS[state]} ", style=f"on {colour}").append(f" {state.value}")
        legend.append("\nmarkers:")
        for kind, char in MARKERS.items():
            legend.append(f"\n  {char} {kind}")
        legend.append(f"\n  {RECEIVED_IPI} ipi received")
        for edge in ("│ action request and release", "┆ deadline (master's kick + timeout)", "· state unknown"):
            legend.append(f"\n{edge}")
        with VerticalScroll():
            yield Static(table)
            yield Static(legend)
