"""The xen engine: Debian's real Xen 4.17 image runs on every vCPU and livepatches itself with its own code,
driven by the same operator tool and scenarios as the controller engine."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import ROOT, debian_file
from unicorn import x86_const

from xsplice_emu.authoring.build import build_payload
from xsplice_emu.authoring.xen_tests import xen_tests_for
from xsplice_emu.cli import main
from xsplice_emu.control.session import Session
from xsplice_emu.control.verbs import parse
from xsplice_emu.engines.xen.code_writes import CodeWrites
from xsplice_emu.engines.xen.platform import ADDRESS_BITS, NO_EXECUTE, PAGE, WRITABLE
from xsplice_emu.errors import ConfigError, GuestFault, MachineError
from xsplice_emu.livepatch import Action
from xsplice_emu.machine import VcpuState
from xsplice_emu.provision.debian import load_xen_syms, xen_syms
from xsplice_emu.provision.debian_builds import PINNED_BUILD
from xsplice_emu.scenario import load_scenario, run_scenario
from xsplice_emu.tracing.kinds import EventKind

SEQUENCE = ROOT / "scenarios" / "xen417" / "xen_test_sequence.toml"
TESTBED_LINE = "(testbed) "
TIMEOUT = ROOT / "scenarios" / "xen417" / "timeout_preempted.toml"
XEN417 = ROOT / "scenarios" / "xen417"
EVENT_CHECK_VECTOR, CALL_FUNCTION_VECTOR, INVALIDATE_TLB_VECTOR = 0xFC, 0xFB, 0xFD
FLUSH_TLB = 0x100
"""Xen 4.17's flush flag for the non-global TLB (asm/flushtlb.h)."""


@pytest.fixture(scope="module")
def xen():
    """Debian's xen-syms-4.17-amd64 of the pinned build (skipped, with the reason, when it cannot be fetched)."""
    return load_xen_syms(debian_file(xen_syms))


@pytest.fixture(scope="module")
def payloads(xen) -> Path:
    """Xen's test payloads built against it, also copied to payloads/build-xen417 for scenarios/xen417 (a fresh
    clone has none there: `make payloads-xen417` is not part of `make test`)."""
    built = xen_tests_for(xen.path)
    shutil.copytree(built, ROOT / "payloads" / "build-xen417", dirs_exist_ok=True)
    return built


def _pte(session: Session, address: int) -> int:
    """The L1 entry Xen's own page tables map `address` (in the image's first 2 MiB, or the payload area) with."""
    machine = session.machine
    l2 = machine.address("l2_xenmap")
    l1 = machine.memory.read_u64(l2 + 8 * ((address >> 21) & 511)) & ADDRESS_BITS
    return struct.unpack("<Q", machine.memory.read(l1 + 8 * ((address >> 12) & 511), 8))[0]


def test_xen_applies_and_reverts_hello_world_with_its_own_code_on_two_vcpus(xen, payloads):
    """load: Xen's own hooks print into its console, every vCPU's real xen_extra_version says "Hello World", and
    Xen made its text read-only again; revert gives ".7" and the text as built; unload lists nothing."""
    session = Session(vcpus=2, seed=1, xen_syms=xen.path, engine="xen", base=payloads)
    loaded = session.command(parse(["load", "xen_hello_world.livepatch"]))
    assert (loaded.exit_code, loaded.text.splitlines()[:2]) == (0, [
        "Uploading xen_hello_world.livepatch... completed", "Applying xen_hello_world... completed"])
    assert "(XEN) xen_hello_world: load hook executing" in loaded.text
    assert {v.extra for v in session.versions()} == {"Hello World"}
    assert not _pte(session, xen.address("xen_extra_version")) & WRITABLE
    assert session.command(parse(["revert", "xen_hello_world"])).exit_code == 0
    assert {v.extra for v in session.versions()} == {PINNED_BUILD.extra} and session.text_unchanged()
    assert session.command(parse(["unload", "xen_hello_world"])).exit_code == 0
    assert session.command(parse(["list"])).text == "Nothing to list\n"


