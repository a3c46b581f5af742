"""Running a scenario: one machine, its steps in order, every expectation checked.

A failed expectation does not stop the run (the report shows them all); a
guest fault or a machine error does, and is reported on its step.
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass

from ..errors import GuestFault, MachineError
from ..session import Session
from .spec import Scenario
from .steps import Check


@dataclass(frozen=True)
class StepResult:
    number: int
    kind: str
    command: str
    rc: str | None
    checks: tuple[Check, ...]
    latency_ns: int | None = None
    output: str = ""
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and all(check.ok for check in self.checks)


@dataclass(frozen=True)
class ScenarioResult:
    scenario: Scenario
    steps: tuple[StepResult, ...]
    digest: str
    virtual_ns: int
    host_seconds: float
    session: Session

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

    @property
    def reproduce(self) -> str:
        """The one command line that runs this scenario again, identically."""
        machine = self.scenario.machine
        options = ["--xen-syms", machine.xen_syms] if machine.xen_syms else []
        options += [] if machine.oracle else ["--no-oracle"]
        return shlex.join(["xsplice-emu", "run", str(self.scenario.path),
                           "--seed", str(machine.seed), "--vcpus", str(machine.vcpus), *options])


def run_scenario(scenario: Scenario) -> ScenarioResult:
    """Boot the scenario's machine and run its steps."""
    started = time.perf_counter()
    spec = scenario.machine
    session = Session(vcpus=spec.vcpus, seed=spec.seed, firmware=spec.firmware, xen_syms=spec.xen_syms,
                      boot_ms=spec.boot_ms, base=scenario.path.parent, oracle=spec.oracle)
    results = []
    for number, step in enumerate(scenario.steps, 1):
        try:
            done = step.run(session)
        except (GuestFault, MachineError) as exc:
            results.append(StepResult(number, step.kind, step.describe(), None, (), error=str(exc)))
            break
        results.append(StepResult(number, step.kind, step.describe(), done.rc, done.checks, done.latency_ns,
                                  done.outcome.text if done.outcome else ""))
    trace = session.machine.trace
    return ScenarioResult(scenario, tuple(results), trace.digest, session.machine.now_ns,
                          time.perf_counter() - started, session)
