"""Debian's real Xen 4.17 image mapped beside the firmware: its functions run on every vCPU, payloads built
against it apply to it, Xen's own tool drives it, and what it cannot run in isolation is a reported fault."""

from __future__ import annotations

import hashlib
import shutil

import pytest
from click.testing import CliRunner
from helpers import ROOT, Served, debian_file
from test_serve import _run_real

from xsplice_emu import Machine, MachineConfig
from xsplice_emu.authoring.xen_tests import xen_tests_for
from xsplice_emu.cli import main
from xsplice_emu.control.session import Session
from xsplice_emu.errors import ConfigError, GuestFault, MachineError
from xsplice_emu.livepatch.states import Action
from xsplice_emu.provision.debian import load_xen_syms, xen_livepatch, xen_syms
from xsplice_emu.provision.debian_builds import PINNED_BUILD

# Each test runs Debian's real Xen 4.17 image in the machine: most of a second each.
pytestmark = pytest.mark.slow

XEN_TEXT = 0xffff82d040200000
EXTRA = PINNED_BUILD.extra  # what the real xen_extra_version returns, as built


@pytest.fixture(scope="module")
def xen():
    """Debian's xen-syms-4.17-amd64 of the pinned build."""
    return load_xen_syms(debian_file(xen_syms))


@pytest.fixture(scope="module")
def real_payloads(xen):
    """Xen's test payloads built against it."""
    return xen_tests_for(xen.path)


def _session(xen, vcpus: int = 8, **options) -> Session:
    return Session(vcpus=vcpus, seed=1, xen_syms=xen.path, **options)


def test_every_vcpu_runs_the_real_version_functions_at_their_link_addresses(xen):
    """The real xen_extra_version returns a pointer into the high half, to the pinned build's extra version; its
    major and minor version and build-id are the table's too."""
    session = _session(xen)
    assert xen.address("xen_extra_version") >> 32 == XEN_TEXT >> 32 and xen.build_id.hex() == PINNED_BUILD.build_id
    pointers = session.machine.call_all("xen_extra_version")  # the machine API resolves names in the image first
    assert all(pointer >> 32 == XEN_TEXT >> 32 for pointer in pointers)
    assert {session.machine.memory.read_cstring(pointer) for pointer in pointers} == {EXTRA}
    assert {(v.major, v.minor, v.extra) for v in session.versions()} == {
        (PINNED_BUILD.major, PINNED_BUILD.minor, EXTRA)}
    assert session.machine.call(0, "call_racy_count") == 0  # a name only the firmware has is the firmware's


def test_the_firmware_runs_the_platform_as_before(xen, image):
    """Paging on and the image mapped: the firmware boots and prints exactly what it prints without them."""
    def console(hypervisor) -> list[tuple[int, int, str]]:
        machine = Machine(image, config=MachineConfig(vcpus=8, seed=3), hypervisor=hypervisor)
        machine.run_for(3_000_000)
        return [(line.vcpu, line.time_ns, line.text) for line in machine.console.lines]
    assert console(xen) == console(None)


