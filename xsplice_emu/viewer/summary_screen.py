"""The `s` screen: every action of the trace with its rc, master, latencies and arrival order."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from ..tracing import ActionSummary
from .figures import LABELS, figures


class SummaryScreen(ModalScreen[None]):
    """One row per action (latencies count from the request); escape, q or s closes it."""

    BINDINGS = [("escape,q,s", "dismiss", "close")]
    DEFAULT_CSS = """
    SummaryScreen { align: center middle; }
    SummaryScreen > Vertical { width: 95%; height: auto; max-height: 90%; border: thick $primary; }
    SummaryScreen DataTable { height: auto; max-height: 30; }
    """

    def __init__(self, actions: list[ActionSummary]):
        super().__init__()
        self.actions = actions

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(f"{len(self.actions)} action(s); latencies from the request, in virtual time")
            yield DataTable(cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("#", *LABELS)
        for number, action in enumerate(self.actions, 1):
            table.add_row(str(number), *figures(action).values())
        table.focus()
