"""`explore --plot`: the outcomes (against the injected fault's size, when faults were drawn), and the CDF of
release latency."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..files import file_errors
from .campaign import CampaignResult

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

BINS_PER_DECADE = 4
DEADLINE_MS = 30


def plot(result: CampaignResult, path: str | Path) -> None:
    """Write `figure(result)` as a PNG at `path`."""
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("--plot needs matplotlib (pip install 'xsplice-emu[explore]')") from None
    matplotlib.use("Agg")
    from matplotlib import pyplot

    shown = figure(result)
    with file_errors(path, "write the plot"):
        shown.savefig(path, dpi=100)
    pyplot.close(shown)


def figure(result: CampaignResult) -> Figure:
    """Two panels: the runs of each outcome class (stacked by bin of the run's largest injected fault, log
    bins with their ranges, Xen's 30 ms deadline marked, when the campaign drew faults; else one bar per
    class), each bar with its count; and the CDF of request-to-release latency of every action."""
    from matplotlib import pyplot

    shown, (mix, cdf) = pyplot.subplots(1, 2, figsize=(14, 5.5))
    if any(o.fault_size_us for o in result.outcomes):
        _by_fault_size(mix, result)
    else:
        _by_class(mix, result)
    latencies = sorted(ns / 1e3 for o in result.outcomes for ns in o.latencies_ns)
    if latencies:
        cdf.plot(latencies, [(i + 1) / len(latencies) for i in range(len(latencies))])
        cdf.set_xscale("log")
    cdf.set_xlabel("request -> release (us, virtual)")
    cdf.set_ylabel("fraction of actions")
    cdf.set_title(f"CDF of release latency ({len(latencies):,} actions)")
    shown.tight_layout()
    return shown


def _by_fault_size(mix: Axes, result: CampaignResult) -> None:
    outcomes = result.outcomes
    bins = sorted({_bin(o.fault_size_us) for o in outcomes})
    bottoms = [0] * len(bins)
    for outcome_class in result.classes:
        counts = [sum(o.label == outcome_class.label and _bin(o.fault_size_us) == b for o in outcomes) for b in bins]
        mix.bar(range(len(bins)), counts, bottom=bottoms, label=f"{outcome_class.label} ({outcome_class.count:,})")
        bottoms = [b + c for b, c in zip(bottoms, counts, strict=True)]
    for x, total in enumerate(bottoms):
        mix.annotate(f"{total:,}", (x, total), ha="center", va="bottom", fontsize=7)
    mix.set_xticks(range(len(bins)), [_bin_name(b) for b in bins], rotation=45, ha="right", fontsize=8)
    deadline = [i for i, b in enumerate(bins) if b and b >= DEADLINE_MS * 1000]
    if deadline:
        mix.axvline(deadline[0] - 0.5, color="black", linestyle="--", linewidth=1)
        mix.annotate(f"{DEADLINE_MS} ms deadline", (deadline[0] - 0.45, max(bottoms)), fontsize=8)
    mix.set_xlabel("largest injected fault (log bins)")
    mix.set_ylabel("runs")
    mix.set_title(f"outcomes by fault size ({len(outcomes):,} runs, {result.campaign.strategy})")
    mix.legend(fontsize=7, loc="upper left")


def _by_class(mix: Axes, result: CampaignResult) -> None:
    classes = result.classes
    rows = range(len(classes))
    mix.barh(rows, [c.count for c in classes], color=[f"C{i}" for i in rows])
    for row, outcome_class in enumerate(classes):
        mix.annotate(f" {outcome_class.count:,} ({outcome_class.count / len(result.outcomes):.1%})",
                     (outcome_class.count, row), va="center", fontsize=8)
    mix.set_yticks(rows, [_short(c.label) for c in classes], fontsize=8)
    mix.invert_yaxis()  # the most frequent on top, as the table lists them
    mix.set_xlabel("runs")
    mix.set_title(f"outcomes ({len(result.outcomes):,} runs, {result.campaign.strategy}: no faults drawn)")


def _short(label: str, width: int = 48) -> str:
    return label if len(label) <= width else label[:width - 3] + "..."


def _bin(size_us: float) -> float:
    """The lower edge of the log bin holding `size_us` (0: no fault)."""
    if size_us <= 0:
        return 0.0
    return 10 ** (math.floor(math.log10(size_us) * BINS_PER_DECADE) / BINS_PER_DECADE)


def _bin_name(bin_start: float) -> str:
    """`no fault`, `1-1.8 us`, `5.6-10 ms`: the bin's range in the unit that suits it."""
    if not bin_start:
        return "no fault"
    end = bin_start * 10 ** (1 / BINS_PER_DECADE)
    unit, scale = ("ms", 1000) if bin_start >= 1000 else ("us", 1)
    return f"{_figure(bin_start / scale)}-{_figure(end / scale)} {unit}"


def _figure(value: float) -> str:
    """Two significant digits, without an exponent: 1.8, 56, 178."""
    return f"{value:.2g}" if value < 100 else f"{value:.0f}"
