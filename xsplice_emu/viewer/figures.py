"""An action's figures as the viewer shows them, in the detail pane and on the summary screen."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from ..tracing import ActionSummary
from .flow import Flow
from .times import duration

ARRIVALS_SHOWN = 16
"""vCPU names the detail pane gives of an arrival order (the summary screen gives them all)."""
LABELS = ("action", "rc", "master", "-> all parked", "-> release", "slowest", "NMIs lost", "bytes", "violations",
          "aborted")


def figures(action: ActionSummary) -> dict[str, str]:
    """LABELS -> text; latencies count from the request, the slowest vCPU is the last to answer the kick."""
    slowest = action.slowest
    return dict(zip(LABELS, (
        action.caption,
        "-" if action.rc is None else str(action.rc),
        "-" if action.master is None else f"cpu{action.master}",
        duration(action.parked_latency_ns),
        duration(action.release_latency_ns),
        "-" if slowest is None else f"cpu{slowest.vcpu} +{duration(slowest.time_ns - action.requested_ns)}",
        str(action.nmis_lost),
        str(action.bytes_patched),
        ", ".join(f"{check} {count}" for check, count in action.violations) or "0",
        action.abort_reason or "-",
    ), strict=True))


def arrivals(action: ActionSummary, *, shown: int | None = None) -> Table:
    """`arrival order` and the vCPUs that answered the kick, first to last (the first `shown` of them and
    `(+N more)`), wrapped between names."""
    order = [f"cpu{arrival.vcpu}" for arrival in action.arrivals] or ["-"]
    if shown is not None and len(order) > shown:
        order = [*order[:shown], f"(+{len(order) - shown} more)"]
    table = Table.grid(padding=(0, 2))
    table.add_column(no_wrap=True)
    table.add_row(Text("arrival order", "magenta"), Flow(order))
    return table
