"""What one run of an exploration does differently: its schedule and the faults drawn for it.

A run's seed comes from the campaign's seed and the run's number. `random`
reseeds the scheduler (slice lengths, tie order); `pct` gives it PCT
priorities (`Priorities` in machine/scheduler.py); `chaos` is `random` plus
faults drawn around each action (the fault kinds with a `draw` in
scenario/faults.py: preempt, stall, nmi_storm), with log-uniform durations,
within the scenario's `[explore]` limits. A run is
written out as a replay file (`[schedule]` and `[[fault]]` tables, the
faults as ordinary steps) that `xsplice-emu run SCENARIO --replay RUN.toml`
runs again exactly.
"""

from __future__ import annotations

import hashlib
import math
import random
import string
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..files import read_toml, write_file
from ..scenario import Scenario, Step
from ..scenario.faults import FAULTS, Drawn, drawn_faults, fault_step
from ..scenario.keys import Key, Value, read_keys
from ..scenario.spec import Schedule
from ..scenario.steps import LivepatchStep

STRATEGIES = ("random", "pct", "chaos")
ACTIONS = ("apply", "revert", "replace", "load")


@dataclass(frozen=True)
class Settings:
    """A scenario's `[explore]` table: the limits of what chaos draws, and PCT's parameters."""

    faults: tuple[str, ...] = drawn_faults()
    min_us: float = 1.0
    max_us: float = 50_000.0
    window_us: float = 100.0
    nmi_rate_khz: float = 100.0
    pct_depth: int = 3
    pct_steps: int = 2_000


EXPLORE_KEYS = (Key("faults", Value.NAMES, optional=True), Key("min_us", Value.US, optional=True),
                Key("max_us", Value.US, optional=True), Key("window_us", Value.US, optional=True),
                Key("nmi_rate_khz", Value.KHZ, optional=True), Key("pct_depth", Value.INTEGER, optional=True),
                Key("pct_steps", Value.INTEGER, optional=True))


def settings_of(scenario: Scenario) -> Settings:
    """The scenario's `[explore]` table checked (ConfigError naming the file and the key)."""
    try:
        table = read_keys(scenario.explore, EXPLORE_KEYS)
    except ConfigError as exc:
        raise ConfigError(f"{scenario.path}: [explore]: {exc}") from None
    if "faults" in table:
        table["faults"] = tuple(table["faults"])
    settings = Settings(**table)
    drawn = drawn_faults()
    unknown = set(settings.faults) - set(drawn)
    engine = scenario.machine.engine
    missing = [name for name in settings.faults if name in drawn and engine not in FAULTS[name].engines]
    problems = [
        (bool(unknown), f"faults: {', '.join(sorted(unknown))} is not one of {', '.join(drawn)}"),
        (bool(missing), f"faults: {', '.join(missing)} does not exist on the {engine} engine"),
        (not 0 < settings.min_us <= settings.max_us,
         f"need 0 < min_us <= max_us, not {settings.min_us}..{settings.max_us}"),
        (not 1 <= settings.pct_depth <= 16, f"pct_depth must be 1..16, not {settings.pct_depth}"),
        (settings.pct_steps < settings.pct_depth, f"pct_steps must be at least pct_depth, not {settings.pct_steps}"),
    ]
    problem = next((message for wrong, message in problems if wrong), None)
    if problem:
        raise ConfigError(f"{scenario.path}: [explore]: {problem}")
    return settings


@dataclass(frozen=True)
class Fault:
    """A drawn fault: a step inserted before step `before` (1-based) of the scenario, as its TOML `key` and
    `values` (what a replay file holds) and parsed."""

    before: int
    key: str
    values: dict[str, Any]
    step: Step
    size_us: float


@dataclass(frozen=True)
class RunPlan:
    """One run: its number, its seed, its schedule and its faults."""

    number: int
    seed: int
    schedule: Schedule
    faults: tuple[Fault, ...] = ()

    @property
    def fault_size_us(self) -> float:
        """The largest fault drawn (0: none)."""
        return max((fault.size_us for fault in self.faults), default=0.0)


