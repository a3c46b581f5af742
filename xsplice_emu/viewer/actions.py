"""Live patching actions of a trace, found by kind and summarised from their own events only."""

from __future__ import annotations

from collections.abc import Iterator

from ..tracing import ActionSummary, TraceFile, summarize

STEPS = frozenset({"action_requested", "master_elected", "nmi_masked", "nmi_unmasked", "arrived",
                   "phase_complete", "quiesced", "patch", "flush", "abort", "released"})


def actions(trace: TraceFile) -> Iterator[ActionSummary]:
    """Every action in request order."""
    request = trace.find({"action_requested"})
    while request is not None:
        summary, stop = _summary(trace, request)
        yield summary
        request = trace.find({"action_requested"}, stop)


def action_of(trace: TraceFile, index: int) -> ActionSummary | None:
    """The action that event `index` is a step of, or None."""
    request = trace.find({"action_requested"}, index, backward=True)
    if request is None:
        return None
    summary, stop = _summary(trace, request)
    return summary if index < stop else None


def _summary(trace: TraceFile, request: int) -> tuple[ActionSummary, int]:
    """The action requested by event `request`, and the index just past its release."""
    released = trace.find({"released"}, request + 1)
    stop = len(trace) if released is None else released + 1
    return summarize(trace.events(request, stop))[0], stop
