"""The states open on every vCPU every `every` events of a trace, from one scan.

A long trace is read lazily, so a lane fed only the events near the view
does not know a state entered long before it. One pass over the whole file
(`build`, slow enough for a background thread: about 4 s for a million
events) keeps each vCPU's open states every `every` events; lanes resumed
from the nearest checkpoint are then exact anywhere.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import TraceFormatError
from .reader import TraceFile
from .spans import OpenStates, StateTracker


class StateCheckpoints:
    """Open states before event 0, `every`, 2 * `every`, ... as far as `build` got."""

    def __init__(self, trace: TraceFile, *, every: int):
        self.trace = trace
        self.every = every
        self._states: dict[int, OpenStates] = {0: {}}

    def at(self, index: int) -> OpenStates | None:
        """The states open just before event `index`, if a checkpoint lies there."""
        return self._states.get(index)

    @property
    def complete(self) -> bool:
        """Whether every checkpoint of the trace is built."""
        return max(self._states) >= len(self.trace)

    @property
    def progress(self) -> float:
        """How much of the trace `build` has scanned, 0 to 1."""
        return min(1.0, max(self._states) / max(1, len(self.trace)))

    def build(self, *, cancelled: Callable[[], bool] = lambda: False) -> None:
        """Scan the trace once and keep the checkpoints (safe in a thread: readers see whole entries only).
        A bad line ends the scan there: what lies beyond stays without checkpoints."""
        tracker, total = StateTracker(arch=self.trace.arch, lanes=False), len(self.trace)
        for start in range(0, total, self.every):
            if cancelled():
                return
            try:
                for event in self.trace.events(start, min(start + self.every, total)):
                    tracker.feed(event)
            except TraceFormatError:
                return
            tracker.nested.clear()
            self._states[start + self.every] = tracker.open_states()
