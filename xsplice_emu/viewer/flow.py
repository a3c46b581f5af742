"""`Flow`: items side by side while they fit the width, the next under them; an item is never split.

What the detail pane and the summary screen lay out for 80 to 200 columns:
a pane of fields beside a pane of figures (one under the other when narrow),
a list of vCPU names that wraps between names, a value that must not break
(`cpu56 +782 ns`).
"""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text


class Flow:
    """`items` left to right, `gap` columns apart, each at its natural width (wrapped only when it is wider than
    the whole width); an item that does not fit where the last one ended starts a band under the others."""

    def __init__(self, items: Iterable[RenderableType], *, gap: int = 1):
        self.items = [Text(item) if isinstance(item, str) else item for item in items]
        self.gap = gap

    def _widths(self, console: Console, options: ConsoleOptions) -> list[int]:
        return [Measurement.get(console, options, item).maximum for item in self.items]

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        """At least its widest item (it never splits one), at most all of them on one band."""
        widths = self._widths(console, options)
        return Measurement(max(widths, default=0), sum(widths) + self.gap * max(0, len(widths) - 1))

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        bands: list[list[tuple[RenderableType, int]]] = []
        used = options.max_width
        for item, width in zip(self.items, self._widths(console, options), strict=True):
            if used + self.gap + width > options.max_width:
                bands.append([])
                used = -self.gap
            bands[-1].append((item, width))
            used += self.gap + width
        for band in bands:
            grid = Table.grid(padding=(0, self.gap), collapse_padding=True, pad_edge=False)
            for _, width in band:
                grid.add_column(width=width)
            grid.add_row(*(item for item, _ in band))
            yield grid


def whole(text: Text | str) -> Flow:
    """`text` as one item: in a table cell it keeps its column at least as wide as itself."""
    return Flow([text])
