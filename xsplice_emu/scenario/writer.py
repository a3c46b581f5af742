"""A scenario file written from steps already run (the shell's `save`): loaded and run, it does the same.

Durations are written in the units the keys take, rounded up just enough
that reading them back gives the same nanoseconds; payload files are
written as absolute paths, so the file runs from any folder.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..duration import NS_PER_MS, NS_PER_US
from .spec import MachineSpec
from .steps import (
    CallStep,
    DropFlushStep,
    ExpectStep,
    LivepatchStep,
    NmiStep,
    NmiStormStep,
    RunStep,
    Step,
    VcpuForAWhile,
    toml_value,
)


def scenario_toml(name: str, machine: MachineSpec, steps: Iterable[tuple[Step, str | None]]) -> str:
    """The scenario file: `name`, the `machine`, and each step with, for an operator command, the errno it
    returned (its expect_rc, so that the file passes where the session went)."""
    lines = [f"name = {toml_value(name)}", "", "[machine]", *_machine(machine)]
    for step, rc in steps:
        lines += ["", "[[step]]", *step_toml(step, rc)]
    return "\n".join(lines) + "\n"


def _machine(machine: MachineSpec) -> list[str]:
    values: dict[str, Any] = {"vcpus": machine.vcpus, "seed": machine.seed, "boot_ms": machine.boot_ms,
                              "clock_mhz": machine.clock_mhz, "timer_hz": machine.timer_hz,
                              "oracle": machine.oracle}
    if machine.firmware is not None:
        values["firmware"] = str(Path(machine.firmware).resolve())
    if machine.xen_syms is not None:
        values["xen_syms"] = machine.xen_syms if machine.xen_syms.startswith("debian") else \
            str(Path(machine.xen_syms).resolve())
    return [f"{key} = {toml_value(value)}" for key, value in values.items()]


def step_toml(step: Step, rc: str | None = None) -> list[str]:
    """The lines of `step`'s [[step]] table."""
    if isinstance(step, LivepatchStep):
        files = set(step.request.files)
        words = [str(Path(word).resolve()) if word in files else word for word in shlex.split(step.line)]
        return [f"livepatch = {toml_value(shlex.join(words))}"] + ([f"expect_rc = {toml_value(rc)}"] if rc not in
                                                              (None, "0") else [])
    if isinstance(step, RunStep):
        return [f"run_ms = {_in(step.ns, NS_PER_MS)}"]
    table: dict[str, Any]
    if isinstance(step, VcpuForAWhile):
        table = {"vcpu": step.vcpu, step.unit: _in(step.ns, step.unit_ns)}
    elif isinstance(step, NmiStep):
        table = {"vcpu": step.vcpu}
    elif isinstance(step, CallStep):
        table = {"vcpu": step.vcpu, "function": step.function, "args": list(step.arguments)}
        table |= {} if step.expect is None else {"expect": step.expect}
    elif isinstance(step, NmiStormStep):
        table = {"vcpus": list(step.vcpus), "rate_khz": step.rate_khz, "us": _in(step.ns, NS_PER_US)}
    elif isinstance(step, DropFlushStep):
        table = {"vcpu": step.vcpu}
    elif isinstance(step, ExpectStep):
        table = dict(step.checks)
    else:
        raise TypeError(f"no TOML for a {type(step).__name__}")
    delay = getattr(step, "delay_ns", 0)
    table |= {"delay_us": _in(delay, NS_PER_US)} if delay else {}
    return [f"{step.key} = {toml_value(table)}"]


def _in(ns: int, unit_ns: int) -> float:
    """`ns` in units of `unit_ns`, the shortest float that the scenario reader (`int(value * unit_ns)`) turns
    back into `ns`."""
    value = ns / unit_ns
    while int(value * unit_ns) < ns:
        value = math.nextafter(value, math.inf)
    return value
