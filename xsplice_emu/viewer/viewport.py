"""The visible stretch of virtual time and its mapping onto screen columns."""

from __future__ import annotations

from dataclasses import dataclass

MIN_SPAN_NS = 16


@dataclass(frozen=True)
class Viewport:
    """Virtual time from `start_ns` (included) to `end_ns` (excluded), inside the trace's bounds."""

    start_ns: int
    end_ns: int
    first_ns: int
    last_ns: int

    @classmethod
    def fit(cls, first_ns: int, last_ns: int) -> Viewport:
        """The whole trace."""
        return cls(first_ns, max(last_ns + 1, first_ns + MIN_SPAN_NS), first_ns, last_ns)

    @property
    def span_ns(self) -> int:
        return self.end_ns - self.start_ns

    def showing(self, start_ns: int, span_ns: int) -> Viewport:
        """`span_ns` of time from `start_ns`, moved back inside the trace when it overflows."""
        span = max(MIN_SPAN_NS, min(span_ns, self.last_ns + 1 - self.first_ns))
        start = max(self.first_ns, min(start_ns, self.last_ns + 1 - span))
        return Viewport(start, start + span, self.first_ns, self.last_ns)

    def zoom(self, factor: float, *, around_ns: int | None = None) -> Viewport:
        """Span times `factor` (below 1 zooms in), keeping `around_ns` (default: the centre) in place."""
        centre = self.start_ns + self.span_ns // 2 if around_ns is None else around_ns
        span = max(MIN_SPAN_NS, round(self.span_ns * factor))
        left = (centre - self.start_ns) / self.span_ns
        return self.showing(centre - round(span * left), span)

    def pan(self, fraction: float) -> Viewport:
        """Move by `fraction` of the span (negative: back in time)."""
        return self.showing(self.start_ns + round(self.span_ns * fraction), self.span_ns)

    def framing(self, start_ns: int, end_ns: int) -> Viewport:
        """`start_ns`..`end_ns` with a quarter of its length of margin on each side."""
        margin = max(MIN_SPAN_NS, (end_ns - start_ns) // 4)
        return self.showing(start_ns - margin, end_ns - start_ns + 2 * margin)

    def centred_on(self, time_ns: int) -> Viewport:
        """The same span with `time_ns` in the middle, unless it is already in view."""
        if self.start_ns <= time_ns < self.end_ns:
            return self
        return self.showing(time_ns - self.span_ns // 2, self.span_ns)

    def column(self, time_ns: int, width: int) -> int:
        """The column (0..width-1 when visible) that shows `time_ns`."""
        return (time_ns - self.start_ns) * width // self.span_ns

    def time_at(self, column: int, width: int) -> int:
        """The first nanosecond shown in `column`."""
        return self.start_ns + -(-column * self.span_ns // width)
