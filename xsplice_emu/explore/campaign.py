"""A campaign: one scenario run under many seeded schedules and fault draws, from one booted machine.

The scenario's machine boots once, and runs the scenario once to have its
code translated (then is put back: `Rewind`, rewind.py); runs are made by
child processes forked from it (a fork server), so each starts from exactly
that state without booting: its schedule is set, its faults are inserted,
its steps run, and its `RunOutcome` comes back through a pipe, a line each.
A fork and its exit cost more than a short run, so a child makes several
runs, putting the machine back between them (the same outcome and trace
digest as a child of its own). Up to `jobs` children run at once; results
are kept by run number, so the classes do not depend on `jobs`. A run
started fresh (`run_fresh`, or `xsplice-emu run SCENARIO --replay RUN.toml`)
boots the same machine and does the same: same seed, same outcome, same
trace digest.
"""

from __future__ import annotations

import gc
import json
import os
import select
import signal
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

from ..control.session import Session
from ..errors import MachineError, XspliceEmuError
from ..provision.debian import is_debian_build
from ..scenario import Scenario, ScenarioResult, StepResult, run_scenario
from ..scenario.runner import boot, run_steps, static_prefix
from ..scenario.steps import LivepatchStep
from .dirty import WrittenPages
from .outcome import OutcomeClass, RunOutcome, classes_of, outcome_of
from .plan import RunPlan, Settings, plan_run, settings_of, with_plan, write_replay
from .rewind import Rewind

STOP_ON = ("violation", "failure")
RUNS_PER_CHILD = 128
"""Runs a forked child makes at most, rewinding between them. A child's fork, first run and exit cost about what
four to five runs cost (measured with bench/explore.py's natural load scenario: about 25 ms at 8 vCPUs, 5 ms a
run; 70 ms at 72 vCPUs, 40 ms a run): at 128 that is a few percent of a campaign, at 32 up to a sixth."""
PIPE_CHUNK = 65536


@dataclass(frozen=True)
class Campaign:
    """What to explore: the scenario, the strategy, the campaign's seed and its [explore] settings."""

    scenario: Scenario
    strategy: str
    seed: int
    settings: Settings
    digests: bool = False  # each outcome with its trace's digest (slower)

    @classmethod
    def of(cls, scenario: Scenario, strategy: str, seed: int, *, digests: bool = False) -> Campaign:
        return cls(scenario, strategy, seed, settings_of(scenario), digests)

    def plan(self, number: int) -> RunPlan:
        return plan_run(self.scenario, self.settings, self.strategy, self.seed, number)


@dataclass(frozen=True)
class CampaignResult:
    """Every run's outcome (by run number), how long it took, and with how many jobs."""

    campaign: Campaign
    outcomes: tuple[RunOutcome, ...]
    seconds: float
    jobs: int

    @classmethod
    def of(cls, campaign: Campaign, outcomes: Iterable[RunOutcome], seconds: float, jobs: int) -> CampaignResult:
        """The result of `outcomes` in whatever order they finished."""
        return cls(campaign, tuple(sorted(outcomes, key=lambda o: o.number)), seconds, jobs)

    @cached_property
    def classes(self) -> list[OutcomeClass]:
        return classes_of(list(self.outcomes))

    @property
    def runs_per_s(self) -> float:
        return len(self.outcomes) / self.seconds if self.seconds else 0.0


def stops(outcome: RunOutcome, stop_on: str | None) -> bool:
    """Whether `outcome` ends a campaign run with --stop-on `stop_on`."""
    return stop_on == "violation" and bool(outcome.checks) or stop_on == "failure" and not outcome.passed


def explore(campaign: Campaign, runs: int, *, jobs: int = 1, stop_on: str | None = None,
            progress: Callable[[RunOutcome], None] | None = None,
            runs_per_child: int = RUNS_PER_CHILD) -> CampaignResult:
    """Run `runs` runs (0 .. runs-1), up to `jobs` at once, in children forked from one booted machine."""
    started = time.perf_counter()
    outcomes = list(fork_runs(campaign, range(runs), jobs=jobs, stop_on=stop_on, progress=progress,
                              runs_per_child=runs_per_child))
    return CampaignResult.of(campaign, outcomes, time.perf_counter() - started, jobs)


