"""What each vCPU was doing, as spans of virtual time, rebuilt from events.

Per vCPU the events drive a stack of states (docs/trace-format.md, "What a
vCPU is doing"): the task at the bottom, then halted, handlers, the
rendezvous, the patch window, parked. Two views of it:

- `state_spans(events)`: every state as a span with its `depth` in the
  stack; spans of one vCPU nest (a child lies within its parent). The
  Perfetto export draws these.
- `lane_spans(events)`: per vCPU, the innermost state at each moment, as
  spans that follow each other without overlap. A timeline lane draws these.

Feed events from the start of the trace for exact states, or resume from
the states open at some event (`StateTracker.open_states`, kept every few
thousand events by `checkpoints.StateCheckpoints`): a state entered before
the first event fed is otherwise not known.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from ..arch import DEFAULT_ARCH, Architecture
from ..platform import CALL_FUNCTION_VECTOR, EVENT_CHECK_VECTOR, LOCAL_TIMER_VECTOR
from .kinds import EventKind
from .trace import Event

VECTOR_NAMES = {LOCAL_TIMER_VECTOR: "timer", CALL_FUNCTION_VECTOR: "call-function",
                EVENT_CHECK_VECTOR: "event-check"}


class State(Enum):
    """What a vCPU does; `Span.label` says more (the task, the vector...)."""

    TASK = "task"
    HALTED = "halted"
    IRQ = "irq"
    NMI = "nmi"
    EXCEPTION = "exception"
    RENDEZVOUS = "rendezvous"
    WINDOW = "patch window"
    PARKED = "parked"


HANDLERS = frozenset({State.IRQ, State.NMI, State.EXCEPTION})


@dataclass(frozen=True)
class Span:
    """vCPU `vcpu` was in `state` (shown as `label`) over [start_ns, end_ns), `depth`
    states deep in its stack (0 in `lane_spans`)."""

    vcpu: int
    state: State
    label: str
    start_ns: int
    end_ns: int
    depth: int


@dataclass(frozen=True)
class _Open:
    state: State
    label: str
    start_ns: int


OpenStates = dict[int, tuple[_Open, ...]]


class StateTracker:
    """Per-vCPU state stacks fed one event at a time (`feed`, then `finish`);
    closed spans collect in `nested` and, with `lanes`, in `lanes` (see the
    module docstring); `arch` names the exceptions."""

    def __init__(self, *, arch: Architecture, lanes: bool = True, resume: OpenStates | None = None):
        self.arch = arch
        self.stacks: dict[int, list[_Open]] = {vcpu: list(stack) for vcpu, stack in (resume or {}).items()}
        self.nested: list[Span] = []
        self.lanes: list[Span] = []
        self._lane_start: dict[int, int] | None = {} if lanes else None
        self.last_ns = 0

    def feed(self, event: Event) -> None:
        self.last_ns = event.time_ns
        if event.vcpu is None:
            return
        handler = _RULES.get(event.kind)
        if handler is not None:
            handler(self, event.vcpu, event.time_ns, event.fields)

    def open_states(self) -> OpenStates:
        """Every vCPU's stack of states open now: a new tracker `resume`s from it."""
        return {vcpu: tuple(stack) for vcpu, stack in self.stacks.items() if stack}

    def finish(self, end_ns: int) -> None:
        """Close every state still open at `end_ns`."""
        for vcpu in list(self.stacks):
            self._pop_to(vcpu, 0, end_ns)

    # -- stack operations ----------------------------------------------------
    def _push(self, vcpu: int, time_ns: int, state: State, label: str) -> None:
        stack = self.stacks.setdefault(vcpu, [])
        if stack:
            self._close_lane(vcpu, stack[-1], time_ns)
        stack.append(_Open(state, label, time_ns))

    def _pop_to(self, vcpu: int, depth: int, time_ns: int) -> None:
        """Close every state of `vcpu` at `depth` and above."""
        stack = self.stacks.get(vcpu, [])
        if len(stack) <= depth:
            return
        self._close_lane(vcpu, stack[-1], time_ns)
        while len(stack) > depth:
            top = stack.pop()
            self.nested.append(Span(vcpu, top.state, top.label, top.start_ns, max(time_ns, top.start_ns), len(stack)))

    def _pop_state(self, vcpu: int, states: frozenset[State] | tuple[State, ...], time_ns: int) -> None:
        """Close the innermost state in `states` (and what lies above it), if open."""
        stack = self.stacks.get(vcpu, [])
        for depth in range(len(stack) - 1, -1, -1):
            if stack[depth].state in states:
                self._pop_to(vcpu, depth, time_ns)
                return

    def _close_lane(self, vcpu: int, top: _Open, time_ns: int) -> None:
        """The innermost state `top` ends its lane span at `time_ns`; the next one starts there."""
        starts = self._lane_start
        if starts is None:
            return
        start = max(starts.get(vcpu, top.start_ns), top.start_ns)
        if time_ns > start:
            self.lanes.append(Span(vcpu, top.state, top.label, start, time_ns, 0))
        starts[vcpu] = time_ns

    # -- the rules, by event kind ------------------------------------------
    def _cpu_start(self, vcpu, t, fields):
        self._pop_to(vcpu, 0, t)
        self._push(vcpu, t, State.TASK, "boot")

    def _task(self, vcpu, t, fields):
        stack = self.stacks.get(vcpu, [])
        if len(stack) == 1 and stack[0].label == fields["task"]:
            return
        self._pop_to(vcpu, 0, t)
        self._push(vcpu, t, State.TASK, fields["task"])

    def _halt(self, vcpu, t, fields):
        self._push(vcpu, t, State.HALTED, "halted" if fields["interrupts_enabled"] else "halted (IF=0)")

    def _wake(self, vcpu, t, fields):
        self._pop_state(vcpu, (State.HALTED,), t)

    def _interrupt(self, vcpu, t, fields):
        vector = fields["vector"]
        self._push(vcpu, t, State.IRQ, VECTOR_NAMES.get(vector, f"irq {vector:#x}"))

    def _nmi(self, vcpu, t, fields):
        self._push(vcpu, t, State.NMI, "NMI")

    def _nmi_lost(self, vcpu, t, fields):
        stack = self.stacks.get(vcpu)
        if stack and stack[-1].state is State.NMI:
            stack[-1] = _Open(State.NMI, "NMI (lost)", stack[-1].start_ns)

    def _exception(self, vcpu, t, fields):
        self._push(vcpu, t, State.EXCEPTION, self.arch.exception_names.get(fields["vector"],
                                                                       f"exception {fields['vector']}"))

    def _iret(self, vcpu, t, fields):
        self._pop_state(vcpu, HANDLERS, t)

    def _master_elected(self, vcpu, t, fields):
        self._push(vcpu, t, State.RENDEZVOUS, "rendezvous (master)")

    def _arrived(self, vcpu, t, fields):
        if fields["phase"] == "CPU":
            self._push(vcpu, t, State.RENDEZVOUS, "rendezvous")

    def _quiesced(self, vcpu, t, fields):
        self._push(vcpu, t, State.WINDOW, "patch window")

    def _irq_unmasked(self, vcpu, t, fields):
        self._pop_state(vcpu, (State.WINDOW,), t)

    def _park(self, vcpu, t, fields):
        self._push(vcpu, t, State.PARKED, "parked")

    def _unpark(self, vcpu, t, fields):
        self._pop_state(vcpu, (State.PARKED,), t)

    def _left(self, vcpu, t, fields):
        self._pop_state(vcpu, (State.RENDEZVOUS,), t)


