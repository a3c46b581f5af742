"""A scenario on real Xen and on the testbed, step by step, and where they differ.

Compared: the tool's stdout, stderr, exit status and errno, Xen's log lines in
order (the console's prefix and timestamps left out), and at each expect step
the version readings and the payloads' states. Timing is shown, never compared.
The errno on real Xen is the one the tool printed (`Error N: ...`); when it
printed none, only the testbed's is known and nothing is compared.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..control.operator import ERR, OUT, XEN
from ..control.session import Session
from ..errors import GuestFault, MachineError
from ..provision.debian import DEBIAN_XEN_SYMS
from ..scenario import Scenario, load_scenario
from ..scenario.runner import boot
from ..scenario.steps import ExpectStep, LivepatchStep
from .dom0 import initrd, vmlinux
from .packages import reference_files
from .plan import PlannedStep, payload_files, place, plan, working_directory
from .qemu import DEFAULT_TIMEOUT_S, ReferenceRun, StepRecord, run_reference

ERROR_LINE = re.compile(r"^Error (\d+): ", re.MULTILINE)
LIST_ROW = re.compile(r"^(\S+)\s*\| (\w+)", re.MULTILINE)


@dataclass(frozen=True)
class Observed:
    """What one step showed on one side (None: not seen there)."""

    stdout: str | None = None
    stderr: str | None = None
    status: int | None = None
    errno: int | None = None
    xen: tuple[str, ...] | None = None
    versions: dict[str, str] = field(default_factory=dict)
    states: dict[str, str] | None = None
    error: str | None = None             # the testbed stopped here: a guest fault or machine error
    seconds: float | None = None         # host wall time (the reference's, from its console)
    virtual_ns: int | None = None        # the testbed's virtual latency


@dataclass(frozen=True)
class Difference:
    step: int
    what: str
    reference: Any
    testbed: Any


@dataclass(frozen=True)
class StepComparison:
    planned: PlannedStep
    reference: Observed | None           # None: skipped on the reference
    testbed: Observed
    differences: tuple[Difference, ...]


@dataclass(frozen=True)
class Comparison:
    scenario: Scenario
    steps: tuple[StepComparison, ...]
    run: ReferenceRun
    testbed_seconds: float

    @property
    def differences(self) -> list[Difference]:
        return [difference for step in self.steps for difference in step.differences]


def compare_scenario(path: str | Path, *, smp: int, timeout_s: float = DEFAULT_TIMEOUT_S) -> Comparison:
    """Run the scenario at `path` on real Xen under QEMU and on the testbed patching the same build's
    xen-syms, and compare them."""
    scenario = load_scenario(path, xen_syms=DEBIAN_XEN_SYMS)
    steps = plan(scenario)
    files = reference_files()
    names = payload_files(scenario)
    cwd = working_directory(names)
    payloads = {place(name, cwd): scenario.path.parent / name for name in names}
    run = run_reference(files, vmlinux(files.kernel), initrd(files, steps, payloads, cwd), smp=smp,
                        timeout_s=timeout_s)
    started = time.perf_counter()
    testbed = run_testbed(scenario)
    seconds = time.perf_counter() - started
    compared = []
    for planned, seen in zip(steps, testbed, strict=True):
        record = run.steps.get(planned.number)
        reference = None if planned.skipped is not None else observed(record or StepRecord(), planned)
        differences = () if reference is None else differ(planned.number, reference, seen)
        compared.append(StepComparison(planned, reference, seen, differences))
    return Comparison(scenario, tuple(compared), run, seconds)


def observed(record: StepRecord, planned: PlannedStep) -> Observed:
    """A reference step's record as an observation: errno from the tool's output, states from its `list`."""
    if planned.reads:
        return Observed(versions=record.versions, states=listed_states(record.stdout), seconds=record.seconds)
    if not planned.tool:
        return Observed(seconds=record.seconds)
    errors = ERROR_LINE.findall(record.stderr)
    errno = int(errors[-1]) if errors else 0 if record.status == 0 else None
    return Observed(record.stdout, record.stderr, record.status, errno, record.xen, seconds=record.seconds)


def listed_states(listing: str) -> dict[str, str]:
    """Each payload's state as the tool's `list` printed it."""
    return dict(LIST_ROW.findall(listing))


def run_testbed(scenario: Scenario) -> list[Observed]:
    """Each step's observation on the testbed (after a guest fault or machine error, the rest are that
    error)."""
    seen: list[Observed] = []
    stopped: str | None = None
    with boot(scenario) as session:
        for step in scenario.steps:
            if stopped is not None:
                seen.append(Observed(error=stopped))
                continue
            started = time.perf_counter()
            try:
                seen.append(replace(_observe(step, session), seconds=time.perf_counter() - started))
            except (GuestFault, MachineError) as exc:
                stopped = str(exc)
                seen.append(Observed(error=stopped))
    return seen


def _observe(step, session: Session) -> Observed:
    if isinstance(step, LivepatchStep):
        outcome = session.command(step.request)
        chunks = {stream: [text for kind, text in outcome.chunks if kind == stream] for stream in (OUT, ERR, XEN)}
        latency = outcome.results[-1].release_ns if outcome.results else None
        return Observed("".join(chunks[OUT]), "".join(chunks[ERR]), outcome.exit_code, outcome.errno,
                        tuple("".join(chunks[XEN]).splitlines()), virtual_ns=latency)
    if isinstance(step, ExpectStep):
        first = session.versions()[0]
        return Observed(versions={"major": str(first.major), "minor": str(first.minor), "extra": first.extra},
                        states={payload.name: payload.state.name for payload in session.livepatch.list()})
    before = session.machine.now_ns
    step.run(session)
    return Observed(virtual_ns=session.machine.now_ns - before)


def differ(number: int, reference: Observed, testbed: Observed) -> tuple[Difference, ...]:
    """Where the testbed's observation of step `number` differs from the reference's."""
    if testbed.error is not None:
        return (Difference(number, "testbed stopped", None, testbed.error),)
    found = []
    for what, name in (("stdout", "stdout"), ("stderr", "stderr"), ("exit status", "status"),
                       ("Xen's log", "xen"), ("payload states", "states")):
        ours, theirs = getattr(reference, name), getattr(testbed, name)
        if ours is not None and ours != theirs:
            found.append(Difference(number, what, ours, theirs))
    if reference.errno is not None and reference.errno != testbed.errno:
        found.append(Difference(number, "errno", reference.errno, testbed.errno))
    for name, value in reference.versions.items():
        if value != testbed.versions.get(name):
            found.append(Difference(number, f"{name} version", value, testbed.versions.get(name)))
    return tuple(found)
