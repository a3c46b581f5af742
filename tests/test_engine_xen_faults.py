"""Page faults and general-protection faults in Xen's own code on the xen engine: Xen's IDT takes them to its
own handlers, which recover through their exception tables or panic with their own report; none is lost."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import ROOT, debian_file

from xsplice_emu.authoring.build import build_payload
from xsplice_emu.cli import main
from xsplice_emu.engines.xen.layout import PAYLOAD_AREA_SIZE
from xsplice_emu.engines.xen.machine import XenMachine
from xsplice_emu.errors import GuestFault
from xsplice_emu.machine import MachineConfig
from xsplice_emu.provision.debian import load_xen_syms, xen_syms
from xsplice_emu.tracing.kinds import EventKind

FAULTS = ROOT / "payloads" / "xen-faults"
NOT_PRESENT = 0xFFFF830010000000
"""Past the end of RAM in Xen's directmap: no page there."""
NON_CANONICAL = 1 << 63
NOWHERE = 0xFFFFC2D040600010
"""An address above Xen's image with nothing mapped (its L4 slot empty)."""
BUFFER = 0xFFFF830000300000
"""A free page of RAM, through the directmap."""


@pytest.fixture(scope="module")
def xen():
    """Debian's xen-syms-4.17-amd64 of the pinned build (skipped, with the reason, when it cannot be fetched)."""
    return load_xen_syms(debian_file(xen_syms))


def _load(xen, tmp_path: Path, name: str):
    """`xsplice-emu livepatch --engine xen load NAME.livepatch` of payloads/xen-faults/NAME.c built against it."""
    payload = build_payload(FAULTS / f"{name}.c", tmp_path / f"{name}.livepatch", firmware=xen.path)
    return CliRunner().invoke(main, ["livepatch", "--engine", "xen", "--xen-syms", str(xen.path), "--vcpus", "4",
                                     "load", str(payload)])


@pytest.mark.slow
def test_a_hook_reading_through_a_bad_pointer_in_xen_gets_xens_own_page_fault_panic(xen, tmp_path):
    """The load hook hands Xen's strlen a not-present address: Xen's do_page_fault prints its report (the
    hook in its call trace) and panics; the run ends with exit 1 and one line naming strlen and Xen's reason."""
    result = _load(xen, tmp_path, "page_fault")
    strlen = xen.address("strlen")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == (
        f"error: vCPU 0 fault: #PF page fault (cr2 {NOT_PRESENT:#x}) at {strlen:#x} <strlen>: "
        "cmp byte ptr [rdi], 0; Xen panicked: FATAL PAGE FAULT")
    lines = result.stderr.splitlines()
    assert f"(XEN) RIP:    e008:[<{strlen:016x}>] strlen+0/0x30" in lines
    assert any(line.startswith("(XEN)    [<") and "bad_pointer_hook+0x" in line and line.endswith("[page_fault]")
               for line in lines)
    assert lines[lines.index("(XEN) FATAL PAGE FAULT") + 2] == f"(XEN) Faulting linear address: {NOT_PRESENT:016x}"


@pytest.mark.slow
def test_a_hook_reading_through_a_non_canonical_pointer_gets_xens_own_general_protection_panic(xen, tmp_path):
    """The load hook hands Xen's strlen a non-canonical address: Xen's do_general_protection panics; the run ends
    with exit 1 and one line naming strlen and Xen's reason."""
    result = _load(xen, tmp_path, "general_protection")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == (
        f"error: vCPU 0 fault: #GP general protection at {xen.address('strlen'):#x} <strlen>: "
        "cmp byte ptr [rdi], 0; Xen panicked: GENERAL PROTECTION FAULT")
    assert "(XEN) GENERAL PROTECTION FAULT" in result.stderr.splitlines()


@pytest.mark.slow
def test_a_hook_that_jumps_where_nothing_is_mapped_gets_xens_own_fetch_fault_panic(xen, tmp_path):
    """The load hook calls an address with no RAM behind it: the fetch's #PF goes to Xen (it was a MachineError of
    the testbed's, reading the instruction there), Xen's report reads the code around RIP through its exception
    table (a fault inside its handler, given to Xen as the fixup asks) and Xen panics with a fetch's error code."""
    result = _load(xen, tmp_path, "jump_nowhere")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == (
        f"error: vCPU 0 fault: #PF page fault (cr2 {NOWHERE:#x}) at {NOWHERE:#x} <{NOWHERE:#x}>: (outside RAM); "
        "Xen panicked: FATAL PAGE FAULT")
    lines = result.stderr.splitlines()
    assert f"(XEN) Xen code around <{NOWHERE:016x}> ({NOWHERE:016x}) [fault on access]:" in lines
    assert lines[lines.index("(XEN) FATAL PAGE FAULT") + 1:][:2] == [
        "(XEN) [error_code=0010]", f"(XEN) Faulting linear address: {NOWHERE:016x}"]


