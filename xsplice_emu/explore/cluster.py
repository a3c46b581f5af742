"""`explore --dask ADDRESS`: batches of runs on a Dask distributed cluster.

Each task is a batch of run numbers. A worker process boots the scenario's
machine once (`campaign.booted`, kept for the next batches) and forks one
child per run, as `--jobs` does on one host; the outcomes come back to the
client and merge by run number into the same table. Workers need
xsplice-emu (with gcc, binutils and make: the firmware and payloads build
into their cache) and the scenario's files at the same absolute paths.
"""

from __future__ import annotations

import time

from ..errors import ConfigError
from .campaign import Campaign, CampaignResult, fork_runs, stops
from .outcome import RunOutcome

BATCH = 50
CONNECT_TIMEOUT = "5s"


def explore_on_dask(campaign: Campaign, runs: int, address: str, *, stop_on: str | None = None,
                    batch: int = BATCH) -> CampaignResult:
    """Run `runs` runs on the Dask scheduler at `address`, `batch` to a task."""
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise ConfigError("--dask needs distributed (pip install 'xsplice-emu[explore]')") from None
    started = time.perf_counter()
    try:
        client = Client(address, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ConfigError(f"--dask {address}: cannot reach a Dask scheduler there ({exc})") from None
    outcomes: list[RunOutcome] = []
    try:
        futures = [client.submit(run_batch, campaign, list(range(first, min(first + batch, runs))), stop_on,
                                 pure=False) for first in range(0, runs, batch)]
        for future in as_completed(futures):
            found = future.result()
            outcomes += found
            if any(stops(outcome, stop_on) for outcome in found):
                client.cancel(futures)
                break
        workers = len(client.scheduler_info()["workers"])
    finally:
        client.close()
    return CampaignResult.of(campaign, outcomes, time.perf_counter() - started, workers)


def run_batch(campaign: Campaign, numbers: list[int], stop_on: str | None) -> list[RunOutcome]:
    """On a worker: runs `numbers`, each forked from this worker's booted machine."""
    return list(fork_runs(campaign, numbers, jobs=1, stop_on=stop_on))
