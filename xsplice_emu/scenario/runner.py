"""Running a scenario: one machine, its steps in order, every expectation checked.

A failed expectation does not stop the run (the report shows them all); a
guest fault or a machine error does, and is reported on its step.
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass

from ..control.session import Session
from ..engines import ENGINES
from ..errors import GuestFault, MachineError
from .spec import MachineSpec, Scenario
from .steps import Check, LivepatchStep


@dataclass(frozen=True)
class StepResult:
    number: str
    """As the scenario file counts (`6`), or `6a` for a fault a replay inserted before step 6."""
    kind: str
    command: str
    rc: str | None
    checks: tuple[Check, ...]
    latency_ns: int | None = None
    output: str = ""
    error: str | None = None
    started_ns: int = 0
    """Virtual time when the step began."""
    ended_ns: int = 0
    """Virtual time when it was over (its start when it ran no machine time)."""

    @property
    def ok(self) -> bool:
        return self.error is None and all(check.ok for check in self.checks)


@dataclass(frozen=True)
class ScenarioResult:
    scenario: Scenario
    steps: tuple[StepResult, ...]
    virtual_ns: int
    host_seconds: float
    session: Session

    @property
    def digest(self) -> str:
        """The trace's digest (rendered when asked for: an exploration's runs mostly need none)."""
        return self.session.machine.trace.digest

    @property
    def ok(self) -> bool:
        return all(step.ok for step in self.steps)

    @property
    def failures(self) -> list[tuple[StepResult, Check | None]]:
        """Each failed expectation (or error, with no check) with its step."""
        found: list[tuple[StepResult, Check | None]] = []
        for step in self.steps:
            found += [(step, check) for check in step.checks if not check.ok]
            if step.error is not None:
                found.append((step, None))
        return found

    def failure_lines(self) -> list[str]:
        """The failures as text: each failed step once (`step 2 (expect ...):`), then each of its failed checks
        indented; a step that ended in an error is one line."""
        lines = []
        for step in self.steps:
            if step.error is not None:
                lines.append(f"step {step.number} ({step.command}): {step.error}")
            elif not step.ok:
                lines.append(f"step {step.number} ({step.command}):")
                lines += [f"    {check.what}: expected {check.expected!r}, got {check.got!r}"
                          for check in step.checks if not check.ok]
        return lines

    @property
    def reproduce(self) -> str:
        """The one command line that runs this scenario again, identically."""
        machine = self.scenario.machine
        options = ["--xen-syms", machine.xen_syms] if machine.xen_syms else []
        options += [] if machine.oracle else ["--no-oracle"]
        defaults = MachineSpec()
        options += [] if machine.clock_mhz == defaults.clock_mhz else ["--clock-mhz", str(machine.clock_mhz)]
        options += [] if machine.timer_hz == defaults.timer_hz else ["--timer-hz", str(machine.timer_hz)]
        options += ["--engine", machine.engine] if machine.engine != ENGINES[0] else []
        options += ["--replay", str(self.scenario.replay)] if self.scenario.replay else []
        return shlex.join(["xsplice-emu", "run", str(self.scenario.path),
                           "--seed", str(machine.seed), "--vcpus", str(machine.vcpus), *options])


def run_scenario(scenario: Scenario) -> ScenarioResult:
    """Boot the scenario's machine and run its steps; then close it (its trace and memory stay readable in the
    result's session): a run of many scenarios holds one machine's emulators at a time."""
    started = time.perf_counter()
    with boot(scenario) as session:
        return run_steps(scenario, session, started)


def static_prefix(scenario: Scenario) -> int:
    """How many leading steps never run the machine nor draw from its scheduler (uploads, lists): running them
    before the schedule is set changes nothing."""
    count = 0
    for step in scenario.steps:
        if not (isinstance(step, LivepatchStep) and step.request.verb in ("upload", "list")):
            break
        count += 1
    return count


def boot(scenario: Scenario) -> Session:
    """The scenario's machine, booted: where its steps start."""
    spec = scenario.machine
    return Session(vcpus=spec.vcpus, seed=spec.seed, firmware=spec.firmware, xen_syms=spec.xen_syms,
                   boot_ms=spec.boot_ms, base=scenario.path.parent, oracle=spec.oracle, clock_mhz=spec.clock_mhz,
                   timer_hz=spec.timer_hz, engine=spec.engine)


def run_steps(scenario: Scenario, session: Session, started: float, *,
              already: tuple[StepResult, ...] = ()) -> ScenarioResult:
    """Run the scenario's steps on `session`, booted for it (its schedule first, if it has one); the first
    ones may have run already, giving `already` (steps that do not run the machine: see `static_prefix`)."""
    if scenario.schedule is not None:
        schedule = scenario.schedule
        session.machine.scheduler.reschedule(schedule.seed, pct_depth=schedule.depth, pct_steps=schedule.steps)
    results = list(already)
    for index, step in enumerate(scenario.steps[len(already):], len(already)):
        number = scenario.step_label(index)
        began_ns = session.machine.now_ns
        try:
            done = step.run(session)
        except (GuestFault, MachineError) as exc:
            results.append(StepResult(number, step.kind, step.describe(), None, (), error=str(exc),
                                      started_ns=began_ns, ended_ns=session.machine.now_ns))
            break
        results.append(StepResult(number, step.kind, step.describe(), done.rc, done.checks, done.latency_ns,
                                  done.outcome.text if done.outcome else "", started_ns=began_ns,
                                  ended_ns=session.machine.now_ns))
    return ScenarioResult(scenario, tuple(results), session.machine.now_ns, time.perf_counter() - started, session)