def test_a_payload_built_against_it_patches_every_vcpu_and_reverts_to_the_bytes_as_built(xen, real_payloads):
    """Apply on 8 vCPUs: the real function's first 5 bytes become a jmp into the payload past its image (within
    rel32), every vCPU says "Hello World"; revert: the bytes and every vCPU's answer are as built."""
    session = _session(xen)
    machine, livepatch = session.machine, session.livepatch
    target = xen.address("xen_extra_version")
    as_built = machine.memory.read(target, 5)
    assert as_built == xen.read(target, 5)
    livepatch.upload("hello", (real_payloads / "xen_hello_world.livepatch").read_bytes())
    assert livepatch.run_action("hello", Action.APPLY).rc == 0
    jump = machine.memory.read(target, 5)
    destination = target + 5 + int.from_bytes(jump[1:], "little", signed=True)
    assert jump[0] == 0xE9 and machine.payload_space[0] <= destination < machine.payload_space[1]
    assert machine.payload_space[0] == -(-xen.end // (2 << 20)) * (2 << 20)  # Xen 4.17's xen_virt_end
    assert {v.extra for v in session.versions()} == {"Hello World"}
    assert livepatch.run_action("hello", Action.REVERT).rc == 0
    assert machine.memory.read(target, 5) == as_built and session.text_unchanged()
    assert {v.extra for v in session.versions()} == {EXTRA}


def test_versions_read_as_xens_version_hypercall_returns_them_and_call_gives_the_functions_own(xen, real_payloads):
    """After replace, expect/info read "Hello Again Wor" (XENVER_extraversion's 16-byte field, as on real Xen);
    `call xen_extra_version` still points at the whole "Hello Again World!"."""
    session = _session(xen, vcpus=2)
    livepatch = session.livepatch
    livepatch.upload("replace", (real_payloads / "xen_replace_world.livepatch").read_bytes())
    assert livepatch.run_action("replace", Action.REPLACE).rc == 0
    assert {v.extra for v in session.versions()} == {"Hello Again Wor"}
    pointer = session.call(1, "xen_extra_version", ())
    assert session.machine.memory.read_cstring(pointer) == "Hello Again World!"


def test_the_payloads_hooks_run_the_real_printk_into_xens_console_ring(xen, real_payloads):
    """hello's load hooks call printk, resolved to the real one: its lines land in Xen's own console ring."""
    session = _session(xen, vcpus=2)
    session.livepatch.upload("hello", (real_payloads / "xen_hello_world.livepatch").read_bytes())
    assert session.livepatch.run_action("hello", Action.APPLY).rc == 0
    ring = session.machine.memory.read(xen.address("_conring"), 4096).split(b"\0")[0].decode()
    assert "(XEN) xen_hello_world: load hook executing\n" in ring


def test_a_real_function_that_needs_hypervisor_state_is_a_reported_fault_not_a_hang(xen):
    """cpu_raise_softirq reaches send_IPI_mask, which reads per-CPU state that was never set up: a page fault
    named by the real symbol; machine_halt never returns: the call's deadline ends it. The machine runs on."""
    session = _session(xen, vcpus=2)
    with pytest.raises(GuestFault, match=r"exception #PF page fault at 0xffff82d0[0-9a-f]+ <send_IPI_mask\+0x"):
        session.machine.call_contained(1, xen.address("cpu_raise_softirq"), 0, 0)
    with pytest.raises(MachineError, match="did not finish .* within 100 ms of virtual time"):
        session.machine.call_contained(1, xen.address("machine_halt"))
    assert {v.extra for v in session.versions()} == {EXTRA}


def test_xens_own_tool_patches_the_real_image_through_serve(xen, real_payloads, tmp_path):
    """Debian's xen-livepatch, through the library, loads a payload built against the real image into a served
    machine with it: every vCPU's real xen_extra_version says "Hello World"."""
    tool = debian_file(xen_livepatch)
    shutil.copy(real_payloads / "xen_hello_world.livepatch", tmp_path)
    served = Served(_session(xen, vcpus=4, boot_ms=1))
    try:
        stdout, _, status = _run_real(tool, "load xen_hello_world.livepatch", served.path, tmp_path)
        assert status == 0 and stdout.endswith("Applying xen_hello_world... completed\n")
        assert {v.extra for v in served.session.versions()} == {"Hello World"}
    finally:
        served.stop()


def test_the_real_xen_scenarios_pass_with_payloads_from_build_tests(xen, tmp_path):
    """`payload build-tests DIR --against debian` then `run scenarios/xen417/*.toml`: every one passes, and the
    same seed gives the same digest."""
    tree = tmp_path / "tree"
    shutil.copytree(ROOT / "scenarios" / "xen417", tree / "scenarios" / "xen417")
    (tree / "payloads").mkdir()
    runner = CliRunner()
    built = runner.invoke(main, ["payload", "build-tests", str(tree / "payloads" / "build-xen417"),
                                 "--against", str(xen.path)])
    assert built.exit_code == 0, built.output
    for scenario in sorted((tree / "scenarios" / "xen417").glob("*.toml")):
        first = runner.invoke(main, ["run", str(scenario), "-q"])
        assert first.exit_code == 0 and first.output.startswith("PASS "), first.output
        assert runner.invoke(main, ["run", str(scenario), "-q"]).output == first.output


def test_an_image_linked_low_is_refused_in_one_line_with_memory_untouched(xen, image):
    """The firmware given as --xen-syms overlaps the identity-mapped RAM: one line, exit 2."""
    result = CliRunner().invoke(main, ["livepatch", "--xen-syms", str(image.path), "list"])
    assert result.exit_code == 2
    assert result.output == (f"error: {image.path}: linked at {image.segments[0].address:#x}, over the firmware's "
                             "RAM: a hypervisor image beside the firmware must be linked in the high half\n")
    with pytest.raises(ConfigError):
        Machine(image, hypervisor=image)


def test_a_refused_payload_leaves_the_real_image_and_payload_memory_unchanged(xen, real_payloads, payloads):
    """A payload built for the firmware, uploaded to the real image: -EINVAL naming its build-id; the Xen image,
    the payload space, the states and the applied list are exactly as they were."""
    session = _session(xen, vcpus=2)
    machine = session.machine
    begin, end = machine.payload_space

    def state() -> tuple[str, str, list[str], list[str]]:
        image = min(seg.address for seg in xen.segments), xen.end
        return (machine.memory.digest(*image), hashlib.sha256(machine.memory.read(begin, end - begin)).hexdigest(),
                list(session.livepatch.payloads), list(session.livepatch.applied))
    before = state()
    with pytest.raises(Exception, match=f"is not the hypervisor's build-id {PINNED_BUILD.build_id}"):
        session.livepatch.upload("hello", (payloads / "xen_hello_world.livepatch").read_bytes())
    assert state() == before
