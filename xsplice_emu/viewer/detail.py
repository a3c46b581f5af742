"""The detail pane: the selected event's fields; a patch write's code before and after; an action's figures."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from ..text import printable
from ..tracing import ActionSummary, EventKind
from ..tracing.trace import Event
from .figures import ARRIVALS_SHOWN, arrivals, figures
from .flow import Flow, whole
from .patch_site import PatchSite
from .symbols import Symbols
from .times import instant

ADDRESS_FIELDS = frozenset({"address", "begin", "end", "rip"})


class Detail(VerticalScroll):
    """Scrollable description of one event."""

    DEFAULT_CSS = """
    Detail { height: 12; border-top: solid $primary; }
    """

    def compose(self):
        yield Static("No event selected: n/N, p, i, m, a or a click select one.", id="detail-body")

    def show(self, index: int, line: int, event: Event, symbols: Symbols, action: ActionSummary | None, *,
             lost: bool = False) -> None:
        """Describe event `index` (file line `line`), with its action's figures if it is one of its steps
        (`lost`: an NMI its `nmi_lost` says was swallowed)."""
        left: list[RenderableType] = [_fields(event, symbols)]
        if event.kind == EventKind.PATCH:
            left.append(_patch(event, symbols))
        body: list[RenderableType] = [_title(index, line, event, lost)]
        if action is None:
            body.append(Group(*left))
        else:  # the figures beside the fields when both fit, else under them
            body += [Flow([Group(*left), _action(action)], gap=4), arrivals(action, shown=ARRIVALS_SHOWN)]
        self.query_one("#detail-body", Static).update(Group(*body))


def _title(index: int, line: int, event: Event, lost: bool) -> Flow:
    where = "host" if event.vcpu is None else f"cpu{event.vcpu}"
    meaning = EventKind.NMI_LOST.meaning if lost else event.kind.meaning
    what = Text.assemble((f"{event.kind} (lost)" if lost else event.kind, "bold"),
                         f"  {where}  {instant(event.time_ns)}")
    return Flow([what, Text(f"event {index}, line {line}: {meaning}", "dim")], gap=2)


def _fields(event: Event, symbols: Symbols) -> Table:
    table = Table.grid(padding=(0, 2))
    for name, value in event.fields.items():
        shown = symbols.describe(value) if name in ADDRESS_FIELDS and type(value) is int else _value(value)
        table.add_row(Text(name, "cyan"), Text(shown))
    return table


def _value(value) -> str:
    """A field as a reader says it: `-` for none, yes/no for a flag."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return printable(str(value))


def _patch(event: Event, symbols: Symbols) -> RenderableType:
    fields = event.fields
    site = PatchSite.of(fields["address"], bytes.fromhex(fields["old"]), bytes.fromhex(fields["new"]), symbols,
                        payload=printable(fields["payload"]))
    table = Table.grid(padding=(0, 2))
    for label, style, lines in (("before", "bold red", site.before), ("after", "bold green", site.after)):
        for number, line in enumerate(lines):
            table.add_row(Text(label if number == 0 else "", style), Text(line, no_wrap=True, overflow="ellipsis"))
    if symbols.note:
        table.add_row("", Text(symbols.note, "yellow"))
    return table


def _action(action: ActionSummary) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(no_wrap=True)
    for name, value in figures(action).items():
        table.add_row(Text(name, "magenta"), whole(value))
    return table
