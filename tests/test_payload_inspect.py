"""`xsplice-emu payload inspect`: what a payload holds, as a person reads it."""

from __future__ import annotations

from click.testing import CliRunner
from helpers import PAYLOADS

from xsplice_emu import builtin_firmware, load_image
from xsplice_emu.cli import main
from xsplice_emu.livepatch.build import payload_build_id


def _inspect(payloads, file):
    return CliRunner().invoke(main, ["payload", "inspect", str(payloads / file)], env={"COLUMNS": "160"})


def test_inspect_shows_records_buildids_and_new_code(payloads):
    """hello_world: its build-id, a dependency on the hypervisor, the jmp record and the new function's code."""
    result = _inspect(payloads, "xen_hello_world.livepatch")
    assert result.exit_code == 0, result.output
    firmware_id = load_image(builtin_firmware()).build_id.hex()
    assert f"build-id     {payload_build_id(PAYLOADS / 'xen_hello_world.livepatch').hex()}" in result.output
    assert f"depends      {firmware_id} (the hypervisor)" in result.output
    assert "(matches the firmware)" in result.output
    assert "<xen_extra_version>" in result.output and "jmp" in result.output
    assert "new code for xen_extra_version:" in result.output
    assert "lea rax, [rip + " in result.output and "ret" in result.output
    assert "hooks: load x2, unload x3" in result.output
    assert "R_X86_64_PLT32" in result.output and "printk" in result.output


def test_inspect_names_bye_worlds_dependency_on_another_payload(payloads):
    """bye_world depends on hello_world's build-id, shown as another payload's."""
    result = _inspect(payloads, "xen_bye_world.livepatch")
    hello = payload_build_id(PAYLOADS / "xen_hello_world.livepatch").hex()
    assert f"depends      {hello} (another payload)" in result.output


def test_inspect_nop_record(payloads):
    """The NOP payload shows a NOP record with no new code."""
    result = _inspect(payloads, "xen_nop.livepatch")
    assert "│ xen_minor_version │" in result.output and "NOP" in result.output
    assert "new code for" not in result.output


def test_inspect_of_a_bad_payload_is_one_line(payloads):
    """A payload the loader refuses gives its one-line reason and exit 1."""
    result = _inspect(payloads, "bad/wx_section.livepatch")
    assert result.exit_code == 1
    assert result.output.strip() == ("error: wx_section: section .text.wx (index 7) is writable and executable "
                                     "(EOPNOTSUPP)")


def test_inspect_in_80_columns_keeps_function_names_whole(payloads):
    """Piped or at 80 columns: the function table leaves out the least useful columns, names stay whole."""
    result = CliRunner().invoke(main, ["payload", "inspect", str(payloads / "xen_hello_world.livepatch")])
    assert result.exit_code == 0
    assert "│ xen_extra_version │ 0x" in result.stdout and "…" not in result.stdout
    assert "left out" in result.stdout
