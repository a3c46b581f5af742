"""The C slice loop (machine/slice_loop.py, native/slice_loop.c): the same run as the Python loop, faster."""

from __future__ import annotations

import random
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import extra_versions, upload

from xsplice_emu import Machine, MachineConfig
from xsplice_emu.engines.controller import Livepatch
from xsplice_emu.livepatch import Action
from xsplice_emu.machine import core
from xsplice_emu.machine.scheduler import WORDS_PER_REFILL, Scheduler
from xsplice_emu.machine.vcpu import RUNNING
from xsplice_emu.scenario import load_scenario
from xsplice_emu.scenario.runner import run_scenario

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"


def test_the_scheduler_draws_what_random_random_draws():
    """Slice budgets, tie-breaks and host draws come from the seed as random.Random(seed) gives them, across the
    buffer's refills (the C loop takes its draws from the same buffer)."""
    running = SimpleNamespace(index=0, state=RUNNING, clock_ps=5)  # what queue() reads of a vCPU
    scheduler = Scheduler([running], seed=1234, slice_min=2_000, slice_max=10_000)  # type: ignore[list-item]
    reference = random.Random(1234)
    for step in range(WORDS_PER_REFILL):  # five refills' worth of words
        scheduler.queue(running)  # type: ignore[arg-type]
        assert scheduler.ready_tie[0] == reference.getrandbits(20)
        assert scheduler.random() == reference.random()
        assert scheduler.draw(997) == int(reference.random() * 997), step
    scheduler.reschedule(99)
    reference = random.Random(99)
    assert [scheduler.random() for _ in range(5)] == [reference.random() for _ in range(5)]


def _machine(image, *, c_loop: bool) -> Machine:
    machine = Machine(image, config=MachineConfig(vcpus=8, seed=7))
    if not c_loop:
        machine.slice_loop = None
    return machine


def _workload(machine: Machine) -> list[str]:
    """Boot, a busy spell with interrupts, a live patch applied and reverted: what a user sees of it."""
    machine.run_for(2_000_000)
    for cpu in (1, 4, 6):
        machine.call(cpu, "call_set_busy", 1)
    machine.run_for(3_000_000)
    livepatch = Livepatch(machine)
    upload(livepatch, "hello", "xen_hello_world.livepatch")
    livepatch.action("hello", Action.APPLY)
    machine.run_for(1_000_000)
    versions = extra_versions(machine)
    livepatch.action("hello", Action.REVERT)
    machine.run_for(1_000_000)
    return [*(str(event) for event in machine.trace.events), repr(versions), *machine.console.text().splitlines(),
            *(f"vCPU {v.index}: {v.state} clock {v.clock_ps} pc {v.pc:#x} ran {v.instructions}" for v in machine.vcpus),
            f"now {machine.now_ps}", machine.trace.digest]


def test_the_c_loop_runs_the_machine_as_the_python_loop_does(image, payloads):
    """Boot (Python hooks inside slices the C loop runs: vCPUs started, console lines), busy vCPUs taking timer
    interrupts, a patch applied and reverted: the same trace, console, clocks and digest with the C loop as
    with the Python loop alone."""
    with_c = _workload(_machine(image, c_loop=True))
    python_only = _workload(_machine(image, c_loop=False))
    assert len(with_c) > 500
    assert with_c == python_only


@pytest.mark.parametrize("name", ["guest_code_write_stale", "hook_patches_by_hand", "nmi_in_window"])
def test_a_scenario_runs_the_same_with_the_c_loop_as_without(name, payloads, monkeypatch):
    """Scenarios whose Python hooks run inside slices the C loop runs (after slices it ran of the same and other
    vCPUs: the hook sees their clocks and the time as the Python loop leaves them): the same events and digest."""
    def events(result) -> list[str]:
        return [str(event) for event in result.session.machine.trace.events]
    scenario = load_scenario(SCENARIOS / f"{name}.toml")
    with_c = run_scenario(scenario)
    monkeypatch.setattr(core, "SliceLoop", lambda machine, clock_page: None)
    python_only = run_scenario(scenario)
    assert python_only.session.machine.slice_loop is None
    assert events(with_c) == events(python_only)
    assert with_c.digest == python_only.digest


def test_busy_slices_run_without_python_between_them(image):
    """Four busy vCPUs for 10 ms: the C loop takes over 90% of the slices (the Python loop steps each vCPU about
    once a timer tick)."""
    def python_steps(machine: Machine) -> int:
        machine.run_for(1_000_000)
        for cpu in range(4):
            machine.call(cpu, "call_set_busy", 1)
        steps = 0
        step = machine._step

        def counted(*arguments):
            nonlocal steps
            steps += 1
            step(*arguments)
        machine._step = counted  # type: ignore[method-assign]
        machine.run_for(10_000_000)
        return steps

    machine = Machine(image, config=MachineConfig(vcpus=4))
    with_c = python_steps(machine)
    reference = Machine(image, config=MachineConfig(vcpus=4))
    reference.slice_loop = None
    python_only = python_steps(reference)
    assert python_only > 4_000
    assert with_c < python_only / 10, (with_c, python_only)
