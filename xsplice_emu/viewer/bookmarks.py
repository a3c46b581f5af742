"""Bookmarked events: set or cleared one at a time, visited in trace order."""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass


@dataclass(frozen=True)
class Bookmarks:
    """Indices of bookmarked events, sorted."""

    indices: tuple[int, ...] = ()

    def toggle(self, index: int) -> Bookmarks:
        """Bookmark event `index`, or clear it if it was."""
        if index in self.indices:
            return Bookmarks(tuple(i for i in self.indices if i != index))
        return Bookmarks(tuple(sorted((*self.indices, index))))

    def after(self, index: int | None) -> int | None:
        """The next bookmark after `index` (None: from the start), wrapping round; None if there are none."""
        if not self.indices:
            return None
        at = 0 if index is None else bisect_right(self.indices, index)
        return self.indices[at % len(self.indices)]

    def __len__(self) -> int:
        return len(self.indices)
