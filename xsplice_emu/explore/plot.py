"""`explore --plot`: the outcome mix against the injected fault's size, and the CDF of release latency."""

from __future__ import annotations

import math
from pathlib import Path

from ..errors import ConfigError
from ..files import file_errors
from .campaign import CampaignResult

BINS_PER_DECADE = 4
DEADLINE_MS = 30


def plot(result: CampaignResult, path: str | Path) -> None:
    """Two panels in one PNG: the share of each outcome class per bin of the run's largest fault (log scale;
    runs with no fault at the left), with Xen's 30 ms deadline marked; and the CDF of request-to-release latency
    of every action over all runs."""
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("--plot needs matplotlib (pip install 'xsplice-emu[explore]')") from None
    matplotlib.use("Agg")
    from matplotlib import pyplot

    outcomes = result.outcomes
    labels = [c.label for c in result.classes]
    figure, (mix, cdf) = pyplot.subplots(1, 2, figsize=(13, 5))
    bins = sorted({_bin(o.fault_size_us) for o in outcomes})
    bottoms = [0.0] * len(bins)
    for label in labels:
        shares = []
        for bin_start in bins:
            in_bin = [o for o in outcomes if _bin(o.fault_size_us) == bin_start]
            shares.append(sum(o.label == label for o in in_bin) / len(in_bin))
        mix.bar(range(len(bins)), shares, bottom=bottoms, label=label)
        bottoms = [b + s for b, s in zip(bottoms, shares, strict=True)]
    mix.set_xticks(range(len(bins)), [_bin_name(b) for b in bins], rotation=45, ha="right", fontsize=8)
    deadline = [i for i, b in enumerate(bins) if b and b >= DEADLINE_MS * 1000]
    if deadline:
        mix.axvline(deadline[0] - 0.5, color="black", linestyle="--", linewidth=1)
        mix.text(deadline[0] - 0.45, 1.02, f"{DEADLINE_MS} ms deadline", fontsize=8)
    mix.set_xlabel("largest injected fault (us, log bins)")
    mix.set_ylabel("share of runs")
    mix.set_title(f"outcomes by fault size ({len(outcomes)} runs, {result.campaign.strategy})")
    mix.legend(fontsize=7, loc="lower left")
    latencies = sorted(ns / 1e3 for o in outcomes for ns in o.latencies_ns)
    if latencies:
        cdf.plot(latencies, [(i + 1) / len(latencies) for i in range(len(latencies))])
        cdf.set_xscale("log")
    cdf.set_xlabel("request -> release (us, virtual)")
    cdf.set_ylabel("fraction of actions")
    cdf.set_title("CDF of release latency")
    figure.tight_layout()
    with file_errors(path, "write the plot"):
        figure.savefig(path, dpi=100)
    pyplot.close(figure)


def _bin(size_us: float) -> float:
    """The lower edge of the log bin holding `size_us` (0: no fault)."""
    if size_us <= 0:
        return 0.0
    return 10 ** (math.floor(math.log10(size_us) * BINS_PER_DECADE) / BINS_PER_DECADE)


def _bin_name(bin_start: float) -> str:
    return "none" if not bin_start else f">={bin_start:.3g}"
