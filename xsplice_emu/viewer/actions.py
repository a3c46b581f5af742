"""Live patching actions of a trace, found by kind and summarised from their own events only (those that
carry the action's number, `in_action`)."""

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
        yield _summary(trace, request)[0]
        request = trace.find({EventKind.ACTION_REQUESTED}, request + 1)


def action_of(trace: TraceFile, index: int) -> ActionSummary | None:
    """The action that event `index` is a step of, or None."""
    number = trace.event(index).in_action
    request = _find(trace, EventKind.ACTION_REQUESTED, number, index, backward=True)
    return None if request is None else _summary(trace, request)[0]


def _summary(trace: TraceFile, request: int) -> tuple[ActionSummary, int]:
    """The action requested by event `request`, and the index just past its release."""
    released = _find(trace, EventKind.RELEASED, trace.event(request).in_action, request + 1)
    stop = len(trace) if released is None else released + 1
    return summarize(trace.events(request, stop))[0], stop


def _find(trace: TraceFile, kind: EventKind, number: int | None, start: int, *, backward: bool = False) -> int | None:
    """The nearest event of `kind` from `start` on (or back) that is a step of action `number`, or None."""
    if number is None:
        return None
    step = -1 if backward else 1
    found = trace.find({kind}, start, backward=backward)
    while found is not None and trace.event(found).in_action != number:
        found = trace.find({kind}, found + step, backward=backward) if found + step >= 0 else None
    return found
