"""The `/` prompt: a line of search text for event kinds and vCPUs."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static


class SearchScreen(ModalScreen[str | None]):
    """Asks for `cpu3`, `2-5`, `patch`, `nmi ipi cpu7`...; gives the text (empty: clear), or None on escape."""

    BINDINGS = [("escape", "dismiss(None)", "cancel")]
    DEFAULT_CSS = """
    SearchScreen { align: center bottom; }
    SearchScreen > Vertical { width: 100%; height: auto; border-top: solid $primary; background: $panel; }
    """

    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("filter by vCPUs and event kinds (e.g. cpu3, 2-5, patch ipi nmi abort); empty clears")
            yield Input(value=self.text, placeholder="cpu3 patch", id="search")

    def on_input_submitted(self, message: Input.Submitted) -> None:
        self.dismiss(message.value.strip())
