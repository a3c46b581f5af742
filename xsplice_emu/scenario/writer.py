"""A scenario file written from steps already run (the shell's `save`): loaded and run, it does the same.

Each step writes the TOML values of its declared parameters (durations in
the units the keys take, rounded up just enough that reading them back gives
the same nanoseconds: `Step.toml_values`); payload files are written as
absolute paths, so the file runs from any folder.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .spec import MachineSpec
from .steps import LivepatchStep, Step, toml_value


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
    values = step.toml_values()
    if not step.nested:
        return [f"{key} = {toml_value(value)}" for key, value in values.items()]
    return [f"{step.key} = {toml_value(values)}"]