def run_seed(campaign_seed: int, number: int) -> int:
    """The seed of run `number` of a campaign seeded `campaign_seed`."""
    digest = hashlib.sha256(f"{campaign_seed}:{number}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def plan_run(scenario: Scenario, settings: Settings, strategy: str, campaign_seed: int, number: int) -> RunPlan:
    """What run `number` of a campaign does."""
    seed = run_seed(campaign_seed, number)
    if strategy == "pct":
        return RunPlan(number, seed, Schedule(seed, "pct", settings.pct_depth, settings.pct_steps))
    faults = _draw_faults(scenario, settings, random.Random(seed ^ 0x5EED)) if strategy == "chaos" else ()
    return RunPlan(number, seed, Schedule(seed), faults)


def _draw_faults(scenario: Scenario, settings: Settings, rng: random.Random) -> tuple[Fault, ...]:
    """One fault (maybe none) before each action step: a kind, a vCPU, a log-uniform duration, a delay."""
    vcpus = scenario.machine.vcpus
    faults = []
    for number, step in enumerate(scenario.steps, 1):
        if not _is_action(step) or not settings.faults:
            continue
        kind = rng.choice((*settings.faults, None))
        if kind is None:
            continue
        us = math.exp(rng.uniform(math.log(settings.min_us), math.log(settings.max_us)))
        delay = rng.uniform(0, settings.window_us)
        vcpu = rng.randrange(vcpus)
        draw = FAULTS[kind].draw
        assert draw is not None, "settings_of admits only drawn kinds"
        values, size_us = draw(Drawn(us, delay, vcpu, vcpus, settings.nmi_rate_khz))
        faults.append(Fault(number, fault_step(kind).key, values, _step(kind, values, vcpus, scenario.path.parent),
                            size_us))
    return tuple(faults)


def _is_action(step: Step) -> bool:
    return isinstance(step, LivepatchStep) and step.request.verb in ACTIONS


def _step(name: str, values: dict[str, Any], vcpus: int, base: Path) -> Step:
    step_kind = fault_step(name)
    return step_kind.from_toml(read_keys(values, step_kind.keys), vcpus=vcpus, base=base)


def with_plan(scenario: Scenario, plan: RunPlan, replay: Path | None = None) -> Scenario:
    """The scenario as run `plan` runs it: its faults inserted as steps, its schedule set."""
    steps: list[Step] = []
    labels: list[str] = []
    for number, step in enumerate(scenario.steps, 1):
        inserted = [fault.step for fault in plan.faults if fault.before == number]
        steps += inserted
        labels += [f"{number}{_letters(k)}" for k in range(len(inserted))]
        steps.append(step)
        labels.append(str(number))
    return replace(scenario, steps=tuple(steps), schedule=plan.schedule, replay=replay, labels=tuple(labels))


def _letters(index: int) -> str:
    """a, b, ..., z, aa, ab, ...: the suffix of the `index`-th step inserted before one step."""
    head, last = divmod(index, len(string.ascii_lowercase))
    return (_letters(head - 1) if head else "") + string.ascii_lowercase[last]


# -- replay files -------------------------------------------------------------------------------------------------
def write_replay(path: Path, scenario: Scenario, plan: RunPlan, *, strategy: str, campaign_seed: int) -> None:
    """The replay file of run `plan` (TOML: where it came from, its schedule, its faults as steps)."""
    schedule = plan.schedule
    lines = [f"# run {plan.number} of `xsplice-emu explore {scenario.path} --strategy {strategy} "
             f"--seed {campaign_seed}`",
             f"# replay: xsplice-emu run {scenario.path} --replay {path}", "",
             "[schedule]", f"seed = {schedule.seed}", f'strategy = "{schedule.strategy}"']
    if schedule.strategy == "pct":
        lines += [f"depth = {schedule.depth}", f"steps = {schedule.steps}"]
    for fault in plan.faults:
        table = ", ".join(f"{key} = {_toml(value)}" for key, value in fault.values.items())
        lines += ["", "[[fault]]", f"before_step = {fault.before}", f"{fault.key} = {{ {table} }}"]
    write_file(path, ("\n".join(lines) + "\n").encode())


def _toml(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else repr(value)


REPLAY_KEYS = (Key("schedule", Value.TABLE), Key("fault", Value.LIST, optional=True))
SCHEDULE_KEYS = (Key("seed", Value.INTEGER), Key("strategy", Value.TEXT), Key("depth", Value.INTEGER, optional=True),
                 Key("steps", Value.INTEGER, optional=True))


def load_replay(path: str | Path, scenario: Scenario) -> Scenario:
    """`scenario` as the replay file at `path` runs it (ConfigError naming the file on anything wrong)."""
    path = Path(path)
    raw = read_toml(path, what="replay file")
    try:
        document = read_keys(raw, REPLAY_KEYS)
        table = read_keys(document["schedule"], SCHEDULE_KEYS, where="[schedule]: ")
        if table["strategy"] not in ("random", "pct"):
            raise ConfigError(f"[schedule]: strategy must be random or pct, got {table['strategy']!r}")
        schedule = Schedule(table["seed"], table["strategy"], table.get("depth", 0), table.get("steps", 0))
        faults = tuple(_fault(raw, scenario, number) for number, raw in enumerate(document.get("fault", []), 1))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return with_plan(scenario, RunPlan(0, schedule.seed, schedule, faults), replay=path)


def _fault(raw: Any, scenario: Scenario, number: int) -> Fault:
    where = f"fault {number}: "
    if not isinstance(raw, dict) or "before_step" not in raw:
        raise ConfigError(f"{where}a fault is a table with before_step and one step key")
    before = raw["before_step"]
    if type(before) is not int or not 1 <= before <= len(scenario.steps):
        raise ConfigError(f"{where}before_step must be 1..{len(scenario.steps)}, got {before!r}")
    drawn = drawn_faults()
    kinds = [name for name in drawn if fault_step(name).key in raw]
    if len(kinds) != 1 or len(raw) != 2:
        raise ConfigError(f"{where}needs exactly one of {', '.join(drawn)} beside before_step")
    key = fault_step(kinds[0]).key
    try:
        step = _step(kinds[0], raw[key], scenario.machine.vcpus, scenario.path.parent)
    except ConfigError as exc:
        raise ConfigError(f"{where}{exc}") from None
    return Fault(before, key, raw[key], step, 0.0)


__all__ = ["STRATEGIES", "RunPlan", "Settings", "load_replay", "plan_run", "settings_of", "with_plan",
           "write_replay"]
