"""The `s` screen: every action of the trace with its rc, master, latencies and arrival order."""

from __future__ import annotations

from rich.cells import cell_len
from rich.console import Group
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from ..tracing import ActionSummary
from .figures import LABELS, arrivals, figures
from .flow import Flow

CELL_PADDING = 1
"""DataTable's blank columns on each side of a cell."""
SCROLLBAR = 2
"""Columns kept for the table's vertical scroll bar."""


class SummaryScreen(ModalScreen[None]):
    """One row per action with the figures that fit the width (latencies count from the request); under the table
    the highlighted action's other figures and its whole arrival order. Escape, q or s closes it."""

    BINDINGS = [("escape,q,s", "dismiss", "close")]
    DEFAULT_CSS = """
    SummaryScreen { align: center middle; }
    SummaryScreen > Vertical { width: 95%; height: auto; max-height: 90%; border: thick $primary; }
    SummaryScreen DataTable { height: auto; max-height: 20; }
    SummaryScreen #more { margin: 1 1 0 1; }
    """

    def __init__(self, actions: list[ActionSummary]):
        super().__init__()
        self.actions = actions
        self.rows = [{"#": str(number), **figures(action)} for number, action in enumerate(actions, 1)]
        self.shown: tuple[str, ...] = ()

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(f"{len(self.actions)} action(s); latencies from the request, in virtual time")
            yield DataTable(cursor_type="row", zebra_stripes=True)
            yield Static(id="more")

    def on_mount(self) -> None:
        self.query_one(DataTable).focus()

    def on_resize(self) -> None:
        self.call_after_refresh(self._lay_out)

    def _lay_out(self) -> None:
        """The table's columns: the figures, in order, as many as fit the width whole."""
        width = self.query_one(Vertical).content_region.width - SCROLLBAR
        shown = _fitting(("#", *LABELS), self.rows, width)
        if shown == self.shown:
            return
        self.shown = shown
        table = self.query_one(DataTable)
        cursor = table.cursor_row
        table.clear(columns=True)
        table.add_columns(*shown)
        for row in self.rows:
            table.add_row(*(row[label] for label in shown))
        table.move_cursor(row=cursor)
        self._describe(cursor)

    def on_data_table_row_highlighted(self, message: DataTable.RowHighlighted) -> None:
        self._describe(message.cursor_row)

    def _describe(self, row: int) -> None:
        """Under the table: action `row`'s figures left out of it, then its arrival order."""
        if not 0 <= row < len(self.actions):
            return
        rest = [Text.assemble((label, "magenta"), f" {value}") for label, value in self.rows[row].items()
                if label not in self.shown]
        heading = Text(f"action {row + 1}", "bold")
        self.query_one("#more", Static).update(Group(Flow([heading, *rest], gap=3),
                                                     arrivals(self.actions[row])))


def _fitting(labels: tuple[str, ...], rows: list[dict[str, str]], width: int) -> tuple[str, ...]:
    """The first of `labels` whose columns (each as wide as its label and its widest value) fit in `width`."""
    shown: list[str] = []
    used = 0
    for label in labels:
        used += max(cell_len(text) for text in (label, *(row[label] for row in rows))) + 2 * CELL_PADDING
        if used > width:
            break
        shown.append(label)
    return tuple(shown)
