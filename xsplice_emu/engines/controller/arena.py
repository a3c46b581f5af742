"""Guest memory for payloads: free page ranges, taken at upload and given back at unload.

First fit in address order, neighbours merged when given back: deterministic,
and upload/unload cycles end where they began.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import TypeVar

from ...errors import LivepatchError

T = TypeVar("T")


class Arena:
    """The free ranges `[start, end)` of `[begin, end)`, in address order."""

    def __init__(self, begin: int, end: int):
        self.size = end - begin
        self._free: list[tuple[int, int]] = [(begin, end)] if begin < end else []

    @property
    def free(self) -> tuple[tuple[int, int], ...]:
        """The free ranges, in address order."""
        return tuple(self._free)

    @property
    def free_bytes(self) -> int:
        return sum(end - start for start, end in self._free)

    def place(self, load: Callable[[int, int], T]) -> T:
        """`load(base, limit)` at the first free range where it does not fail with ENOMEM (nothing is taken)."""
        error = LivepatchError(errno.ENOMEM, "no free payload memory left")
        for start, end in self._free:
            try:
                return load(start, end)
            except LivepatchError as exc:
                if exc.errno != errno.ENOMEM:
                    raise
                error = exc
        raise error

    def allocate(self, size: int, *, align: int) -> int:
        """Take `size` bytes (rounded up to `align`) at the first free range that holds them; ENOMEM if none."""
        size = -(-size // align) * align
        for start, end in self._free:
            if end - start >= size:
                self.take(start, start + size)
                return start
        raise LivepatchError(errno.ENOMEM, f"no free payload memory left for {size} bytes")

    def take(self, start: int, end: int) -> None:
        """Mark `[start, end)` used; it must lie inside one free range."""
        for index, (free_start, free_end) in enumerate(self._free):
            if free_start <= start and end <= free_end:
                self._free[index:index + 1] = [r for r in ((free_start, start), (end, free_end)) if r[0] < r[1]]
                return
        raise ValueError(f"[{start:#x}, {end:#x}) is not free")

    def give(self, start: int, end: int) -> None:
        """Mark `[start, end)` free again, merged with the free ranges it touches."""
        ranges = sorted([*self._free, (start, end)])
        merged = [ranges[0]]
        for range_start, range_end in ranges[1:]:
            if range_start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], range_end))
            else:
                merged.append((range_start, range_end))
        self._free = merged
