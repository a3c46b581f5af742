"""Interrupt delivery: IPIs, IF masking, NMIs and their blocking."""

from __future__ import annotations

from xsplice_emu.arch.x86_64 import NMI_VECTOR
from xsplice_emu.machine import VcpuState
from xsplice_emu.platform import CALL_FUNCTION_VECTOR, EVENT_CHECK_VECTOR
from xsplice_emu.tracing import EventKind


def _events(machine, kind, vcpu, **match):
    return [e for e in machine.trace.events
            if e.kind == kind and e.vcpu == vcpu and all(e.fields.get(k) == v for k, v in match.items())]


def _count(machine, symbol, cpu):
    """Element `cpu` of a per-CPU counter array of the firmware."""
    return machine.per_cpu(symbol)[cpu]


def test_ipi_wakes_a_halted_vcpu(boot, image):
    """An event-check IPI to a halted vCPU wakes it and its handler runs."""
    machine = boot(2, ms=1.5)
    assert machine.vcpus[1].state is VcpuState.HALTED
    before = _count(machine, "event_checks", 1)
    machine.send_interrupt(1, EVENT_CHECK_VECTOR)
    machine.run_for(10_000)
    assert _count(machine, "event_checks", 1) == before + 1
    assert _events(machine, EventKind.INTERRUPT, 1, vector=EVENT_CHECK_VECTOR)


def test_ipi_reaches_a_running_vcpu(boot, image):
    """An IPI to a vCPU that is busy (never idle) is taken while it keeps running."""
    machine = boot(2, ms=1)
    machine.call(1, "call_set_busy", 1)
    machine.run_for(200_000)
    executed = machine.vcpus[1].instructions
    machine.send_interrupt(1, EVENT_CHECK_VECTOR)
    machine.run_for(200_000)
    assert _count(machine, "event_checks", 1) == 1
    assert machine.vcpus[1].state is VcpuState.RUNNING
    assert machine.vcpus[1].instructions - executed > 150_000


def test_maskable_interrupt_waits_for_sti(boot, image):
    """An IPI sent while IF=0 is held until the vCPU executes sti."""
    machine = boot(2, ms=1.5)
    window_ns = 300_000
    machine.post_call(1, "call_sti_window", window_ns)
    machine.run_for(20_000)
    [window] = _events(machine, EventKind.INTERRUPT, 1, vector=CALL_FUNCTION_VECTOR)
    machine.send_interrupt(1, EVENT_CHECK_VECTOR)
    sent = machine.now_ns
    machine.run_for(100_000)
    assert _count(machine, "event_checks", 1) == 0
    machine.run_for(window_ns * 3)
    [taken] = _events(machine, EventKind.INTERRUPT, 1, vector=EVENT_CHECK_VECTOR)
    assert sent < window.time_ns + window_ns <= taken.time_ns
    assert _count(machine, "event_checks", 1) == 1


def test_nmi_is_taken_with_interrupts_disabled(boot, image):
    """An NMI reaches a vCPU spinning with IF=0 and do_nmi runs; it is not lost."""
    machine = boot(2, ms=1.5)
    machine.post_call(1, "call_stall_irqs_off", 2_000_000)
    machine.run_for(100_000)
    machine.send_interrupt(1, NMI_VECTOR)
    machine.run_for(100_000)
    [nmi] = _events(machine, EventKind.NMI, 1)
    assert not _events(machine, EventKind.NMI_LOST, 1)
    assert machine.now_ns < 1_500_000 + 2_000_000
    assert _count(machine, "nmi_count", 1) == 1
    assert any(line.text == "cpu1: NMI received" for line in machine.console.lines)
    assert nmi.time_ns < machine.now_ns


def test_second_nmi_waits_for_iretq(boot, image):
    """An NMI raised while the first NMI's handler runs waits for that handler's iretq."""
    machine = boot(2, ms=1.5)
    machine.send_interrupt(1, NMI_VECTOR)
    machine.run_for(100)
    machine.send_interrupt(1, NMI_VECTOR)
    machine.run_for(200_000)
    first, second = _events(machine, EventKind.NMI, 1)
    [unblocked, *_] = _events(machine, EventKind.NMI_UNBLOCKED, 1)
    assert first.time_ns <= unblocked.time_ns <= second.time_ns
    order = machine.trace.events.index
    assert order(first) < order(unblocked) < order(second)
    assert _count(machine, "nmi_count", 1) == 2


def test_a_call_posted_for_later_does_not_run_early(boot, image):
    """A stall posted 50 us ahead is not run by an earlier call-function IPI; it starts at +50 us."""
    machine = boot(2, ms=1.5)
    start = machine.now_ns
    machine.post_call(1, "call_stall_irqs_off", 2_000_000, at_ps=(start + 50_000) * 1000)
    assert machine.call(1, "xen_major_version") == 4
    assert machine.now_ns < start + 50_000
    machine.run_for(100_000)
    kicks = _events(machine, EventKind.INTERRUPT, 1, vector=CALL_FUNCTION_VECTOR)
    assert [kick.time_ns >= start + 50_000 for kick in kicks] == [False, True]
