"""`xsplice-emu payload check`: Xen's verdict at upload and at a trial apply, and each patch site (issue 11)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from helpers import ROOT, debian_file

from xsplice_emu.authoring.xen_tests import xen_tests_for
from xsplice_emu.cli import main
from xsplice_emu.image import load_image
from xsplice_emu.livepatch.unsafe import unsafe_functions
from xsplice_emu.provision.debian import xen_syms as xen_syms_path
from xsplice_emu.provision.debian_builds import PINNED_BUILD


def _check(path) -> tuple[int, list[str]]:
    result = CliRunner().invoke(main, ["payload", "check", str(path)])
    return result.exit_code, result.output.splitlines()


def _firmware_bytes(image, address: int, length: int) -> bytes:
    for segment in image.segments:
        if segment.address <= address < segment.address + len(segment.data):
            offset = address - segment.address
            return segment.data[offset:offset + length]
    raise AssertionError(f"{address:#x} is in no segment")


def test_a_good_payload_applies_and_changes_what_the_vcpu_computes(payloads, image):
    """xen_hello_world: accepted, a jmp over xen_extra_version's first instruction, and the string it returns."""
    code, lines = _check(payloads / "xen_hello_world.livepatch")
    target = image.address("xen_extra_version")
    assert code == 0, lines
    assert "  upload   accepted (CHECKED)" in lines
    assert f"  xen_extra_version: jmp patch at {target:#x} <xen_extra_version>" in lines
    after = next(line for line in lines if line.startswith("    after"))
    assert after.split()[1:3] == [f"{target:#x}", "jmp"]
    assert any(line.startswith("    reach  rel32 reaches") for line in lines)
    assert "  apply    rc 0 on 1 vCPU" in lines
    assert "  xen_extra_version  '-unstable' -> 'Hello World'" in lines
    assert lines[-1] == "verdict: OK"


def test_an_unmet_expectation_shows_the_real_bytes_and_the_refusal(payloads, image):
    """xen_expectations_fail: the bytes in memory against the expected ones, and apply's -EINVAL; exit 1."""
    code, lines = _check(payloads / "xen_expectations_fail.livepatch")
    found = _firmware_bytes(image, image.address("xen_extra_version"), 6).hex(" ")
    assert code == 1
    assert f"    expect xen_extra_version starts with {found}, expected de ad c0 de ba be" in lines
    assert any(line.startswith("  apply    refused: -EINVAL:") for line in lines)
    assert "  xen_extra_version  '-unstable'" in lines  # nothing changed
    assert lines[-1] == "verdict: NOT OK"


def test_a_nop_patch_shows_the_nops_and_the_new_result(payloads, image):
    """xen_nop: NOPs over xen_minor_version's `mov eax, 7`, so it returns whatever rax held."""
    code, lines = _check(payloads / "xen_nop.livepatch")
    target = image.address("xen_minor_version")
    assert code == 0, lines
    assert f"    before {target:#x}  mov eax, 7" in lines
    assert next(line for line in lines if line.startswith("    after")).split()[2] == "nop"
    assert not any("reach" in line for line in lines)  # NOPs jump nowhere
    minor = next(line for line in lines if line.startswith("  xen_minor_version  "))
    assert minor.startswith("  xen_minor_version  7 -> ")


def test_a_target_on_the_nmi_path_is_refused_and_still_shown(payloads, image):
    """do_nmi: -EPERM at upload, the site with why it is unsafe, no apply; exit 1."""
    code, lines = _check(payloads / "bad" / "do_nmi.livepatch")
    assert code == 1
    assert lines[1] == "  upload   refused: -EPERM: do_nmi: refusing to patch do_nmi: it handles NMIs"
    assert f"  do_nmi: jmp patch at {image.address('do_nmi'):#x} <do_nmi>" in lines
    assert "    UNSAFE it handles NMIs" in lines
    assert "  apply    not tried (the upload was refused)" in lines


@pytest.mark.parametrize(("file", "errno_name"), [
    ("bad_reloc", "EOPNOTSUPP"), ("unknown_symbol", "ENOENT"), ("xen_no_xen_buildid", "EINVAL")])
def test_a_payload_xen_refuses_at_upload_gets_its_errno(payloads, file, errno_name):
    code, lines = _check(payloads / "bad" / f"{file}.livepatch")
    assert code == 1
    assert lines[1].startswith(f"  upload   refused: -{errno_name}: {file}:")
    assert lines[2:] == ["  apply    not tried (the upload was refused)", "verdict: NOT OK"]


# -- against Debian's real Xen 4.17 image, mapped at its link addresses ----------------------------------------------

@pytest.fixture(scope="session")
def xen_syms():
    """Debian's xen-syms-4.17-amd64 of the pinned build."""
    return debian_file(xen_syms_path)


def _build_against(xen_syms, source: str, output) -> None:
    result = CliRunner().invoke(main, ["payload", "build", str(ROOT / "payloads" / "src" / f"{source}.c"),
                                       "--against", str(xen_syms), "-o", str(output)])
    assert result.exit_code == 0, result.output
    assert f"depends {PINNED_BUILD.build_id})" in result.output


def _check_against(xen_syms, path, *options: str) -> tuple[int, list[str]]:
    result = CliRunner().invoke(main, ["payload", "check", str(path), "--xen-syms", str(xen_syms), *options])
    return result.exit_code, result.output.splitlines()