@pytest.mark.slow
def test_a_hook_that_runs_its_own_data_gets_xens_no_execute_fault(xen, tmp_path):
    """The load hook calls a `ret` in its own .data: Xen maps a payload's data no-execute, so the fetch is Xen's
    page fault (present, an instruction fetch) and Xen panics (it ran, as code, before the testbed mapped payload
    pages as Xen's arch_livepatch_secure asks)."""
    result = _load(xen, tmp_path, "run_data")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1].endswith("Xen panicked: FATAL PAGE FAULT")
    lines = result.stderr.splitlines()
    assert lines[lines.index("(XEN) FATAL PAGE FAULT") + 1] == "(XEN) [error_code=0011]"


@pytest.mark.slow
def test_a_record_whose_name_points_nowhere_is_applied_and_reverted_by_xen(xen, tmp_path):
    """Xen's loader takes a record whose name points where nothing is mapped (Xen finds the function by
    old_addr): Xen applies and reverts it, every vCPU then runs the old function again, and the testbed, which
    reads each record Xen patches from, notes it (was a MachineError reading the name)."""
    payload = build_payload(FAULTS / "name_nowhere.c", tmp_path / "name_nowhere.livepatch", firmware=xen.path)
    result = CliRunner().invoke(main, ["livepatch", "--engine", "xen", "--xen-syms", str(xen.path), "--vcpus", "4",
                                       "load", str(payload), "revert", "name_nowhere"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == "Reverting name_nowhere... completed"
    lines = result.stderr.splitlines()  # Xen's log
    assert "(XEN) livepatch: name_nowhere finished APPLY with rc=0" in lines
    assert "(XEN) livepatch: name_nowhere finished REVERT with rc=0" in lines


@pytest.mark.slow
def test_a_hook_that_never_returns_leaves_no_cpu_for_the_next_hypercall_and_says_where_it_is(xen, tmp_path):
    """The load hook loops for ever inside Xen's rendezvous: the tool's next hypercall waits 100 virtual ms for
    vCPU 0, then the run ends in one line naming the wait and where vCPU 0 is (the hook, in the payload area)."""
    result = _load(xen, tmp_path, "hook_forever")
    assert result.exit_code == 1
    line = result.stderr.splitlines()[-1]
    assert re.fullmatch(r"error: vCPU 0 did not go idle within 100 ms to run livepatch_op "
                        r"\(it is at (0x[0-9a-f]+) <0x[0-9a-f]+>\)", line), line
    assert xen.end <= int(line.split("it is at ")[1].split()[0], 16) < xen.end + PAYLOAD_AREA_SIZE  # past Xen


def test_no_fault_is_lost_however_often_one_vcpu_faults_and_wherever_its_slices_end(xen):
    """One-instruction slices (each ends by emu_stop, where Unicorn 2.1.4 loses faults), and Xen's
    copy_from_unsafe_ll from a not-present and a non-canonical address, twice each on one vCPU: Xen's handler
    takes each (#PF, #GP, #PF, #GP), its exception table recovers (8 bytes not copied), and a fault with no
    fixup still ends in Xen's own panic."""
    machine = XenMachine(xen, config=MachineConfig(vcpus=2, seed=3, slice_min=1, slice_max=1))
    sources = (NOT_PRESENT, NON_CANONICAL) * 2
    assert [machine.call(0, "copy_from_unsafe_ll", BUFFER, source, 8) for source in sources] == [8] * 4
    assert [(e.vcpu, e.fields["vector"]) for e in machine.trace.of_kind(EventKind.EXCEPTION)] == [
        (0, 14), (0, 13), (0, 14), (0, 13)]
    with pytest.raises(GuestFault, match="#PF page fault .* Xen panicked: FATAL PAGE FAULT$"):
        machine.call(0, "strlen", NOT_PRESENT)