def fork_runs(campaign: Campaign, numbers: Iterable[int], *, jobs: int, stop_on: str | None = None,
              progress: Callable[[RunOutcome], None] | None = None,
              runs_per_child: int = RUNS_PER_CHILD) -> Iterator[RunOutcome]:
    """The outcomes of runs `numbers` (in the order they finish), from children forked from this process's
    booted machine: each child makes up to `runs_per_child` of them one after the other, rewinding the machine
    between them (rewind.py; one run per child where it cannot). After a run that `stops`, no new run starts.
    Only this process's own children are waited for (a Dask worker has others)."""
    parent = booted(campaign.scenario, upload_ahead=campaign.strategy != "chaos")
    if any(not step.ok for step in parent.prefix):
        failed = next(step for step in parent.prefix if not step.ok)
        why = failed.error or "; ".join(f"{check.what}: expected {check.expected!r}, got {check.got!r}"
                                        for check in failed.checks if not check.ok)
        raise XspliceEmuError(f"{campaign.scenario.path}: step {failed.number} ({failed.command}) fails before any "
                              f"run: {why}")
    pending = list(numbers)
    running: dict[int, _Child] = {}  # pipe -> the child writing into it
    exiting: list[int] = []  # children that reported, reaped once they are gone
    stopped = False
    gc.collect()
    gc.freeze()  # what exists now stays out of the collector: a run does not copy-on-write pages to scan them
    try:
        while True:
            exiting = [pid for pid in exiting if os.waitpid(pid, os.WNOHANG) == (0, 0)]
            while not stopped and pending and len(running) < jobs:
                size = 1 if parent.rewind is None else max(1, min(runs_per_child, -(-len(pending) // jobs)))
                batch, pending = pending[:size], pending[size:]
                pid, pipe = _fork(campaign, parent, batch, stop_on)
                running[pipe] = _Child(pid, batch)
            if not running:
                return
            readable, _, _ = select.select(list(running), [], [])
            for pipe in readable:
                child = running[pipe]
                chunk = os.read(pipe, PIPE_CHUNK)
                reports = child.reports(chunk)
                if not chunk:
                    del running[pipe]
                    os.close(pipe)
                    exiting.append(child.pid)
                for report in reports:
                    if stopped:
                        break
                    outcome = _outcome(report)
                    stopped = stops(outcome, stop_on)
                    if progress is not None:
                        progress(outcome)
                    yield outcome
                if stopped:  # no run starts after it: the other children stop where they are
                    for other in running.values():
                        os.kill(other.pid, signal.SIGKILL)
    finally:  # also when the caller stops early: no child outlives the campaign
        for pipe, child in running.items():
            os.close(pipe)
            os.kill(child.pid, signal.SIGKILL)
            exiting.append(child.pid)
        for pid in exiting:
            os.waitpid(pid, 0)
        gc.unfreeze()


@dataclass
class _Child:
    """A forked child running `numbers`, one report line per run, and what of its reports came so far."""

    pid: int
    numbers: list[int]
    received: bytes = b""
    reported: int = 0

    def reports(self, chunk: bytes) -> list[bytes]:
        """The whole reports `chunk` completes; at the end (empty `chunk`), one saying a run died unreported
        if any did."""
        lines = (self.received + chunk).split(b"\n")
        self.received = lines.pop()
        if not chunk and self.reported + len(lines) < len(self.numbers):  # (a run that stops ends it early too)
            number = self.numbers[self.reported + len(lines)]
            lines.append(json.dumps({"error": f"run {number} died without a report"}).encode())
        self.reported += len(lines)
        return lines


@dataclass(frozen=True)
class Booted:
    """What every run forks from: the scenario's machine, booted, its static prefix run, its code translated (by a
    run put back, where it can be)."""

    session: Session
    prefix: tuple[StepResult, ...]
    rewind: Rewind | None
    """How a child puts the session back between runs (None: one run per child)."""


BOOTED_KEPT = 2
"""Booted machines a process keeps, the most recently used: a Dask worker that serves campaigns of many scenarios
holds two, not one for every scenario it ever ran (tens to hundreds of MB each)."""
_BOOTED: dict[tuple, Booted] = {}


def booted(scenario: Scenario, *, upload_ahead: bool) -> Booted:
    """The scenario's machine ready to fork runs from, made once per process (while among the BOOTED_KEPT last
    used). The leading steps that do not run the machine (uploads: `static_prefix`) run here, once, not in every
    run; with `upload_ahead` (no run inserts a fault before the next step), so does the upload of a `load` that
    follows them."""
    key = (str(scenario.path), scenario.machine, tuple(step.describe() for step in scenario.steps), upload_ahead,
           _input_files(scenario))
    if key in _BOOTED:
        _BOOTED[key] = _BOOTED.pop(key)  # (the most recently used last)
    else:
        session = boot(scenario)
        count = static_prefix(scenario)
        prefix = run_steps(replace(scenario, steps=scenario.steps[:count]), session, 0.0)
        following = scenario.steps[count] if count < len(scenario.steps) else None
        if upload_ahead and isinstance(following, LivepatchStep) and following.request.verb == "load":
            params = following.request.params
            session.tool.upload_ahead(params["file"], allow_unsafe=params["allow_unsafe"])
        rewind = _rewind(session)
        if rewind is not None:
            _warm_up(scenario, session, prefix.steps, rewind)
        _BOOTED[key] = Booted(session, prefix.steps, rewind)
        while len(_BOOTED) > BOOTED_KEPT:  # dropped, not closed: a thread of a Dask worker may still fork from it
            del _BOOTED[next(iter(_BOOTED))]
    return _BOOTED[key]


def _input_files(scenario: Scenario) -> tuple[tuple[str, int, int], ...]:
    """Each file the scenario boots or uploads (firmware, a xen-syms path, payloads) with its size and change time
    (which a copy keeping the mtime still moves): a long-lived process (a Dask worker) given a rebuilt file at the
    same path boots again."""
    machine = scenario.machine
    named = [machine.firmware]
    if machine.xen_syms is not None and not is_debian_build(machine.xen_syms):  # Debian's: pinned by version
        named.append(Path(machine.xen_syms))
    named += [scenario.path.parent / file for step in scenario.steps if isinstance(step, LivepatchStep)
              for file in step.request.files]
    identities = []
    for path in named:
        if path is not None:
            try:
                stat = path.stat()
            except OSError:
                continue  # the boot or the upload says what is wrong with it
            identities.append((str(path), stat.st_size, stat.st_ctime_ns))
    return tuple(identities)


def _rewind(session: Session) -> Rewind | None:
    """How to rewind `session`, if it and this host's kernel allow (rewind.py)."""
    try:
        WrittenPages().close()
        return Rewind.of(session)
    except MachineError:  # NotRewindable, or a kernel without userfaultfd write-protection
        return None


def _warm_up(scenario: Scenario, session: Session, prefix: tuple[StepResult, ...], rewind: Rewind) -> None:
    """Run `scenario` once on `session` and put it back: what the runs forked from it will run is translated
    (translations stay, rewind.py), not translated again in each child."""
    rewind.start()
    try:
        run_steps(scenario, session, time.perf_counter(), already=prefix)
    except XspliceEmuError:
        pass  # each run meets it again, and says so
    finally:
        rewind.rewind()
        rewind.close()


def _fork(campaign: Campaign, parent: Booted, numbers: list[int], stop_on: str | None) -> tuple[int, int]:
    read, write = os.pipe()
    pid = os.fork()
    if pid:
        os.close(write)
        return pid, read
    os.close(read)
    gc.disable()
    try:  # the child: run each, report it, rewind, until one stops; leave without the parent's exit handlers
        if len(numbers) > 1 and parent.rewind is not None:
            parent.rewind.start()
        for index, number in enumerate(numbers):
            if index:
                parent.rewind.rewind()  # type: ignore[union-attr]  # several numbers: it rewinds
            try:
                plan = campaign.plan(number)
                result = run_steps(with_plan(campaign.scenario, plan), parent.session, time.perf_counter(),
                                   already=parent.prefix)
                outcome = outcome_of(result, plan, digest=campaign.digests)
                report = outcome.to_json()
            except BaseException as exc:  # noqa: BLE001 - whatever happens in the child is reported, never raised
                report = {"error": f"run {number}: {type(exc).__name__}: {exc}"}
            _write(write, json.dumps(report).encode() + b"\n")
            if "error" in report or stops(outcome, stop_on):
                break
    except BaseException as exc:  # noqa: BLE001 - a rewind that fails ends the batch, said as its next run's error
        _write(write, json.dumps({"error": f"run {number}: rewinding: {type(exc).__name__}: {exc}"}).encode() + b"\n")
    os.close(write)  # the parent reads its end to EOF now, and forks the next batch while this one tears down
    os._exit(0)


def _write(pipe: int, data: bytes) -> None:
    while data:
        data = data[os.write(pipe, data):]


def _outcome(report: bytes) -> RunOutcome:
    record = json.loads(report or b'{"error": "a run died without a report"}')
    if "error" in record:
        raise XspliceEmuError(record["error"])
    return RunOutcome.from_json(record)


def run_fresh(campaign: Campaign, number: int) -> tuple[RunOutcome, ScenarioResult]:
    """Run `number` on a freshly booted machine (no fork): its outcome and its result (with its trace)."""
    plan = campaign.plan(number)
    result = run_scenario(with_plan(campaign.scenario, plan))
    return outcome_of(result, plan, digest=campaign.digests), result


def write_class_files(result: CampaignResult, out: Path, *, traces: bool) -> dict[str, tuple[Path, str]]:
    """For each class, its first run's replay file (and with `traces`, its trace, from a fresh run of it) in
    `out`; label -> (replay file, reproduce command)."""
    campaign = result.campaign
    files = {}
    for index, outcome_class in enumerate(result.classes, 1):
        number = outcome_class.first.number
        replay = out / f"class{index}-run{number}.toml"
        write_replay(replay, campaign.scenario, campaign.plan(number), strategy=campaign.strategy,
                     campaign_seed=campaign.seed)
        if traces:
            _, run = run_fresh(campaign, number)
            run.session.machine.trace.write(out / f"class{index}-run{number}.jsonl")
        files[outcome_class.label] = (replay, reproduce(campaign.scenario, replay))
    return files


def reproduce(scenario: Scenario, replay: Path) -> str:
    """The command that runs the run `replay` describes again."""
    return f"xsplice-emu run {scenario.path} --replay {replay}"