@pytest.mark.slow
def test_xen_console_lines_are_read_across_the_rings_end_and_past_an_overrun(xen):
    """What printk put in Xen's console ring reaches the log whole when it wraps over the ring's end; when more
    than the ring holds came since the last read, the log gets what the ring still holds, and nothing twice."""
    machine = Session(vcpus=1, seed=1, xen_syms=xen.path, engine="xen").machine
    memory = machine.memory
    ring, size = memory.read_u64(machine.address("conring")), memory.read_u32(machine.address("conring_size"))
    producer = machine.address("conringp")

    def printk(produced: int, text: bytes) -> int:
        for k, byte in enumerate(text, produced):
            memory.write(ring + (k & (size - 1)), bytes([byte]))
        memory.write(producer, (produced + len(text)).to_bytes(4, "little"))
        return produced + len(text)

    machine.drain_console()
    printk(memory.read_u32(producer), b"\n")  # end any line Xen has not finished
    machine._console_seen = produced = 3 * size - 7  # (as if Xen had printed that much)
    memory.write(producer, produced.to_bytes(4, "little"))
    printk(produced, b"(XEN) wraps over the end\n")
    machine.drain_console()
    assert machine.log[-1] == "wraps over the end"
    printk(printk(3 * size - 7 + 26, b"(XEN) lost\n" * (size // 11 + 1)), b"(XEN) kept\n")
    machine.drain_console()
    lines = len(machine.log)
    machine.drain_console()
    assert machine.log[-1] == "kept" and len(machine.log) == lines


def test_a_closed_xen_session_keeps_its_memory_and_runs_no_more(xen):
    """Leaving `with Session(...)` frees every Unicorn instance of the xen engine's machine, the spare that
    sizes Xen's blocks too: Xen's memory stays readable, running it again is a MachineError."""
    with Session(vcpus=2, seed=1, xen_syms=xen.path, engine="xen") as session:
        assert session.machine.fresh_block_size(xen.address("xen_extra_version")) > 0  # (makes the spare)
    machine = session.machine
    assert len(machine.instances.all()) == 3 and not any(hasattr(vcpu, "uc") for vcpu in machine.instances.all())
    assert session.text_unchanged()
    with pytest.raises(MachineError, match="closed"):
        session.advance(1000)


def test_a_revert_right_after_an_apply_through_the_python_api_is_taken_by_xen(xen, payloads):
    """run_action returns once every vCPU left Xen's rendezvous (the master's "finished" line printed, its CPU
    maps lock dropped): the revert asked for right after is Xen's rc 0, not -EBUSY from a slave still waiting."""
    session = Session(vcpus=2, seed=1, xen_syms=xen.path, engine="xen")
    livepatch = session.livepatch
    livepatch.upload("xen_hello_world", (payloads / "xen_hello_world.livepatch").read_bytes())
    applied = livepatch.run_action("xen_hello_world", Action.APPLY)
    assert applied is not None and applied.rc == 0
    assert session.machine.log[-1] == "livepatch: xen_hello_world finished APPLY with rc=0"
    reverted = livepatch.run_action("xen_hello_world", Action.REVERT)
    assert reverted is not None and (reverted.rc, session.machine.log[-1]) == (
        0, "livepatch: xen_hello_world finished REVERT with rc=0")


@pytest.mark.slow
def test_xens_refusal_is_shown_once_as_its_own_line_with_no_testbed_echo(xen, payloads):
    """apply of a payload built on another: Error 22 and Xen's build-id line, printed once (the testbed adds no
    (testbed) line repeating it)."""
    session = Session(vcpus=1, seed=1, xen_syms=xen.path, engine="xen", base=payloads)
    session.command(parse(["upload", "xen_bye_world", "xen_bye_world.livepatch"]))
    refused = session.command(parse(["apply", "xen_bye_world"]))
    assert (refused.exit_code, refused.text) == (1, "Applying xen_bye_world... failed\nError 22: Invalid argument\n"
                                                    "(XEN) livepatch: xen_bye_world: check against hypervisor build-id "
                                                    "failed\n")


@pytest.mark.slow
def test_a_section_alignment_no_allocation_meets_is_xens_enomem_and_the_next_payload_applies(xen, payloads,
                                                                                              tmp_path):
    """Hello world with its .rodata aligned to 2^63: Xen asks its payload allocator for more than any area holds,
    gets NULL (the host's stand-in said it with a MachineError, which left vCPU 0 inside Xen's hypercall) and
    refuses with its own ENOMEM; the real hello world then uploads and applies on the same machine."""
    data = bytearray((payloads / "xen_hello_world.livepatch").read_bytes())
    section_headers, = struct.unpack_from("<Q", data, 0x28)
    rodata = next(k for k in range(struct.unpack_from("<H", data, 0x3C)[0])
                  if struct.unpack_from("<IIQ", data, section_headers + 64 * k)[1:] == (1, 2))  # PROGBITS, ALLOC
    struct.pack_into("<Q", data, section_headers + 64 * rodata + 48, 1 << 63)  # sh_addralign
    (tmp_path / "aligned.livepatch").write_bytes(data)
    session = Session(vcpus=2, seed=1, xen_syms=xen.path, engine="xen", base=payloads)
    refused = session.command(parse(["upload", "aligned", str(tmp_path / "aligned.livepatch")]))
    assert (refused.exit_code, refused.text) == (1, "Uploading " + str(tmp_path / "aligned.livepatch") + "... failed\n"
                                                    "Error 12: Cannot allocate memory\n(XEN) livepatch: aligned: "
                                                    "Could not allocate memory for payload\n")
    applied = session.command(parse(["load", "xen_hello_world.livepatch"]))
    assert applied.exit_code == 0, applied.text
    assert {version.extra for version in session.versions()} == {"Hello World"}


STORING_HOOK = """
#include <xsplice_payload.h>
static unsigned long counters[512];
static void store_hook(void)
{
    unsigned int i;
    for ( i = 0; i < 200000; i++ )
        ((volatile unsigned long *)counters)[i & 511] += i;
}
LIVEPATCH_LOAD_HOOK(store_hook);
"""


@pytest.mark.slow
def test_stores_to_a_payloads_data_are_no_code_writes_and_its_text_is_code(xen, tmp_path, monkeypatch):
    """Xen's loader copies a payload into fresh pages and maps its data no-execute: neither the copies nor the
    200,000 stores its load hook makes to its .bss come to the machine's code-write hook (each was a call into
    Python, ~3 us: that apply took half a second), and its text is mapped as code again, not writable."""
    source = tmp_path / "storing.c"
    source.write_text(STORING_HOOK)
    payload = build_payload(source, tmp_path / "storing.livepatch", firmware=xen.path)
    session = Session(vcpus=2, seed=1, xen_syms=xen.path, engine="xen", oracle=False)
    machine = session.machine
    code_writes: list[int] = []
    code_store = machine._code_store

    def counted(vcpu, physical: int, size: int) -> bool:
        code_writes.append(physical)
        return code_store(vcpu, physical, size)
    monkeypatch.setattr(machine, "_code_store", counted)
    loaded = session.command(parse(["load", str(payload)]))
    assert loaded.exit_code == 0, loaded.text
    assert code_writes == []
    text = [page for page in range(machine.platform.payload_area[0], machine.platform.heap.payload_area.next, PAGE)
            if not _pte(session, page) & NO_EXECUTE]
    assert len(text) == 1 and not _pte(session, text[0]) & WRITABLE
    assert machine.memory.physical(text[0]) == _pte(session, text[0]) & ADDRESS_BITS


def test_the_xen_engine_needs_a_real_image_said_in_one_line():
    """engine = "xen" without xen_syms is a ConfigError naming what is missing."""
    with pytest.raises(ConfigError, match="xen engine runs a real Xen image"):
        Session(vcpus=2, seed=1, engine="xen")


def _tool_outputs(scenario: Path, engine: str, **overrides) -> list[tuple[str | None, list[str]]]:
    """Each operator command's rc and output lines (the testbed's own remarks aside) of `scenario` passing on
    `engine`."""
    result = run_scenario(load_scenario(scenario, engine=engine, **overrides))
    assert result.ok, engine
    return [(step.rc, [line for line in step.output.splitlines() if not line.startswith(TESTBED_LINE)])
            for step in result.steps if step.kind == "livepatch"]


@pytest.mark.slow
def test_xens_test_sequence_prints_the_same_tool_output_on_both_engines(xen, payloads):
    """Every operator command of xen_test_sequence.toml prints the same stdout and stderr, Xen's (XEN) lines
    included, and exits the same on the xen engine as on the controller engine, and both pass (the controller's
    own remarks, its (testbed) lines, aside)."""
    controller, xen_engine = (_tool_outputs(SEQUENCE, engine, vcpus=2) for engine in ("controller", "xen"))
    assert len(controller) == 19 and xen_engine == controller


@pytest.mark.slow
def test_a_preempted_vcpu_makes_xen_time_out_with_its_own_line_and_patch_nothing(xen, payloads):
    """1 ms timeout, vCPU 1 preempted for 5 ms: Xen prints "Timed out on semaphore", the apply is EBUSY, every
    vCPU still runs ".7"; once vCPU 1 runs again the apply succeeds (the scenario checks each)."""
    assert run_scenario(load_scenario(TIMEOUT)).ok


def _nmi_counts(session: Session) -> list[int]:
    """Xen's own per-CPU count of the NMIs its do_nmi handled."""
    machine = session.machine
    return [machine.memory.read_u32(machine.platform.per_cpu("nmi_count", cpu)) for cpu in range(2)]


@pytest.mark.slow
def test_an_nmi_from_the_host_and_one_from_xens_self_nmi_run_xens_own_do_nmi(xen):
    """An NMI to idle vCPU 1, then Xen's own self_nmi on vCPU 0 (an x2APIC ICR write in NMI mode): each goes
    through Xen's IDT into its do_nmi (its per-CPU nmi_count says 1 each), its iretq ends NMI blocking and the
    vCPU is back idle."""
    session = Session(vcpus=2, seed=1, xen_syms=xen.path, engine="xen")
    machine = session.machine
    seen = len(machine.trace.events)
    session.nmi(1)
    session.call(0, "self_nmi", ())
    session.advance(10_000)
    assert _nmi_counts(session) == [1, 1]
    kinds = {vcpu: [e.kind for e in machine.trace.events[seen:] if e.vcpu == vcpu and e.kind in (
        EventKind.NMI, EventKind.IRET, EventKind.NMI_UNBLOCKED, EventKind.HALT)] for vcpu in (0, 1)}
    assert kinds[0][-4:] == kinds[1][-4:] == [EventKind.NMI, EventKind.IRET, EventKind.NMI_UNBLOCKED,
                                               EventKind.HALT]


@pytest.mark.slow
def test_a_delayed_call_runs_on_its_vcpu_once_the_delay_passed(xen):
    """A call of Xen's self_nmi posted for vCPU 1 in 50 us returns None at once; vCPU 1 takes its NMI (Xen's
    nmi_count 1) at 50 us or later, and nothing before."""
    session = Session(vcpus=2, seed=1, xen_syms=xen.path, engine="xen")
    machine = session.machine
    posted_ns = machine.now_ns
    assert session.call(1, "self_nmi", (), delay_ns=50_000) is None
    session.advance(20_000)
    assert _nmi_counts(session) == [0, 0]
    session.advance(80_000)
    assert _nmi_counts(session) == [0, 1]
    nmi = next(e for e in machine.trace.events if e.kind is EventKind.NMI)
    assert (nmi.vcpu, nmi.time_ns >= posted_ns + 50_000) == (1, True)


def test_xens_rendezvous_kicks_the_other_vcpu_through_its_idt(xen, payloads):
    """During an apply vCPU 1 takes Xen's event-check IPI (vector 0xfc) through Xen's IDT and returns from it
    with iretq; the apply succeeds."""
    session = Session(vcpus=2, seed=1, xen_syms=xen.path, engine="xen", base=payloads)
    seen = len(session.machine.trace.events)
    assert session.command(parse(["load", "xen_hello_world.livepatch"])).exit_code == 0
    events = [(e.kind, e.fields.get("vector")) for e in session.machine.trace.events[seen:] if e.vcpu == 1]
    assert (EventKind.INTERRUPT, EVENT_CHECK_VECTOR) in events
    assert (EventKind.IRET, EVENT_CHECK_VECTOR) in events


@pytest.mark.slow
def test_xens_call_function_and_tlb_flush_ipis_run_their_handlers_on_the_other_vcpu(xen):
    """Xen's own on_selected_cpus(cpu 1, clear_page_sse2, page, wait) returns with the page zeroed by vCPU 1
    (vector 0xfb through Xen's IDT), and its flush_area_mask(online, FLUSH_TLB) returns once vCPU 1's
    invalidate_interrupt (0xfd) answered."""
    session = Session(vcpus=2, seed=1, xen_syms=xen.path, engine="xen")
    machine = session.machine
    page, mask = (machine.platform.heap.heap.take(PAGE, PAGE) for _ in range(2))
    machine.memory.write(page, b"\xff" * PAGE)
    machine.memory.write(mask, bytes([0b10]))
    seen = len(machine.trace.events)
    session.call(0, "on_selected_cpus", (mask, "clear_page_sse2", page, 1))
    assert machine.memory.read(page, PAGE) == bytes(PAGE)
    session.call(0, "flush_area_mask", ("cpu_online_map", 0, FLUSH_TLB))
    taken = [e.fields["vector"] for e in machine.trace.events[seen:] if e.kind is EventKind.INTERRUPT]
    assert [(e.vcpu, e.fields["vector"]) for e in machine.trace.events[seen:] if e.kind is EventKind.IRET] == [
        (1, CALL_FUNCTION_VECTOR), (1, INVALIDATE_TLB_VECTOR)] and taken == [CALL_FUNCTION_VECTOR,
                                                                          INVALIDATE_TLB_VECTOR]


@pytest.mark.slow
def test_xens_d_debug_key_dumps_both_cpus_through_its_own_exception_and_ipi_handlers(xen):
    """Xen's 'd' key: its run_in_exception_handler (a #UD bug frame through Xen's IDT) dumps CPU0 from
    dump_registers, and its state-dump IPI (the spurious vector, acknowledged through the x2APIC's in-service
    register) makes CPU1 dump itself from its idle loop; the call returns."""
    session = Session(vcpus=2, seed=1, xen_syms=xen.path, engine="xen")
    seen = len(session.machine.log)
    session.call(0, "handle_keypress", (ord("d"), 0))
    log = session.machine.log[seen:]
    dumps = [log.index(f"*** Dumping CPU{cpu} host state: ***") for cpu in (0, 1)]
    assert log[dumps[0] + 3].startswith("RIP:    e008:[<") and "common/keyhandler.c#dump_registers" in log[dumps[0] + 3]
    assert "arch/x86/domain.c#default_idle" in log[dumps[1] + 3]
    assert not [line for line in log if "spurious APIC interrupt" in line]


@pytest.mark.slow
def test_a_bug_in_xen_is_reported_by_xen_itself_and_stops_the_run_with_its_reason(xen):
    """set_direct_apic_vector for a vector already set hits Xen's BUG_ON: through Xen's IDT its do_invalid_op
    prints "Xen BUG at arch/x86/irq.c:986" with its call trace and panics; the run stops with one line giving
    that reason."""
    session = Session(vcpus=2, seed=1, xen_syms=xen.path, engine="xen")
    seen = len(session.machine.log)
    with pytest.raises(GuestFault, match="^vCPU 0 fault: Xen panicked: Xen BUG at arch/x86/irq.c:986 at "):
        session.call(0, "set_direct_apic_vector", (EVENT_CHECK_VECTOR, "event_check_interrupt"))
    log = session.machine.log[seen:]
    assert log[0] == "Xen BUG at arch/x86/irq.c:986"
    assert "   [<ffff82d04030a290>] R set_direct_apic_vector+0x20/0x30" in log


@pytest.mark.slow
def test_a_fault_in_xens_assembly_code_is_named_by_its_entry_s_label(xen):
    """restore_all_xen run with no interrupt frame: the #GP at its iretq is reported with Xen's label for it,
    "x86_64/entry.S#restore_all_xen+0xa4" (entry.S's labels have no size)."""
    session = Session(vcpus=2, seed=1, xen_syms=xen.path, engine="xen")
    with pytest.raises(GuestFault, match=r"^vCPU 0 fault: #GP general protection at 0xffff82d0402017e4 "
                                         r"<x86_64/entry.S#restore_all_xen\+0xa4>: iretq;"):
        session.call(0, "restore_all_xen", ())


def test_a_stalled_vcpu_makes_xen_time_out_with_its_own_line_and_patch_nothing(xen, payloads):
    """vCPU 1 in Xen's own __udelay with IRQs off for 2 ms, 1 ms timeout: Xen prints "Timed out on semaphore",
    the apply is EBUSY, nothing changed; after the stall it succeeds (the scenario checks each)."""
    assert run_scenario(load_scenario(XEN417 / "timeout_stalled.toml")).ok


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["controller", "xen"])
def test_a_request_while_vcpu_0_is_stalled_is_made_on_vcpu_1_which_becomes_master_and_times_out(xen, payloads,
                                                                                              engine):
    """vCPU 0 spinning with IRQs off for 10 ms cannot make dom0's apply: vCPU 1 makes it, Xen makes it master, it
    waits 2 ms for vCPU 0 and gives up: Error 16 and Xen's "Timed out on semaphore" line, on either engine."""
    session = Session(vcpus=2, seed=1, xen_syms=xen.path, engine=engine, base=payloads)
    session.command(parse(["upload", "xen_hello_world", "xen_hello_world.livepatch"]))
    session.stall(0, 10_000_000)
    applied = session.command(parse(["apply", "xen_hello_world", "--timeout-ms", "2"]))
    assert (applied.exit_code, [line for line in applied.text.splitlines() if not line.startswith(TESTBED_LINE)]) \
        == (2, ["Applying xen_hello_world... failed", "Error 16: Device or resource busy",
                "(XEN) livepatch: xen_hello_world: Verifying enabled expectations for all functions",
                "(XEN) livepatch: xen_hello_world: Timed out on semaphore in CPU quiesce phase 0/1",
                "(XEN) livepatch: xen_hello_world finished APPLY with rc=-16"])
    trace = session.machine.trace
    assert [event.fields["from_vcpu"] for event in trace.of_kind(EventKind.ACTION_REQUESTED)] == [1]
    assert [event.vcpu for event in trace.of_kind(EventKind.MASTER_ELECTED)] == [1]
    assert {version.extra for version in session.versions()} == {PINNED_BUILD.extra}


@pytest.mark.slow
def test_an_apply_whose_vcpu_the_host_holds_leaves_a_stale_eagain_on_the_next_payload(xen, payloads):
    """timeout_rc.toml: Error 16 after a stall, then the tool gives up on an apply whose vCPU the host holds and
    a second apply (on vCPU 1) leaves -EAGAIN in its payload; the same tool output on both engines."""
    controller, xen_engine = (_tool_outputs(XEN417 / "timeout_rc.toml", engine) for engine in ("controller", "xen"))
    assert len(controller) == 12 and xen_engine == controller


@pytest.mark.slow
def test_an_nmi_in_xens_wait_is_swallowed_by_its_mask_and_the_callback_is_back_after_the_timeout(xen, payloads):
    """c5ed88110c on 4.17.7: the NMI that lands while Xen's master waits is lost to mask_nmi_callback (nmis_lost
    1, a nmi_lost event on vCPU 0), and after the timeout Xen's set_nmi_callback finds no callback set."""
    result = run_scenario(load_scenario(XEN417 / "nmi_callback_restored_after_timeout.toml"))
    assert result.ok
    session = result.session
    assert [e.vcpu for e in session.machine.trace.events if e.kind is EventKind.NMI_LOST] == [0]
    assert session.machine.memory.read_u64(xen.address("arch/x86/traps.c#nmi_callback")) == 0


@pytest.mark.slow
def test_an_nmi_storm_during_an_apply_runs_through_xens_idt(xen, payloads):
    """NMIs at 1 MHz to both vCPUs while Xen applies: the apply succeeds, every NMI sent by then was handled by
    Xen's do_nmi, and the 56 lost to Xen's mask all come between its arch_livepatch_mask and unmask."""
    result = run_scenario(load_scenario(XEN417 / "nmi_storm_during_apply.toml"))
    assert result.ok
    events = result.session.machine.trace.events
    delivered = sum(1 for e in events if e.kind is EventKind.NMI)
    assert sum(_nmi_counts(result.session)) == delivered > 56
    masked, unmasked = (next(k for k, e in enumerate(events) if e.kind is kind)
                        for kind in (EventKind.NMI_MASKED, EventKind.NMI_UNMASKED))
    assert events[unmasked].fields == {"lost": 56}
    assert all(masked < k < unmasked for k, e in enumerate(events) if e.kind is EventKind.NMI_LOST)


@pytest.mark.slow
def test_a_dropped_flush_leaves_one_vcpu_running_the_code_it_translated_before_xens_apply(xen, payloads):
    """drop_flush on vCPU 1, then Xen applies hello world: vCPU 0 says "Hello World", vCPU 1 still runs the
    xen_extra_version it translated before (".7"), even after it serialised again taking an NMI."""
    session = Session(vcpus=2, seed=1, xen_syms=xen.path, engine="xen", base=payloads)
    assert [v.extra for v in session.versions()] == [PINNED_BUILD.extra] * 2
    session.drop_flush(1)
    assert session.command(parse(["load", "xen_hello_world.livepatch"])).exit_code == 0
    session.nmi(1)
    session.advance(10_000)
    assert [v.extra for v in session.versions()] == ["Hello World", PINNED_BUILD.extra]


def _run(scenario: Path, *options: str) -> tuple[int, str]:
    """`xsplice-emu run SCENARIO OPTIONS`: its exit code and its PASS or FAIL line."""
    result = CliRunner().invoke(main, ["run", str(scenario), *options])
    return result.exit_code, next(line for line in result.output.splitlines() if line.startswith(("PASS", "FAIL")))


@pytest.mark.slow
def test_the_oracle_sees_the_stale_code_a_dropped_flush_leaves_on_xens_own_engine(xen, payloads):
    """drop_flush through Xen's apply: `run` passes on the scenario's stale = 1 and says `violations stale 1`."""
    code, line = _run(XEN417 / "drop_flush_stale.toml")
    assert code == 0 and "violations stale 1  digest" in line, line


@pytest.mark.slow
def test_xens_own_apply_and_revert_give_no_violation(xen, payloads):
    """Xen's clean apply and revert of hello world: `run` passes and says `violations 0` (not `oracle off`)."""
    code, line = _run(XEN417 / "clean_apply.toml")
    assert code == 0 and "violations 0  digest" in line, line


NOOP_PATCH = """#include <xsplice_payload.h>
void {function}({params});
{state}
void new_{function}({params}) {{ {body} }}
LIVEPATCH_FUNC(livepatch_{function}) = {{
    .version = LIVEPATCH_PAYLOAD_VERSION, .name = "{function}",
    .new_addr = new_{function}, .old_addr = {function},
    .new_size = XSPLICE_NEW_SIZE(new_{function}), .old_size = XSPLICE_OLD_SIZE({function}),
}};
"""


def _patching_scenario(xen, tmp_path: Path, function: str, steps: str, *, vcpus: int, params: str = "void",
                       state: str = "", body: str = "") -> Path:
    """A scenario on the xen engine whose `steps` may `load patch.livepatch`: a payload replacing Xen's `function`
    (`params`) by `body`, built against the image."""
    source = tmp_path / "patch.c"
    source.write_text(NOOP_PATCH.format(function=function, params=params, state=state, body=body))
    built = CliRunner().invoke(main, ["payload", "build", str(source), "--against", str(xen.path), "-o",
                                      str(tmp_path / "patch.livepatch")])
    assert built.exit_code == 0, built.output
    scenario = tmp_path / "patch.toml"
    scenario.write_text(f'name = "{function}"\n[machine]\nvcpus = {vcpus}\nseed = 1\nxen_syms = "{xen.path}"\n'
                        f'engine = "xen"\n{steps}')
    return scenario


@pytest.mark.slow
def test_the_oracle_sees_every_vcpu_in_the_function_xen_patches_under_its_own_rendezvous(xen, tmp_path):
    """A payload patching check_for_livepatch_work, where Xen's rendezvous holds every CPU while it writes: one
    `active` violation per vCPU (each stack, read by return addresses, returns into it); `run` passes on it."""
    scenario = _patching_scenario(xen, tmp_path, "check_for_livepatch_work",
                                  '[[step]]\nlivepatch = "load patch.livepatch"\n'
                                  '[[step]]\nexpect = { violations = { active = 3 } }\n', vcpus=3,
                                  state="unsigned int calls __payload_data;", body="++calls;")
    code, line = _run(scenario)
    assert code == 0 and "violations active 3  digest" in line, line


@pytest.mark.slow
def test_the_oracle_sees_xens_revert_leave_the_first_records_jump(xen, payloads):
    """Two records on one function reverted by Xen's own code: the leftover jump is the same one `residue` as on
    the controller engine, so forward_revert passes on both."""
    for engine in ("xen", "controller"):
        code, line = _run(XEN417 / "forward_revert.toml", "--engine", engine)
        assert code == 0 and "violations residue 1  digest" in line, (engine, line)


@pytest.mark.slow
def test_an_nmi_in_xens_patching_window_is_on_the_nmi_path_with_its_stack_read_through_the_ist(xen, tmp_path):
    """An NMI storm while Xen patches nmi_watchdog_tick (do_nmi calls it): `nmi_path` violations only, each
    backtrace from Xen's `nmi` entry through the interrupted context (read across the IST stack) to idle_loop."""
    scenario = _patching_scenario(xen, tmp_path, "nmi_watchdog_tick",
                                  '[[step]]\nnmi_storm = { vcpus = "all", rate_khz = 1000, us = 100 }\n'
                                  '[[step]]\nlivepatch = "load patch.livepatch"\n'
                                  '[[step]]\nexpect = { violations = { nmi_path = { at_least = 1 } } }\n', vcpus=2,
                                  params="const void *regs", body="(void)regs;")
    result = run_scenario(load_scenario(scenario))
    assert result.ok
    events = [e for e in result.session.machine.trace.events if e.kind is EventKind.VIOLATION]
    assert events and {e.fields["check"] for e in events} == {"nmi_path"}
    first = events[0].fields
    assert first["walk"] == "return addresses" and first["backtrace"].startswith("nmi < ")
    assert "check_for_livepatch_work" in first["backtrace"] and first["backtrace"].endswith("#idle_loop+0xea")


@pytest.mark.slow
def test_hello_world_under_an_nmi_storm_is_off_the_nmi_path(xen, payloads):
    """xen_extra_version is reached from do_nmi only through fatal_trap (the machine dying): the NMI storm on
    hello world's apply gives no `nmi_path` violation."""
    result = run_scenario(load_scenario(XEN417 / "nmi_storm_during_apply.toml"))
    assert result.ok
    assert not [e for e in result.session.machine.trace.events if e.kind is EventKind.VIOLATION]


@pytest.mark.long
@pytest.mark.parametrize("vcpus", [8, 72])
def test_xens_test_sequence_passes_on_many_vcpus(xen, payloads, vcpus):
    """The sequence on 8 and 72 vCPUs of Xen's own rendezvous."""
    assert run_scenario(load_scenario(SEQUENCE, vcpus=vcpus, engine="xen")).ok


@pytest.mark.slow
def test_explore_runs_its_campaigns_on_xens_own_engine(xen, payloads):
    """`explore` of the preempted-timeout scenario (engine "xen") under random schedules and chaos faults: every
    run forks from one booted Xen machine and passes (Xen times out, then applies)."""
    for strategy in ("random", "chaos"):
        result = CliRunner().invoke(main, ["explore", str(TIMEOUT), "--runs", "4", "--strategy", strategy,
                                           "--json"])
        assert result.exit_code == 0, result.output
        classes = json.loads(result.stdout)["classes"]
        assert [(c["outcome"], c["count"]) for c in classes] == [("pass", 4)], classes


def _summaries(tmp_path: Path, scenario: Path, vcpus: int) -> list[dict]:
    """`trace summary --json` of `scenario` run on the xen engine with `vcpus`."""
    trace = tmp_path / f"{scenario.stem}-{vcpus}.jsonl"
    ran = CliRunner().invoke(main, ["run", str(scenario), "--engine", "xen", "--vcpus", str(vcpus), "--trace",
                                    str(trace), "-q"])
    assert ran.exit_code == 0, ran.output
    summary = CliRunner().invoke(main, ["trace", "summary", str(trace), "--json"])
    assert summary.exit_code == 0, summary.output
    return json.loads(summary.stdout)


@pytest.mark.slow
def test_trace_summary_of_the_xen_engine_shows_xens_own_rendezvous_per_vcpu(xen, payloads, tmp_path):
    """xen_test_sequence on 8 vCPUs: each of the six actions Xen ran has its master (vCPU 0), its seven other
    vCPUs' arrivals, both phases, the patch window, its release with rc 0 and the 5 bytes Xen wrote into
    xen_extra_version per function."""
    actions = _summaries(tmp_path, SEQUENCE, 8)
    assert [(a["action"], a["payload"], a["rc"], a["master"]) for a in actions] == [
        ("apply", "xen_hello_world", 0, 0), ("revert", "xen_hello_world", 0, 0), ("apply", "xen_hello_world", 0, 0),
        ("apply", "xen_bye_world", 0, 0), ("replace", "xen_replace", 0, 0), ("revert", "xen_replace", 0, 0)]
    for action in actions:
        assert sorted(arrival["vcpu"] for arrival in action["arrivals"]) == list(range(1, 8))
        assert action["requested_ns"] < action["elected_ns"] < action["cpu_phase_ns"] < action["irq_phase_ns"] \
            <= action["all_parked_ns"] < action["window_closed_ns"] < action["released_ns"]
        assert action["bytes_patched"] == 5 * len(action["functions_patched"]) > 0
        assert set(action["functions_patched"]) == {"xen_extra_version"}


@pytest.mark.slow
def test_xens_rendezvous_takes_longer_on_more_vcpus(xen, payloads, tmp_path):
    """The first apply of xen_test_sequence: Xen's master waits longer for 7 other vCPUs than for 1, and the
    release comes later (virtual time)."""
    two, eight = (_summaries(tmp_path, SEQUENCE, vcpus)[0] for vcpus in (2, 8))
    assert eight["slowest_arrival_ns"] > two["slowest_arrival_ns"]
    assert eight["parked_latency_ns"] > two["parked_latency_ns"]
    assert eight["release_latency_ns"] > two["release_latency_ns"]


@pytest.mark.slow
def test_trace_summary_names_the_vcpu_xens_timeout_waited_for(xen, payloads, tmp_path):
    """timeout_preempted: the first apply is aborted by Xen in the CPU phase with rc -EBUSY, cpu1 missing and
    nothing patched; the second one completes."""
    first, second = _summaries(tmp_path, TIMEOUT, 4)
    assert (first["rc"], first["abort_reason"], first["bytes_patched"], first["all_parked_ns"]) == (
        -16, "timeout in CPU phase (missing: cpu1)", 0, None)
    assert (second["rc"], second["bytes_patched"]) == (0, 5)


@pytest.mark.long
def test_trace_summary_counts_every_one_of_72_vcpus_in_xens_rendezvous(xen, payloads, tmp_path):
    """72 vCPUs (past one word of Xen's cpu_online_map): Xen's master waits for 71 others, and each arrives."""
    first = _summaries(tmp_path, SEQUENCE, 72)[0]
    assert (first["rc"], sorted(arrival["vcpu"] for arrival in first["arrivals"])) == (0, list(range(1, 72)))
    events = [json.loads(line) for line in (tmp_path / f"{SEQUENCE.stem}-72.jsonl").read_text().splitlines()[1:]]
    assert {event["cpus"] for event in events if event["kind"] == "master_elected"} == {71}
    assert first["release_latency_ns"] > _summaries(tmp_path, SEQUENCE, 8)[0]["release_latency_ns"]


def test_a_vcpu_that_stored_into_code_itself_still_drops_what_another_stored_before():
    """vCPU 1 writes a range, vCPU 0 writes another: vCPU 0's serialisation drops vCPU 1's range (not its own),
    vCPU 2's both, merged where they touch; a second serialisation drops nothing."""
    writes = CodeWrites(3)
    writes.stored(1, 0x1000, 0x1004)
    writes.stored(1, 0x1004, 0x1008)
    writes.stored(0, 0x1008, 0x1010)
    writes.stored(0, 0x3000, 0x3001)
    assert writes.serialise(0) == [(0x1000, 0x1008)]
    assert writes.serialise(2) == [(0x1000, 0x1010), (0x3000, 0x3001)]
    assert writes.serialise(0) == writes.serialise(2) == []
    assert writes.serialise(1) == [(0x1008, 0x1010), (0x3000, 0x3001)]


@pytest.mark.slow
def test_a_vcpu_waiting_on_a_held_xen_spinlock_sleeps_until_it_is_released_then_takes_it(xen):
    """vCPU 1 calls Xen's _spin_lock on a lock whose ticket 0 is held: for 200 us it sleeps in the wait (it runs
    no instruction); once the host releases ticket 0 it takes the lock (head 1, tail 2) and goes back to idle,
    its clock past the release and the time it waited counted as instructions spun."""
    session = Session(vcpus=2, seed=1, xen_syms=xen.path, engine="xen")
    machine = session.machine
    lock = machine.platform.heap.heap.take(64)
    machine.memory.write(lock, struct.pack("<HH", 0, 1) + bytes(60))
    session.call(1, "_spin_lock", (lock,), delay_ns=1_000)
    session.advance(10_000)
    waiting = machine.vcpus[1]
    executed = waiting.instructions
    session.advance(200_000)
    assert (waiting.state, waiting.instructions) == (VcpuState.SPINNING, executed)
    released_ps = machine.now_ps
    machine.memory.write(lock, struct.pack("<H", 1))
    session.advance(10_000)
    assert struct.unpack("<HH", machine.memory.read(lock, 4)) == (1, 2)
    assert waiting.state is VcpuState.HALTED
    assert waiting.clock_ps > released_ps
    assert waiting.instructions - executed > 200_000


GENERAL_REGISTERS = [getattr(x86_const, f"UC_X86_REG_{name}") for name in (
    "RAX", "RBX", "RCX", "RDX", "RSI", "RDI", "RBP", "RSP", "R8", "R9", "R10", "R11", "R12", "R13", "R14", "R15", "RIP",
    "EFLAGS")]


def _three_waiters(xen, *, store_into_the_loop: bool = False):
    """vCPUs 1, 2 and 3 waiting in Xen's _spin_lock on a lock whose ticket 0 is held (tickets 1, 2, 3), and, for
    each release of the lock by the host: the state of the vCPU whose turn it is after it, the states of those
    still waiting after it, and (instructions, registers) of each of these before and after. `store_into_the_loop`:
    the host first rewrites the wait loop's `pause` as two `nop`s (the same loop, not the code that was
    analysed)."""
    session = Session(vcpus=4, seed=1, xen_syms=xen.path, engine="xen")
    machine = session.machine
    lock = machine.platform.heap.heap.take(64)
    machine.memory.write(lock, struct.pack("<HH", 0, 1) + bytes(60))
    for cpu in (1, 2, 3):
        session.call(cpu, "_spin_lock", (lock,), delay_ns=1_000 * cpu)
    session.advance(20_000)
    assert [machine.vcpus[cpu].state for cpu in (1, 2, 3)] == [VcpuState.SPINNING] * 3
    if store_into_the_loop:
        pause = machine.vcpus[3].pc
        assert machine.memory.read(pause, 2) == b"\xf3\x90"
        machine.memory.write(pause, b"\x90\x90")
    releases = []
    for head in (1, 2, 3):
        taker, sleepers = machine.vcpus[head], [machine.vcpus[cpu] for cpu in range(head + 1, 4)]
        before = [(vcpu.instructions, [vcpu.read(name) for name in GENERAL_REGISTERS]) for vcpu in sleepers]
        machine.memory.write(lock, struct.pack("<H", head))
        session.advance(10_000)
        after = [(vcpu.instructions, [vcpu.read(name) for name in GENERAL_REGISTERS]) for vcpu in sleepers]
        releases.append((taker.state, [vcpu.state for vcpu in sleepers], before, after))
    assert struct.unpack("<HH", machine.memory.read(lock, 4)) == (3, 4)
    return releases


@pytest.mark.slow
def test_a_release_that_is_not_a_waiters_turn_leaves_it_asleep_as_it_was(xen):
    """Each release wakes only the vCPU whose turn it is: the others sleep on, with every register as it was and no
    instruction run (their loop was tried once on the new head and came round again); the last takes the lock
    after the third release."""
    for taker, sleepers, before, after in _three_waiters(xen):
        assert taker is VcpuState.HALTED
        assert sleepers == [VcpuState.SPINNING] * len(sleepers)
        assert after == before


@pytest.mark.slow
def test_a_wait_loop_stored_into_is_not_tried_and_every_waiter_wakes(xen):
    """The loop's code is no longer what was analysed: no turn of it is tried on a waiter's behalf; every release
    wakes every waiter, each runs, sleeps again where it is not its turn, and they take the lock in ticket order."""
    for taker, sleepers, before, after in _three_waiters(xen, store_into_the_loop=True):
        assert taker is VcpuState.HALTED
        assert sleepers == [VcpuState.SPINNING] * len(sleepers)
        assert all(instructions_after > instructions_before
                   for (instructions_before, _), (instructions_after, _) in zip(before, after, strict=True))


def test_observers_added_at_one_site_run_on_every_vcpu_in_the_order_they_were_added(xen):
    """Two observers of xen_extra_version's entry, added while the vCPUs run: calling it on vCPU 2 and then on vCPU
    0 runs both, first to last, each told the vCPU it runs on (one ctypes callback serves every vCPU's hook)."""
    machine = Session(vcpus=3, seed=1, xen_syms=xen.path, engine="xen").machine
    seen: list[tuple[str, int]] = []
    for name in ("first", "second"):
        machine.observe_entry("xen_extra_version", lambda vcpu, name=name: seen.append((name, vcpu.index)))
    for cpu in (2, 0):
        machine.call(cpu, "xen_extra_version")
    assert seen == [("first", 2), ("second", 2), ("first", 0), ("second", 0)]