@pytest.mark.slow
def test_a_payload_built_against_real_xen_patches_its_real_xen_extra_version(xen_syms, tmp_path):
    """hello world built --against xen-syms: accepted; the site is the real function's `lea rax, [rip + ..]`,
    the jump goes to where Xen 4.17 puts payloads (the 2 MB boundary after its image), in rel32 reach; the trial
    apply makes the real xen_extra_version, called on the vCPU, give "Hello World" instead of the table's."""
    _build_against(xen_syms, "xen_hello_world", tmp_path / "hello.livepatch")
    code, lines = _check_against(xen_syms, tmp_path / "hello.livepatch")
    xen = load_image(xen_syms)
    target = xen.address("xen_extra_version")
    assert code == 0, lines
    assert target >> 32 == 0xffff82d0  # the real link address, not the physical one
    assert "  upload   accepted (CHECKED)" in lines
    assert f"  xen_extra_version: jmp patch at {target:#x} <xen_extra_version>" in lines
    assert next(line for line in lines if line.startswith("    before")).startswith(
        f"    before {target:#x}  lea rax, [rip + ")
    payload_at = -(-xen.end // (2 << 20)) * (2 << 20)
    assert f"    after  {target:#x}  jmp {payload_at:#x}" in lines
    assert f"    reach  rel32 reaches {payload_at:#x}" in lines
    assert lines[-5:] == ["  apply    rc 0 on 1 vCPU", "  xen_major_version  4", "  xen_minor_version  17",
                          f"  xen_extra_version  '{PINNED_BUILD.extra}' -> 'Hello World'",
                          "verdict: OK, 1 warning (xen_extra_version: it is reached from apply_payload)"]


@pytest.mark.slow
def test_expectations_built_against_real_xen_hold_on_its_real_bytes(xen_syms, tmp_path):
    _build_against(xen_syms, "xen_expectations", tmp_path / "expect.livepatch")
    code, lines = _check_against(xen_syms, tmp_path / "expect.livepatch")
    assert code == 0, lines
    assert "    expect met" in lines


@pytest.mark.slow
def test_real_xen_refuses_a_payload_built_for_the_firmware(xen_syms, payloads):
    """Its xen_depends is the firmware's build-id: -EINVAL, naming the real one."""
    code, lines = _check_against(xen_syms, payloads / "xen_hello_world.livepatch")
    assert code == 1
    assert lines[1].startswith("  upload   refused: -EINVAL: xen_hello_world: .livepatch.xen_depends ")
    assert lines[1].endswith(f"is not the hypervisor's build-id {load_image(xen_syms).build_id.hex()}")


@pytest.mark.slow
def test_real_xens_do_nmi_is_accepted_as_xen_would_with_a_warning(xen_syms, tmp_path):
    """Xen 4.17 does not refuse an NMI-path target (the testbed's firmware does): the verdict is Xen's, the
    hazard a warning on the site, counted in the verdict line."""
    _build_against(xen_syms, "bad/do_nmi", tmp_path / "nmi.livepatch")
    code, lines = _check_against(xen_syms, tmp_path / "nmi.livepatch")
    assert code == 0, lines
    assert lines[1] == "  upload   accepted (CHECKED)"
    assert "    UNSAFE it handles NMIs (a warning: Xen accepts it)" in lines
    assert "  apply    rc 0 on 1 vCPU" in lines  # the machine's NMIs are the firmware's: the real do_nmi never runs
    assert lines[-1] == "verdict: OK, 1 warning (do_nmi: it handles NMIs)"  # one verdict, the warning counted in it


@pytest.mark.slow
def test_on_the_xen_engine_the_upload_and_trial_apply_are_xens_own(xen_syms):
    """--engine xen: hello world is uploaded and applied by the real image's own livepatch code (rc 0, its
    xen_extra_version then says "Hello World"); a record of version 3 is refused with Xen's own printk line."""
    built = xen_tests_for(xen_syms)
    code, lines = _check_against(xen_syms, built / "xen_hello_world.livepatch", "--engine", "xen")
    assert code == 0, lines
    assert lines[-4:] == ["  xen_major_version  4", "  xen_minor_version  17",
                          f"  xen_extra_version  '{PINNED_BUILD.extra}' -> 'Hello World'",
                          "verdict: OK, 1 warning (xen_extra_version: it is reached from apply_payload)"]
    code, lines = _check_against(xen_syms, built / "bad" / "bad_version.livepatch", "--engine", "xen")
    assert code == 1
    assert lines[1:] == ["  upload   refused: -EOPNOTSUPP: livepatch: bad_version: Wrong version (3). Expected 2",
                         "  apply    not tried (the upload was refused)", "verdict: NOT OK"]


def test_the_nmi_path_of_real_xen_follows_its_calls(xen_syms):
    """do_nmi's direct callees in the real image (printk) are on its NMI path: high-half call targets count."""
    xen = load_image(xen_syms)
    unsafe = unsafe_functions(xen, xen.read)
    assert unsafe[xen.address("do_nmi")] == "it handles NMIs"
    assert unsafe[xen.address("printk")] == "it is reached from do_nmi"
    assert xen.address("do_domctl") not in unsafe


def test_the_nmi_path_stops_where_xen_dies(xen_syms):
    """What do_nmi reaches only through fatal_trap (show_execution_state -> print_xen_info -> xen_extra_version) is
    not on its NMI path: the machine is dying there."""
    xen = load_image(xen_syms)
    unsafe = unsafe_functions(xen, xen.read)
    assert xen.address("fatal_trap") not in unsafe
    assert unsafe[xen.address("nmi_watchdog_tick")] == "it is reached from do_nmi"
    assert unsafe[xen.address("xen_extra_version")] == "it is reached from apply_payload"


def test_a_missing_xen_image_is_one_line_naming_it(payloads, tmp_path):
    result = CliRunner().invoke(main, ["payload", "check", str(payloads / "xen_hello_world.livepatch"),
                                       "--xen-syms", str(tmp_path / "xen-syms")])
    assert result.exit_code == 2
    assert result.output == f"error: {tmp_path / 'xen-syms'}: cannot read the Xen image: No such file or directory\n"
