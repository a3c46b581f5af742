"""What the reference runs of a scenario: each step as a command in dom0, or skipped saying why.

A livepatch step runs Debian's xen-livepatch with the same words (the real
tool has `--nodeps` and none of the testbed's other options); an expect step
reads what can be read on real Xen (the version hypercalls and the tool's
`list`); a run step waits that long in real time. Stalls, preemptions, NMIs,
dropped flushes and calls need the testbed's control of the vCPUs: skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from ..control.verbs import VERBS, Request
from ..scenario import Scenario, Step
from ..scenario.steps import ExpectStep, LivepatchStep, RunStep

SKIP_REASONS = {
    "stall": "a stall needs the testbed's control of a vCPU",
    "preempt": "a preemption needs the testbed's control of a vCPU",
    "nmi": "an NMI to one vCPU is a fault the reference cannot inject",
    "nmi_storm": "an NMI storm is a fault the reference cannot inject",
    "drop_flush": "a dropped flush is a fault the reference cannot inject",
    "call": "a call runs a hypervisor function on one vCPU, which only the testbed can do",
}
REAL_TOOL_OPTIONS = ("nodeps",)
"""The testbed's options that Debian's xen-livepatch 4.17 also has."""


@dataclass(frozen=True)
class PlannedStep:
    """One scenario step as the reference runs it: `tool` words for xen-livepatch, or `reads` (an expect step),
    or `sleep_us`, or `skipped` with the reason."""

    number: int
    command: str
    tool: tuple[str, ...] = ()
    reads: bool = False
    sleep_us: int = 0
    skipped: str | None = None


def plan(scenario: Scenario) -> tuple[PlannedStep, ...]:
    """Each of the scenario's steps as the reference runs it."""
    return tuple(_planned(number, step) for number, step in enumerate(scenario.steps, 1))


def payload_files(scenario: Scenario) -> tuple[str, ...]:
    """The payload files the scenario's livepatch steps name, as written (relative to the scenario's folder)."""
    files = dict.fromkeys(file for step in scenario.steps if isinstance(step, LivepatchStep)
                          for file in step.request.files)
    return tuple(files)


def working_directory(files: tuple[str, ...]) -> PurePosixPath:
    """dom0's directory for the tool: deep enough that each relative file name, `..` and all, stays inside
    /scenario (where `place` puts it)."""
    depth = max((PurePosixPath(file).parts.count("..") for file in files), default=0)
    return PurePosixPath("/scenario", *["d"] * depth)


def place(file: str, cwd: PurePosixPath) -> PurePosixPath:
    """Where in dom0 the tool finds `file`, run from `cwd`."""
    parts: list[str] = []
    for part in (cwd / file).parts:
        if part == "..":
            parts.pop()
        elif part != ".":
            parts.append(part)
    return PurePosixPath(*parts)


def _planned(number: int, step: Step) -> PlannedStep:
    command = step.describe()
    if isinstance(step, LivepatchStep):
        extra = _testbed_only(step.request)
        if extra:
            return PlannedStep(number, command, skipped=f"the real tool has no {extra}")
        return PlannedStep(number, command, tool=_tool_words(step.request))
    if isinstance(step, ExpectStep):
        return PlannedStep(number, command, reads=True)
    if isinstance(step, RunStep):
        return PlannedStep(number, command, sleep_us=max(1, step.ns // 1000))
    return PlannedStep(number, command, skipped=SKIP_REASONS.get(step.kind, f"the reference cannot run {step.kind}"))


def _testbed_only(request: Request) -> str:
    """The first option of `request` the real tool does not have, as its flag (empty: none)."""
    for option in VERBS[request.verb].options:
        if option.name not in REAL_TOOL_OPTIONS and request.params.get(option.name) not in (None, False, 0):
            return option.flag
    return ""


def _tool_words(request: Request) -> tuple[str, ...]:
    verb = VERBS[request.verb]
    words = [request.verb, *(request.params[argument] for argument in verb.arguments)]
    return tuple(words + [f"--{name}" for name in REAL_TOOL_OPTIONS if request.params.get(name)])
