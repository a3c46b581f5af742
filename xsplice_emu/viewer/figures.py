"""An action's figures as the viewer shows them, in the detail pane and on the summary screen."""

from __future__ import annotations

from ..tracing import ActionSummary
from .times import duration

ARRIVALS_SHOWN = 16
LABELS = ("action", "rc", "master", "-> all parked", "-> release", "slowest", "NMIs lost", "bytes", "violations",
          "aborted", "arrival order")


def figures(action: ActionSummary) -> dict[str, str]:
    """LABELS -> text; latencies count from the request, the slowest vCPU is the last to answer the kick."""
    slowest = action.slowest
    order = [f"cpu{a.vcpu}" for a in action.arrivals]
    more = len(order) - ARRIVALS_SHOWN
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
        " ".join(order[:ARRIVALS_SHOWN]) + (f" (+{more} more)" if more > 0 else ""),
    ), strict=True))
