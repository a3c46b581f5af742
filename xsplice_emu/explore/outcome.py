"""What one run of an exploration came to, and the classes of outcomes a campaign found."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from ..scenario import ScenarioResult
from ..scenario.steps import LivepatchStep
from ..tracing import EventKind
from .plan import ACTIONS, RunPlan


@dataclass(frozen=True)
class RunOutcome:
    """A run's class (passed, what failed first, where each of the oracle's checks that fired first fired) and
    what the plot and the report need (the faults drawn, the largest, each action's request-to-release
    latency)."""

    number: int
    seed: int
    passed: bool
    failure: str  # the first failed expectation or error: `expect WHAT: got VALUE`, `COMMAND: rc EBUSY`...
    checks: tuple[str, ...]  # the oracle's checks that fired
    violations: tuple[str, ...]  # each, as `torn at FUNCTION+0xOFF` (where it first fired)
    faults: tuple[str, ...]  # the kinds of the faults drawn (chaos)
    fault_size_us: float
    latencies_ns: tuple[int, ...]
    digest: str  # of its trace; "" unless asked for

    @property
    def label(self) -> str:
        """The class: `pass`, `FAIL: expect extra_version on vCPUs 0-7: got '-unstable'`,
        `FAIL: violation torn at xen_extra_version+0x4`, `pass: violation stale at ...` (one expected)."""
        reasons = [self.failure] if self.failure else []
        reasons += [f"violation {where}" for where in self.violations]
        verdict = "pass" if self.passed else "FAIL"
        return f"{verdict}: {'; '.join(reasons)}" if reasons else verdict

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> RunOutcome:
        return cls(**{**record, **{key: tuple(record[key])
                                   for key in ("checks", "violations", "faults", "latencies_ns")}})


def outcome_of(result: ScenarioResult, plan: RunPlan, *, digest: bool = False) -> RunOutcome:
    """Classify a finished run (with `digest`, keep its trace's digest: it costs a rendering of the trace)."""
    action_results = [run for step, run in zip(result.scenario.steps, result.steps, strict=False)
                      if isinstance(step, LivepatchStep) and step.request.verb in ACTIONS]
    return RunOutcome(
        number=plan.number, seed=plan.seed, passed=result.ok, failure=_first_failure(result),
        checks=tuple(sorted(result.session.violations)), violations=_violation_sites(result),
        faults=tuple(fault.key for fault in plan.faults), fault_size_us=plan.fault_size_us,
        latencies_ns=tuple(run.latency_ns for run in action_results if run.latency_ns is not None),
        digest=result.digest if digest else "")


def _first_failure(result: ScenarioResult) -> str:
    """What failed first, as one line; "" when nothing did but the oracle's checks (the violations say it)."""
    for step, check in result.failures:
        if check is None:
            return f"{step.command}: {(step.error or '').splitlines()[0]}"
        if check.what == "violations" and result.session.violations:
            continue  # `violations = 0` (the implicit last step): the sites say more
        if check.what == "rc":
            return f"{step.command}: rc {check.got}"
        return f"{'expect ' if step.kind == 'expect' else ''}{check.what}: got {check.got!r}"
    return ""


def _violation_sites(result: ScenarioResult) -> tuple[str, ...]:
    """Each check that fired, where it first fired: `torn at busy_chunk+0x12`."""
    if not result.session.violations:  # none fired: the trace's events need not be built to say so
        return ()
    first: dict[str, str] = {}
    for event in result.session.machine.trace.of_kind(EventKind.VIOLATION):
        first.setdefault(event.fields["check"], event.fields["symbol"])
    return tuple(f"{check} at {symbol}" for check, symbol in sorted(first.items()))


@dataclass(frozen=True)
class OutcomeClass:
    """All the runs with one label (by run number): how many, the first of them, the faults drawn in them."""

    label: str
    runs: tuple[RunOutcome, ...]

    @property
    def count(self) -> int:
        return len(self.runs)

    @property
    def first(self) -> RunOutcome:
        return self.runs[0]

    @property
    def faults(self) -> dict[str, int]:
        """How many faults of each kind were drawn over the class's runs (chaos), by kind."""
        return dict(sorted(Counter(kind for run in self.runs for kind in run.faults).items()))


def classes_of(outcomes: list[RunOutcome]) -> list[OutcomeClass]:
    """Outcomes (by run number) grouped by label, most frequent first (ties: the class seen first)."""
    groups: dict[str, list[RunOutcome]] = {}
    for outcome in outcomes:  # by run number
        groups.setdefault(outcome.label, []).append(outcome)
    ordered = sorted(groups.values(), key=lambda runs: (-len(runs), runs[0].number))
    return [OutcomeClass(runs[0].label, tuple(runs)) for runs in ordered]
