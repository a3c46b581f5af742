"""Finding the next or previous event of some kinds on some vCPUs, scanning the trace lazily."""

from __future__ import annotations

from collections.abc import Collection

from ..tracing import TraceFile


def find_event(trace: TraceFile, kinds: Collection[str], vcpus: Collection[int], start: int, *,
               backward: bool = False) -> int | None:
    """Index of the first event at or after `start` (at or before, `backward`) of one of `kinds`
    on one of `vcpus` (empty: on any vCPU or the host); None if there is none."""
    index = start
    only = next(iter(vcpus)) if len(vcpus) == 1 else None
    while True:
        found = trace.find(kinds, index, vcpu=only, backward=backward)
        if found is None or not vcpus or trace.event(found).vcpu in vcpus:
            return found
        index = found - 1 if backward else found + 1
