"""Who runs next, for how long, and what else is due: the machine's seeded scheduler.

The runnable vCPU with the least virtual time runs next (ties broken by a
generator seeded by the configuration), for a slice whose length (in
instructions) comes from the same generator. Halted and parked vCPUs are
queued at the time their next interrupt arrives (the sleepers), and host
callbacks at their virtual time (the alarms).

A vCPU is queued to run at most once: the ready queue is an array entry
per vCPU, which the C slice loop (native/slice_loop.c) reads and writes
too (a heap of the entries orders them for Python), as it takes the
generator's draws from the same buffer of its outputs (`lend_draws`). Every
entry of a vCPU in a heap carries its generation: queueing the vCPU again
makes its older entries stale.
"""

from __future__ import annotations

import array
import ctypes
import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass

from . import native
from .spec import NEVER
from .vcpu import RUNNING, Vcpu, VcpuState

WORDS_PER_REFILL = 3 * 128
"""The generator's 32-bit outputs drawn into the buffer at a time: a quiet slice takes three; drawing 384 costs
~5 us, 12,288 ~145 us (an exploration run draws afresh from its own seed)."""


@dataclass
class Alarm:
    """A host callback due at a virtual time; `cancel()` before it fires to drop it."""

    time_ps: int
    callback: Callable[[], None]
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


class Priorities:
    """PCT (Burckhardt et al., ASPLOS 2010) on a virtual-time scheduler. Each vCPU gets a distinct random
    priority: it sets the vCPU's slice length (the highest runs slices of slice_max instructions, the lowest
    about slice_min) and breaks ties in virtual time (higher first). `depth - 1` change points are drawn among
    the next `steps` instructions the vCPUs execute; the slice that reaches one is cut there (at the block
    boundary it falls in) and its vCPU demoted below every other, to one block a slice from then on: whoever is
    behind in virtual time runs next, between two of its blocks."""

    def __init__(self, seed: int, vcpus: list[Vcpu], *, depth: int, steps: int, slice_min: int, slice_max: int):
        rng = random.Random(seed)
        self.vcpus = vcpus
        self.depth = depth
        self.priority = [depth + p for p in rng.sample(range(len(vcpus)), len(vcpus))]
        start = self._executed()
        self.change_points = sorted(start + point for point in rng.sample(range(1, max(steps, depth)), depth - 1))
        self.slice_min, self.slice_max = slice_min, slice_max
        self.last: int | None = None  # the vCPU of the last slice

    def _executed(self) -> int:
        return sum(vcpu.instructions for vcpu in self.vcpus)

    def budget(self, index: int) -> int:
        """Instructions of `index`'s next slice, cut at the next change point (the vCPU whose slice reached one
        is demoted first)."""
        executed = self._executed()
        while self.change_points and executed >= self.change_points[0] and self.last is not None:
            self.change_points.pop(0)
            self.priority[self.last] = len(self.change_points)  # depth-2 ... 0: below every undemoted vCPU
        level = self.priority[index] - self.depth
        budget = 1 if level < 0 else self.slice_min + (self.slice_max - self.slice_min) * (level + 1) // len(self.vcpus)
        if self.change_points:
            budget = max(1, min(budget, self.change_points[0] - executed))
        self.last = index
        return budget

    def tie(self, index: int) -> int:
        return -self.priority[index]


