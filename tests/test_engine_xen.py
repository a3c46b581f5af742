"""The xen engine: Debian's real Xen 4.17 image runs on every vCPU and livepatches itself with its own code,
driven by the same operator tool and scenarios as the controller engine."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from helpers import ROOT, debian_file

from xsplice_emu.debian import load_xen_syms, xen_syms
from xsplice_emu.debian_builds import PINNED_BUILD
from xsplice_emu.engines.xen.platform import PAGE, WRITABLE
from xsplice_emu.errors import ConfigError
from xsplice_emu.scenario import load_scenario, run_scenario
from xsplice_emu.session import Session
from xsplice_emu.verbs import parse
from xsplice_emu.xen_tests import xen_tests_for

SEQUENCE = ROOT / "scenarios" / "xen417" / "xen_test_sequence.toml"
TESTBED_LINE = "(testbed) "
TIMEOUT = ROOT / "scenarios" / "xen417" / "timeout_preempted.toml"


@pytest.fixture(scope="module")
def xen():
    """Debian's xen-syms-4.17-amd64 of the pinned build (skipped, with the reason, when it cannot be fetched)."""
    return load_xen_syms(debian_file(xen_syms))


@pytest.fixture(scope="module")
def payloads(xen) -> Path:
    """Xen's test payloads built against it."""
    return xen_tests_for(xen.path)


def _text_pte(session: Session, address: int) -> int:
    """The L1 entry Xen's own page tables map `address` (in the image's first 2 MiB) with."""
    machine = session.machine
    l2 = machine.address("l2_xenmap")
    l1 = machine.memory.read_u64(l2 + 8 * ((address >> 21) & 511)) & ~(PAGE - 1) & (2**52 - 1)
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
    assert not _text_pte(session, xen.address("xen_extra_version")) & WRITABLE
    assert session.command(parse(["revert", "xen_hello_world"])).exit_code == 0
    assert {v.extra for v in session.versions()} == {PINNED_BUILD.extra} and session.text_unchanged()
    assert session.command(parse(["unload", "xen_hello_world"])).exit_code == 0
    assert session.command(parse(["list"])).text == "Nothing to list\n"


def test_the_xen_engine_needs_a_real_image_said_in_one_line():
    """engine = "xen" without xen_syms is a ConfigError naming what is missing."""
    with pytest.raises(ConfigError, match="xen engine runs a real Xen image"):
        Session(vcpus=2, seed=1, engine="xen")


def test_xens_test_sequence_prints_the_same_tool_output_on_both_engines(xen, payloads):
    """Every operator command of xen_test_sequence.toml prints the same stdout and stderr, Xen's (XEN) lines
    included, and exits the same on the xen engine as on the controller engine, and both pass (the controller's
    own remarks, its (testbed) lines, aside)."""
    def outputs(engine: str) -> list[tuple[str | None, list[str]]]:
        result = run_scenario(load_scenario(SEQUENCE, vcpus=2, engine=engine))
        assert result.ok, engine
        return [(step.rc, [line for line in step.output.splitlines() if not line.startswith(TESTBED_LINE)])
                for step in result.steps if step.kind == "livepatch"]
    controller, xen_engine = outputs("controller"), outputs("xen")
    assert len(controller) == 19 and xen_engine == controller


def test_a_preempted_vcpu_makes_xen_time_out_with_its_own_line_and_patch_nothing(xen, payloads):
    """1 ms timeout, vCPU 1 preempted for 5 ms: Xen prints "Timed out on semaphore", the apply is EBUSY, every
    vCPU still runs ".7"; once vCPU 1 runs again the apply succeeds (the scenario checks each)."""
    assert run_scenario(load_scenario(TIMEOUT)).ok


@pytest.mark.long
@pytest.mark.parametrize("vcpus", [8, 72])
def test_xens_test_sequence_passes_on_many_vcpus(xen, payloads, vcpus):
    """The sequence on 8 and 72 vCPUs of Xen's own rendezvous."""
    assert run_scenario(load_scenario(SEQUENCE, vcpus=vcpus, engine="xen")).ok
