"""Every fault the testbed injects, in one registry: `FAULTS`, one entry per kind.

An entry says everything about its kind: the engines it exists on, and
either the scenario step that is it (its TOML key and shape, its shell
words, how it runs on a `Session`: `Step`) or the option of `apply` and
`revert` that is it (`--unsafe`: the shell word and the livepatch line's,
applied by the engine's `action(unsafe=True)`; `--preempt-requester-ms MS`,
by its `action(preempt_requester_ns=...)`); and, for the kinds
`explore`'s chaos strategy draws, how it draws one (`draw`). A new fault
kind is one entry here (and its step class, or its option in the engine).
The TOML loader, the shell and `explore` look kinds up here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..control.verbs import FAULT_OPTIONS, Option
from ..engines import ENGINES
from .steps import (
    MAX_STORM_NMIS,
    STEP_KINDS,
    DropFlushStep,
    NmiStep,
    NmiStormStep,
    PreemptStep,
    StallStep,
    Step,
)

MAX_STORM_NMIS_PER_VCPU = 1_000


@dataclass(frozen=True)
class Drawn:
    """What `explore` drew for a fault before its kind's `draw` shapes it: a log-uniform size, a delay within the
    window, a vCPU; and the limits it draws within (a scenario's `[explore]` table and its vCPUs)."""

    us: float
    delay_us: float
    vcpu: int
    vcpus: int
    nmi_rate_khz: float


Draw = Callable[[Drawn], tuple[dict[str, Any], float]]
"""A drawn fault's TOML values (the table at its step's key) and its size in us."""


@dataclass(frozen=True)
class Fault:
    """One fault kind, on `engines`: a scenario step (`step`: its TOML key and keys, its shell syntax, the same
    example in both, how it runs) or an option of apply and revert (`option`: `--NAME` at the shell and in a
    livepatch line, the engine's `action(NAME=True)`, or with a value its `action(NAME=...)` in ns); `draw`: how
    `explore` draws one (None: it never does)."""

    name: str
    engines: tuple[str, ...]
    step: type[Step] | None = None
    option: Option | None = None
    draw: Draw | None = None


def _preempt(drawn: Drawn) -> tuple[dict[str, Any], float]:
    return {"vcpu": drawn.vcpu, "us": round(drawn.us, 3), "delay_us": round(drawn.delay_us, 3)}, round(drawn.us, 3)


def _stall(drawn: Drawn) -> tuple[dict[str, Any], float]:
    return ({"vcpu": drawn.vcpu, "ms": round(drawn.us / 1000, 6), "delay_us": round(drawn.delay_us, 3)},
            round(drawn.us, 3))


def _nmi_storm(drawn: Drawn) -> tuple[dict[str, Any], float]:
    """Every vCPU, at the `[explore]` rate, for as long as MAX_STORM_NMIS allows."""
    per_vcpu = min(MAX_STORM_NMIS_PER_VCPU, MAX_STORM_NMIS // drawn.vcpus)
    us = min(drawn.us, per_vcpu * 1000 / drawn.nmi_rate_khz)
    return {"vcpus": "all", "rate_khz": drawn.nmi_rate_khz, "us": round(us, 3),
            "delay_us": round(drawn.delay_us, 3)}, round(us, 3)


EVERY_ENGINE = tuple(ENGINES)
_OPTIONS = {option.name: option for option in FAULT_OPTIONS}

FAULTS: dict[str, Fault] = {fault.name: fault for fault in (
    Fault("preempt", EVERY_ENGINE, step=PreemptStep, draw=_preempt),
    Fault("stall", EVERY_ENGINE, step=StallStep, draw=_stall),
    Fault("nmi_storm", EVERY_ENGINE, step=NmiStormStep, draw=_nmi_storm),
    Fault("nmi", EVERY_ENGINE, step=NmiStep),
    Fault("drop_flush", EVERY_ENGINE, step=DropFlushStep),
    Fault("unsafe", ("controller",), option=_OPTIONS["unsafe"]),
    Fault("from_irq", ("controller",), option=_OPTIONS["from_irq"]),
    Fault("preempt_requester", EVERY_ENGINE, option=_OPTIONS["preempt_requester_ms"]),
)}
"""Every fault kind, by name; the kinds `explore` draws, in the order it draws them from."""


def drawn_faults() -> tuple[str, ...]:
    """The fault kinds `explore` can draw, in registry order."""
    return tuple(name for name, fault in FAULTS.items() if fault.draw is not None)


def step_kinds() -> tuple[type[Step], ...]:
    """Every step kind: `STEP_KINDS`, then the step of each fault kind registered beside them."""
    return STEP_KINDS + tuple(fault.step for fault in FAULTS.values()
                              if fault.step is not None and fault.step not in STEP_KINDS)


def fault_step(name: str) -> type[Step]:
    """The step of fault kind `name` (one that is a step)."""
    step = FAULTS[name].step
    assert step is not None, f"{name} is an action option, not a step"
    return step


__all__ = ["FAULTS", "Drawn", "Fault", "drawn_faults", "fault_step", "step_kinds"]
