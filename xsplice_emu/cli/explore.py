"""`xsplice-emu explore`: a scenario under many seeded schedules and fault draws, its outcomes grouped."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import click
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from ..errors import ConfigError
from ..explore.campaign import STOP_ON, Campaign, CampaignResult, explore, write_class_files
from ..explore.outcome import RunOutcome
from ..explore.plan import STRATEGIES
from ..files import check_destination, check_new_directory, file_errors
from ..provision.cache import cache_dir
from ..scenario import load_scenario
from .common import SEED, Range, out, reports_errors

MAX_RUNS = 10_000_000
MAX_JOBS = 64
LAST_CAMPAIGN = "explore-last"
"""The folder of the cache that holds the replay files of the last campaign run without --out."""


@click.command("explore")
@click.argument("scenario_path", metavar="SCENARIO", type=click.Path(dir_okay=False))
@click.option("--runs", type=int, required=True, help=f"How many runs (1..{MAX_RUNS:,}).")
@click.option("--strategy", type=click.Choice(STRATEGIES), default="random", show_default=True,
              help="random: the schedule drawn per run; pct: PCT priorities; chaos: random plus faults.")
@click.option("--seed", type=SEED, default=0, show_default=True,
              help="The campaign's seed (each run's derives from it).")
@click.option("--jobs", type=Range(1, MAX_JOBS), default=1, show_default=True,
              help="Runs at once, each a process forked from one booted machine.")
@click.option("--dask", "dask_address", metavar="ADDRESS",
              help="Send batches of runs to this Dask scheduler (tcp://HOST:PORT) instead.")
@click.option("--stop-on", type=click.Choice(STOP_ON), help="Start no new run after one with a violation / a failure.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="Write each class's replay file and trace here (default: replay files only, in "
                   f"~/.cache/xsplice-emu/{LAST_CAMPAIGN}, replaced by the next campaign).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the table.")
@click.option("-q", "--quiet", is_flag=True, help="No progress: only the table (or the JSON).")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False),
              help="Write a PNG: outcome mix against the injected fault's size, and the CDF of release latency.")
@reports_errors
def explore_command(scenario_path, runs, strategy, seed, jobs, dask_address, stop_on, out_dir, as_json, quiet,
                    plot_path):
    """Run SCENARIO under --runs seeded schedules (and fault draws), group the outcomes, and give one command
    per class that replays its first run exactly."""
    if not 1 <= runs <= MAX_RUNS:
        raise ConfigError(f"--runs must be 1..{MAX_RUNS:,}, not {runs}")
    if dask_address and jobs != 1:
        raise click.UsageError("give --jobs or --dask, not both")
    if plot_path:
        check_destination(plot_path)
    if out_dir:
        out_path = check_new_directory(out_dir)
        with file_errors(out_path, "make the directory"):
            out_path.mkdir(exist_ok=True)
    else:  # one folder, replaced by each campaign: nothing piles up in /tmp
        out_path = cache_dir() / LAST_CAMPAIGN
        with file_errors(out_path, "make the directory"):
            shutil.rmtree(out_path, ignore_errors=True)
            out_path.mkdir(parents=True)
    campaign = Campaign.of(load_scenario(scenario_path), strategy, seed)
    result = _run(campaign, runs, jobs=jobs, dask_address=dask_address, stop_on=stop_on, quiet=quiet)
    files = write_class_files(result, out_path, traces=out_dir is not None)
    if plot_path:
        from ..explore.plot import plot  # matplotlib only when asked for
        plot(result, plot_path)
    if as_json:
        click.echo(json.dumps({
            "runs": len(result.outcomes), "seconds": round(result.seconds, 3),
            "runs_per_s": round(result.runs_per_s, 1), "jobs": result.jobs, "strategy": strategy,
            "classes": [{"outcome": c.label, "count": c.count, "share": round(c.count / len(result.outcomes), 4),
                         "faults": c.faults, "first_run": c.first.number, "first_seed": c.first.seed,
                         "reproduce": files[c.label][1]} for c in result.classes]}, indent=2))
        return
    _print_table(result, files)


def _run(campaign: Campaign, runs: int, *, jobs: int, dask_address: str | None, stop_on: str | None,
         quiet: bool) -> CampaignResult:
    """The campaign, its progress shown unless `quiet`: a bar at a terminal (gone once it is over), else a line
    on stderr each tenth of the runs."""
    if dask_address:
        from ..explore.cluster import explore_on_dask  # distributed only when asked for
        return explore_on_dask(campaign, runs, dask_address, stop_on=stop_on)
    if quiet:
        return explore(campaign, runs, jobs=jobs, stop_on=stop_on)
    if not out.is_terminal:
        return explore(campaign, runs, jobs=jobs, stop_on=stop_on, progress=_ProgressLines(runs))
    labels: set[str] = set()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]} runs/s  {task.fields[classes]} classes"), TimeRemainingColumn())
    with Progress(*columns, console=out, transient=True) as bar:
        task = bar.add_task("exploring", total=runs, rate="-", classes=0)

        def advance(outcome: RunOutcome) -> None:
            labels.add(outcome.label)
            elapsed = bar.tasks[0].elapsed or 0.0
            done = bar.tasks[0].completed + 1
            bar.update(task, advance=1, classes=len(labels), rate=f"{done / elapsed:.0f}" if elapsed else "-")
        return explore(campaign, runs, jobs=jobs, stop_on=stop_on, progress=advance)


class _ProgressLines:
    """Progress where no bar can be drawn (a log, a pipe): one line on stderr each tenth of the runs, as
    `explored 10% (100 of 1,000 runs, 12.3 runs/s, 2 classes, ETA 73 s)`."""

    def __init__(self, runs: int):
        self.runs = runs
        self.done = 0
        self.labels: set[str] = set()
        self.started = time.perf_counter()

    def __call__(self, outcome: RunOutcome) -> None:
        self.done += 1
        self.labels.add(outcome.label)
        tenths = self.done * 10 // self.runs
        if tenths == (self.done - 1) * 10 // self.runs or self.done == self.runs:
            return  # the last run gives the table itself
        rate = self.done / max(time.perf_counter() - self.started, 1e-9)
        click.echo(f"explored {tenths * 10}% ({self.done:,} of {self.runs:,} runs, {rate:.1f} runs/s, "
                   f"{len(self.labels)} class{'es' if len(self.labels) != 1 else ''}, "
                   f"ETA {(self.runs - self.done) / rate:.0f} s)", err=True)


def _print_table(result: CampaignResult, files: dict[str, tuple[Path, str]]) -> None:
    campaign = result.campaign
    table = Table(title=f"{escape(str(campaign.scenario.path))}: {len(result.outcomes)} runs, strategy "
                        f"{campaign.strategy}, seed {campaign.seed}", title_justify="left")
    for column in ("class", "outcome", "count", "share", "first seed"):
        table.add_column(column, justify="left" if column == "outcome" else "right")
    for number, outcome_class in enumerate(result.classes, 1):
        colour = "green" if outcome_class.label.startswith("pass") and "violation" not in outcome_class.label \
            else "red"
        table.add_row(str(number), f"[{colour}]{escape(outcome_class.label)}[/{colour}]", str(outcome_class.count),
                      f"{outcome_class.count / len(result.outcomes):.1%}", str(outcome_class.first.seed))
    out.print(table)
    for number, outcome_class in enumerate(result.classes, 1):
        out.print(f"  class {number}: {escape(files[outcome_class.label][1])}")
    out.print(f"{result.runs_per_s:.1f} runs/s with {result.jobs} job{'s' if result.jobs > 1 else ''} "
              f"({result.seconds:.2f} s)")
