"""What one run of an exploration came to, and the classes of outcomes a campaign found."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..scenario import ScenarioResult
from ..scenario.steps import LivepatchStep
from .plan import ACTIONS, RunPlan


@dataclass(frozen=True)
class RunOutcome:
    """A run's class (passed, each action's rc, the oracle's checks that fired, a guest fault, a timeout) and
    what the plot needs (its largest fault, each action's request-to-release latency)."""

    number: int
    seed: int
    passed: bool
    rcs: tuple[str, ...]
    checks: tuple[str, ...]
    guest_fault: bool
    timed_out: bool
    fault_size_us: float
    latencies_ns: tuple[int, ...]
    digest: str  # of its trace; "" unless asked for

    @property
    def label(self) -> str:
        """The class: `pass rc 0/0`, `FAIL rc EBUSY violations torn,stale guest-fault`."""
        parts = ["pass" if self.passed else "FAIL", "rc " + ("/".join(self.rcs) or "-")]
        parts += [f"violations {','.join(self.checks)}"] if self.checks else []
        parts += ["guest-fault"] if self.guest_fault else []
        parts += ["timeout"] if self.timed_out else []
        return " ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> RunOutcome:
        return cls(**{**record, "rcs": tuple(record["rcs"]), "checks": tuple(record["checks"]),
                      "latencies_ns": tuple(record["latencies_ns"])})


def outcome_of(result: ScenarioResult, plan: RunPlan, *, digest: bool = False) -> RunOutcome:
    """Classify a finished run (with `digest`, keep its trace's digest: it costs a rendering of the trace)."""
    actions = [step for step in result.scenario.steps
               if isinstance(step, LivepatchStep) and step.request.verb in ACTIONS]
    action_results = [run for step, run in zip(result.scenario.steps, result.steps, strict=False)
                      if isinstance(step, LivepatchStep) and step.request.verb in ACTIONS]
    errors = [run.error for run in result.steps if run.error]
    rcs = tuple(run.rc or "-" for run in action_results) + ("-",) * (len(actions) - len(action_results))
    return RunOutcome(
        number=plan.number, seed=plan.seed, passed=result.ok, rcs=rcs,
        checks=tuple(sorted(result.session.violations)),
        guest_fault=any(" fault: " in error for error in errors),
        timed_out=any("did not finish" in error for error in errors) or "EAGAIN" in rcs,
        fault_size_us=plan.fault_size_us,
        latencies_ns=tuple(run.latency_ns for run in action_results if run.latency_ns is not None),
        digest=result.digest if digest else "")


@dataclass(frozen=True)
class OutcomeClass:
    """All the runs with one label: how many, and the first of them (lowest run number)."""

    label: str
    count: int
    first: RunOutcome


def classes_of(outcomes: list[RunOutcome]) -> list[OutcomeClass]:
    """Outcomes (by run number) grouped by label, most frequent first (ties: the class seen first)."""
    groups: dict[str, list[RunOutcome]] = {}
    for outcome in outcomes:  # by run number
        groups.setdefault(outcome.label, []).append(outcome)
    ordered = sorted(groups.values(), key=lambda runs: (-len(runs), runs[0].number))
    return [OutcomeClass(runs[0].label, len(runs), runs[0]) for runs in ordered]
