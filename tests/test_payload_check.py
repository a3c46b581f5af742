"""`xsplice-emu payload check`: Xen's verdict at upload and at a trial apply, and each patch site (issue 11)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from xsplice_emu.cli import main


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