class Scheduler:
    """The ready queue, the sleepers and the alarms of one machine, deterministic by seed."""

    def __init__(self, vcpus: list[Vcpu], *, seed: int, slice_min: int, slice_max: int):
        self.vcpus = vcpus
        self.rng = random.Random(seed)
        self._words = array.array("I")  # outputs of `rng` drawn, not yet taken from `_next_word` on
        self._next_word = 0
        self.draws = native.Draws()  # the buffer as the C slice loop takes from it (`lend_draws`)
        self.priorities: Priorities | None = None
        self.slice_min = slice_min
        self.slice_span = slice_max - slice_min + 1
        self._generation = [0] * len(vcpus)
        count = len(vcpus)
        self.ready_time = array.array("q", bytes(8 * count))  # the ready queue: per vCPU when it is ready...
        self.ready_tie = array.array("q", bytes(8 * count))  # ...its seeded tie-break...
        self.ready_queued = array.array("q", bytes(8 * count))  # ...and 1 when queued
        self.ready = native.ReadyQueue(count, *(column.buffer_info()[0] for column in (
            self.ready_time, self.ready_tie, self.ready_queued)))
        self.ready_pointer = ctypes.addressof(self.ready)
        self._ready: list[tuple[int, int, int, int]] = []  # (time, tie-break, vCPU, generation): the entries' order
        self._sleepers: list[tuple[int, int, int]] = []  # (wake time, vCPU, generation) of halted/parked vCPUs
        self._alarms: list[tuple[int, int, Alarm]] = []
        self._seq = 0  # a plain number, not an iterator: explore's rewind puts it back

    def next_seq(self) -> int:
        """A number that orders things posted at the same virtual time (also a call slot's tag)."""
        self._seq += 1
        return self._seq - 1

    # -- vCPUs -------------------------------------------------------------
    def queue(self, vcpu: Vcpu) -> None:
        """(Re)compute when `vcpu` next needs the host and queue it."""
        index = vcpu.index
        self._generation[index] += 1
        if vcpu.state is RUNNING:
            when = vcpu.clock_ps
        elif vcpu.state is VcpuState.WAITING_FOR_START:
            self.ready_queued[index] = 0
            return
        elif vcpu.deliverable():
            when = vcpu.clock_ps
        else:
            arrival = vcpu.next_arrival_ps()
            if arrival is None:
                self.ready_queued[index] = 0
                return
            when = arrival
            heapq.heappush(self._sleepers, (when, index, self._generation[index]))
        tie = self.priorities.tie(index) if self.priorities else self._words[self._taken(1)] >> 12
        self.ready_time[index], self.ready_tie[index], self.ready_queued[index] = when, tie, 1
        heapq.heappush(self._ready, (when, tie, index, self._generation[index]))

    def forget(self, vcpu: Vcpu) -> None:
        """Make `vcpu`'s queued entries stale (it runs now; its wake-up bounds no slice)."""
        self._generation[vcpu.index] += 1
        self.ready_queued[vcpu.index] = 0

    def peek(self) -> tuple[int, Vcpu | None]:
        """The next vCPU to run (least time, then tie-break, then number) and its time, without taking it."""
        ready, generations, queued = self._ready, self._generation, self.ready_queued
        while ready:
            time_ps, _, index, generation = ready[0]
            if generation == generations[index] and queued[index]:
                return time_ps, self.vcpus[index]
            heapq.heappop(ready)
        return NEVER, None

    def take(self) -> None:
        """Take the vCPU `peek` gave."""
        self.ready_queued[heapq.heappop(self._ready)[2]] = 0

    def next_wake(self) -> tuple[int, int]:
        """When the next halted or parked vCPU wakes, and which (NEVER, -1: none): a running vCPU's slice stops
        there, so what the sleeper does (an NMI handler, say) comes before what the runner does after it."""
        sleepers = self._sleepers
        while sleepers:
            time_ps, index, generation = sleepers[0]
            if generation == self._generation[index]:
                return time_ps, index
            heapq.heappop(sleepers)
        return NEVER, -1

    def next_wake_ps(self) -> int:
        """When the next halted or parked vCPU wakes (`next_wake`)."""
        return self.next_wake()[0]

    def requeued(self, index: int, times: int) -> None:
        """The C slice loop took vCPU `index` and queued it again `times` times (its older entries are stale)."""
        self._generation[index] += times
        if self.ready_queued[index]:
            heapq.heappush(self._ready, (self.ready_time[index], self.ready_tie[index], index, self._generation[index]))

    # -- the seeded generator ----------------------------------------------------
    def _taken(self, count: int) -> int:
        """Take the next `count` outputs: where the first is in `_words`."""
        index = self._next_word
        if index + count > len(self._words):
            self._refill(count)
            index = 0
        self._next_word = index + count
        return index

    def _refill(self, at_least: int) -> None:
        """Have at least `at_least` outputs drawn and not taken, from `_next_word` (then 0) on."""
        words = self._words
        del words[:self._next_word]
        self._next_word = 0
        count = WORDS_PER_REFILL + at_least
        words.frombytes(self.rng.getrandbits(32 * count).to_bytes(4 * count, "little"))

    def lend_draws(self, at_least: int) -> None:
        """The C slice loop takes draws from now (at least `at_least` there), from `draws`, until `took_draws`."""
        if len(self._words) - self._next_word < at_least:
            self._refill(at_least)
        draws = self.draws
        draws.words, draws.nr_words = self._words.buffer_info()
        draws.next_word = self._next_word

    def took_draws(self) -> None:
        """The C slice loop took its draws: the next is the one after them."""
        self._next_word = self.draws.next_word

    def random(self) -> float:
        """A float in [0, 1) from the generator, as `rng.random()` gives it (53 bits from two outputs)."""
        index, words = self._taken(2), self._words
        return ((words[index] >> 5) * 67108864.0 + (words[index + 1] >> 6)) * (1.0 / 9007199254740992.0)

    def slice_budget(self, vcpu: Vcpu) -> int:
        """Instructions in `vcpu`'s next slice: drawn from the seed, or set by its PCT priority."""
        if self.priorities is not None:
            return self.priorities.budget(vcpu.index)
        return self.slice_min + int(self.random() * self.slice_span)

    def draw(self, limit: int) -> int:
        """A number in [0, limit) from the seed (how long a host thread is descheduled, say)."""
        return int(self.random() * limit)

    def reschedule(self, seed: int, *, pct_depth: int = 0, pct_steps: int = 0) -> None:
        """From now on draw slices and ties from `seed` (and with `pct_depth`, by PCT priorities with that many
        change points less one among the next `pct_steps` instructions): one run of an exploration."""
        self.rng = random.Random(seed)
        del self._words[:]
        self._next_word = 0
        self.priorities = None if not pct_depth else Priorities(
            seed, self.vcpus, depth=pct_depth, steps=pct_steps, slice_min=self.slice_min,
            slice_max=self.slice_min + self.slice_span - 1)

    # -- alarms --------------------------------------------------------------
    def add_alarm(self, time_ps: int, callback: Callable[[], None]) -> Alarm:
        """Call `callback` when virtual time reaches `time_ps`."""
        alarm = Alarm(time_ps, callback)
        heapq.heappush(self._alarms, (time_ps, self.next_seq(), alarm))
        return alarm

    def next_alarm_ps(self) -> int:
        return self._alarms[0][0] if self._alarms else NEVER

    def take_alarm(self) -> Alarm:
        """The earliest alarm, removed from the queue."""
        return heapq.heappop(self._alarms)[2]
