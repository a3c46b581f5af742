"""Historical upstream livepatch bugs, reintroduced onto Xen 4.17.7 by patches/xen-bugs and built from source
(`xsplice-emu xen build`), each caught by its scenario in scenarios/bugs, which passes on 4.17.7 itself.

Builds take minutes: these run only with --xen-build (`make xen-bugs`). The source is the tree XEN_SOURCE names,
else Debian's source package of the pinned build (skipped, saying why, when it cannot be fetched)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from helpers import ROOT

from xsplice_emu.authoring.build import build_payload
from xsplice_emu.engines.xen.layout import XEN_4_17_X86, struct_offsets
from xsplice_emu.errors import ToolchainError
from xsplice_emu.explore.campaign import Campaign, explore
from xsplice_emu.image import load_image
from xsplice_emu.provision.xen_build import build_xen
from xsplice_emu.scenario import load_scenario, run_scenario

UNDER_TEST = ROOT / "payloads" / "build-xen-bugs"
"""The image the scenarios of scenarios/bugs run, and their payloads built against it."""
BUG_PAYLOADS = ROOT / "payloads" / "xen-bugs"
BUGS = ROOT / "patches" / "xen-bugs"
SCENARIOS = ROOT / "scenarios" / "bugs"
EXPLORE_RUNS = 20
"""Runs of each exploration (the issue asks for each bug to be found within 1,000)."""

pytestmark = pytest.mark.skipif("not config.getoption('--xen-build')", reason="builds Xen (minutes): --xen-build")


def _built(*patches: Path) -> Path:
    """Xen 4.17.7 with `patches`, from XEN_SOURCE or Debian's source (a skip saying why it cannot be fetched)."""
    source = os.environ.get("XEN_SOURCE")
    print(f"xen build of {source or 'Debian source'} with {[patch.name for patch in patches]} (minutes, once)")
    try:
        return build_xen(source=Path(source) if source else None, debian=None if source else "debian",
                         patches=patches)
    except ToolchainError as exc:
        pytest.skip(str(exc))


def _put_under_test(xen_syms: Path) -> None:
    """`xen_syms` and the scenarios' payloads built against it into payloads/build-xen-bugs."""
    shutil.rmtree(UNDER_TEST, ignore_errors=True)
    UNDER_TEST.mkdir(parents=True)
    shutil.copy2(xen_syms, UNDER_TEST / "xen-syms")
    for source in [*sorted(BUG_PAYLOADS.glob("*.c")), ROOT / "payloads" / "src" / "xen_replace_world.c"]:
        build_payload(source, UNDER_TEST / f"{source.stem}.livepatch", firmware=UNDER_TEST / "xen-syms")


def _run(name: str):
    return run_scenario(load_scenario(SCENARIOS / f"{name}.toml"))


def _explored(name: str, runs: int = EXPLORE_RUNS) -> int:
    """How many of `runs` seeded random schedules of the scenario fail: explore, told nothing of the bug (each test
    puts another image at the same path: explore boots it, not the machine it booted for the last one)."""
    outcomes = explore(Campaign.of(load_scenario(SCENARIOS / f"{name}.toml"), "random", 1), runs, jobs=1).outcomes
    return sum(not outcome.passed for outcome in outcomes)


@pytest.fixture(scope="module")
def xen_4_17_7() -> Path:
    return _built()


def test_the_self_built_images_dwarf_gives_the_offsets_read_from_debians_disassembly(xen_4_17_7):
    """The structure offsets read from the DWARF of 4.17.7 built from source are those of Debian's 4.17.7 table."""
    assert struct_offsets(load_image(xen_4_17_7, what="Xen image")) == XEN_4_17_X86


def test_replace_checking_the_wrong_rc_panics_xen():
    """0dd9268808 reverted: REPLACE over a payload whose revert hook refuses makes Xen panic "partially reverted
    payload" instead of failing with EINVAL; explore, told nothing, finds it."""
    _put_under_test(_built(BUGS / "replace_rc.patch"))
    result = _run("replace_rc")
    failed = [step for step in result.steps if not step.ok]
    assert failed and failed[0].command == "replace xen_replace_world"
    assert "livepatch: partially reverted payload 'revert_refused'!" in "\n".join(result.session.machine.log)
    assert _explored("replace_rc") > 0


def test_a_nop_patch_ignoring_the_endbr64_offset_breaks_the_function():
    """8a87b9a0fb reverted: the NOPs run 4 bytes past the ud2, over the mov: the call no longer returns -EIO, Xen
    takes an invalid opcode at vtd_flush_context_noop+0xa through its own IDT and panics; explore, told nothing,
    finds it."""
    _put_under_test(_built(BUGS / "nop_endbr.patch"))
    result = _run("nop_endbr")
    failed = [step for step in result.steps if not step.ok]
    assert failed and failed[0].kind == "call"
    assert "Xen panicked: FATAL TRAP: vector = 6 (invalid opcode)" in (failed[0].error or "")
    assert any("vtd_flush_context_noop+0xa/" in line for line in result.session.machine.log)
    assert _explored("nop_endbr") > 0


def test_alternatives_checks_that_cannot_fail_let_a_payload_write_xens_text():
    """e74360e4ba reverted: the upload of a payload whose alternative aims at xen_extra_version is not refused:
    Xen's text_poke writes its own read-only text and page-faults."""
    _put_under_test(_built(BUGS / "altinstr_checks.patch"))
    result = _run("altinstr_checks")
    failed = [step for step in result.steps if not step.ok]
    assert failed and failed[0].command.startswith("upload alt_outside")
    assert "#PF page fault" in (failed[0].error or "") and "alternative.c#text_poke" in (failed[0].error or "")


def test_every_bug_scenario_passes_on_xen_4_17_7(xen_4_17_7):
    """On 4.17.7 as released, REPLACE fails with EINVAL, the NOP patch makes the function return -EIO and an
    alternative aimed at Xen's text is refused at upload (run
    last: payloads/build-xen-bugs is left holding 4.17.7, where the scenarios pass by hand)."""
    _put_under_test(xen_4_17_7)
    for name in ("replace_rc", "nop_endbr", "altinstr_checks"):
        result = _run(name)
        assert result.ok, [(step.command, step.error) for step in result.steps if not step.ok]
    assert _explored("replace_rc") == _explored("nop_endbr") == 0
