"""Running a scenario: one machine, its steps in order, every expectation checked.

A failed expectation does not stop the run (the report shows them all); a
guest fault or a machine error does, and is reported on its step.
"""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import dataclass
from typing import Any

from ..errors import GuestFault, MachineError, errno_name
from ..session import NS_PER_MS, Session
from .spec import ABSENT, VERSION_KEYS, ExpectStep, LivepatchStep, NmiStep, RunStep, Scenario, StallStep, Step


@dataclass(frozen=True)
class Check:
    """One expectation: what was looked at, what it should be, what it was."""

    what: str
    expected: Any
    got: Any
    ok: bool


def _check(what: str, expected: Any, got: Any) -> Check:
    return Check(what, expected, got, expected == got)


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
        found = []
        for step in self.steps:
            found += [(step, check) for check in step.checks if not check.ok]
            if step.error is not None:
                found.append((step, None))
        return found

    @property
    def reproduce(self) -> str:
        """The one command line that runs this scenario again, identically."""
        machine = self.scenario.machine
        return shlex.join(["xsplice-emu", "run", str(self.scenario.path),
                           "--seed", str(machine.seed), "--vcpus", str(machine.vcpus)])


def run_scenario(scenario: Scenario) -> ScenarioResult:
    """Boot the scenario's machine and run its steps."""
    started = time.perf_counter()
    spec = scenario.machine
    session = Session(vcpus=spec.vcpus, seed=spec.seed, firmware=spec.firmware, boot_ms=spec.boot_ms,
                      base=scenario.path.parent)
    results = []
    for number, step in enumerate(scenario.steps, 1):
        try:
            result = _run_step(session, number, step)
        except (GuestFault, MachineError) as exc:
            results.append(StepResult(number, _kind(step), _describe(step), None, (), error=str(exc)))
            break
        results.append(result)
    trace = session.machine.trace
    return ScenarioResult(scenario, tuple(results), trace.digest, session.machine.now_ns,
                          time.perf_counter() - started, session)


def _run_step(session: Session, number: int, step: Step) -> StepResult:
    kind, command = _kind(step), _describe(step)
    if isinstance(step, LivepatchStep):
        outcome = session.command(step.request)
        checks = [_check("rc", errno_name(step.expect_errno), outcome.errno_name)]
        if step.expect_output is not None:
            found = step.expect_output in outcome.text
            checks.append(_check("output contains", step.expect_output,
                                step.expect_output if found else outcome.text.strip()))
        latency = outcome.results[-1].release_ns if outcome.results else None
        return StepResult(number, kind, command, outcome.errno_name, tuple(checks), latency, outcome.text)
    if isinstance(step, RunStep):
        session.advance(step.ns)
        return StepResult(number, kind, command, None, (), step.ns)
    if isinstance(step, StallStep):
        session.stall(step.vcpu, step.ns, delay_ns=step.delay_ns)
        return StepResult(number, kind, command, None, ())
    if isinstance(step, NmiStep):
        session.nmi(step.vcpu, delay_ns=step.delay_ns)
        return StepResult(number, kind, command, None, ())
    return StepResult(number, kind, command, None, tuple(_expectations(session, step)))


def _expectations(session: Session, step: ExpectStep) -> list[Check]:
    checks = []
    wanted = step.checks
    versions = session.versions() if VERSION_KEYS.keys() & wanted.keys() else []
    for key, field in VERSION_KEYS.items():
        if key in wanted:
            checks += _every_vcpu(key, wanted[key], [getattr(v, field) for v in versions])
    livepatch = session.livepatch
    for name, state in wanted.get("state", {}).items():
        payload = livepatch.payloads.get(name)
        checks.append(_check(f"state of {name}", state, payload.state.name if payload else ABSENT))
    if "applied" in wanted:
        checks.append(_check("applied", list(wanted["applied"]), list(livepatch.applied)))
    if "console_contains" in wanted:
        text = wanted["console_contains"]
        found = text in session.machine.console.text()
        checks.append(_check("console contains", text, text if found else session.machine.console.last_line()))
    if "text_unchanged" in wanted:
        checks.append(_check("text unchanged", wanted["text_unchanged"], session.text_unchanged()))
    if "nmis_lost" in wanted:
        checks.append(_check("NMIs lost", wanted["nmis_lost"], session.nmis_lost))
    return checks


def _every_vcpu(what: str, expected: Any, values: list[Any]) -> list[Check]:
    """One check for all vCPUs when each value is as `expected` (or `{not = X}`), else one per vCPU that is not."""
    if isinstance(expected, dict):
        shown, good = f"not {expected['not']!r}", lambda value: value != expected["not"]
    else:
        shown, good = expected, lambda value: value == expected
    wrong = [(vcpu, value) for vcpu, value in enumerate(values) if not good(value)]
    if not wrong:
        return [Check(f"{what} on all {len(values)} vCPUs", shown, values[0], True)]
    return [Check(f"{what} on vCPU {vcpu}", shown, value, False) for vcpu, value in wrong]


def _kind(step: Step) -> str:
    return {LivepatchStep: "livepatch", RunStep: "run", StallStep: "stall", NmiStep: "nmi",
            ExpectStep: "expect"}[type(step)]


def _describe(step: Step) -> str:
    """The step as one readable command."""
    if isinstance(step, LivepatchStep):
        return step.line
    if isinstance(step, RunStep):
        return f"run {step.ns / NS_PER_MS:g} ms"
    delay = f" after {step.delay_ns / 1000:g} us" if getattr(step, "delay_ns", 0) else ""
    if isinstance(step, StallStep):
        return f"stall vCPU {step.vcpu} for {step.ns / NS_PER_MS:g} ms{delay}"
    if isinstance(step, NmiStep):
        return f"NMI to vCPU {step.vcpu}{delay}"
    return "expect " + ", ".join(f"{key} = {_toml(value)}" for key, value in step.checks.items())


def _toml(value: Any) -> str:
    """`value` written as in the scenario file."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{key} = {_toml(item)}" for key, item in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    return json.dumps(value)

