"""Live patching actions of a trace, found by kind and summarised from their own events only."""

from __future__ import annotations

from collections.abc import Iterator

from ..tracing import ActionSummary, EventKind, TraceFile, summarize

STEPS = frozenset({EventKind.ACTION_REQUESTED, EventKind.MASTER_ELECTED, EventKind.NMI_MASKED,
                   EventKind.NMI_UNMASKED, EventKind.ARRIVED, EventKind.PHASE_COMPLETE, EventKind.QUIESCED,
                   EventKind.PATCH, EventKind.FLUSH, EventKind.ABORT, EventKind.RELEASED})


def actions(trace: TraceFile) -> Iterator[ActionSummary]:
    """Every action in request order."""
    request = trace.find({EventKind.ACTION_REQUESTED})
    while request is not None:
        summary, stop = _summary(trace, request)
        yield summary
        request = trace.find({EventKind.ACTION_REQUESTED}, stop)


def action_of(trace: TraceFile, index: int) -> ActionSummary | None:
    """The action that event `index` is a step of, or None."""
    request = trace.find({EventKind.ACTION_REQUESTED}, index, backward=True)
    if request is None:
        return None
    summary, stop = _summary(trace, request)
    return summary if index < stop else None


def _summary(trace: TraceFile, request: int) -> tuple[ActionSummary, int]:
    """The action requested by event `request`, and the index just past its release."""
    released = trace.find({EventKind.RELEASED}, request + 1)
    stop = len(trace) if released is None else released + 1
    return summarize(trace.events(request, stop))[0], stop