_RULES = {kind: getattr(StateTracker, f"_{kind}") for kind in (
    EventKind.CPU_START, EventKind.TASK, EventKind.HALT, EventKind.WAKE, EventKind.INTERRUPT, EventKind.NMI,
    EventKind.NMI_LOST, EventKind.EXCEPTION, EventKind.IRET, EventKind.MASTER_ELECTED, EventKind.ARRIVED,
    EventKind.QUIESCED, EventKind.IRQ_UNMASKED, EventKind.PARK, EventKind.UNPARK, EventKind.LEFT)}


def _track(events: Iterable[Event], end_ns: int | None, arch: Architecture,
           resume: OpenStates | None = None) -> StateTracker:
    tracker = StateTracker(arch=arch, resume=resume)
    for event in events:
        tracker.feed(event)
    tracker.finish(tracker.last_ns if end_ns is None else end_ns)
    return tracker


def state_spans(events: Iterable[Event], *, end_ns: int | None = None,
                arch: Architecture = DEFAULT_ARCH) -> list[Span]:
    """Every state of every vCPU, nested by `depth`, sorted by (vcpu, start, depth).
    States still open at the end close at `end_ns` (default: the last event's time). `arch`: the trace's."""
    return sorted(_track(events, end_ns, arch).nested, key=lambda s: (s.vcpu, s.start_ns, s.depth))


def lane_spans(events: Iterable[Event], *, end_ns: int | None = None, resume: OpenStates | None = None,
               arch: Architecture = DEFAULT_ARCH) -> dict[int, list[Span]]:
    """Per vCPU, the innermost state at each moment: spans in time order, not overlapping.
    `resume`: the states open before the first event (`StateTracker.open_states`); `arch`: the trace's."""
    lanes: dict[int, list[Span]] = {}
    for span in _track(events, end_ns, arch, resume).lanes:
        lanes.setdefault(span.vcpu, []).append(span)
    return lanes
