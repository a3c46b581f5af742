"""`xsplice-emu payload inspect`: what a payload holds, as a person reads it."""

from __future__ import annotations

import io
import random
import struct

from click.testing import CliRunner
from elftools.elf.elffile import ELFFile
from fuzzing import BASES, mutate
from helpers import PAYLOADS

from xsplice_emu import LivepatchError, builtin_firmware, load_image
from xsplice_emu.authoring.build import payload_build_id
from xsplice_emu.authoring.inspection import inspect_payload
from xsplice_emu.cli import main

SH_INFO = 44
"""Offset of sh_info in an ELF64 section header."""


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


def _with_section_field(data: bytes, section: str, offset: int, value: int) -> bytes:
    """`data` with the u32 at `offset` of `section`'s header set to `value`."""
    elf = ELFFile(io.BytesIO(data))
    index = next(i for i, s in enumerate(elf.iter_sections()) if s.name == section)
    out = bytearray(data)
    struct.pack_into("<I", out, elf["e_shoff"] + index * elf["e_shentsize"] + offset, value)
    return bytes(out)


def test_inspect_shows_a_payload_the_loader_accepts_whose_relocations_name_no_section(payloads, tmp_path):
    """`.rela.text` sh_info 0x1000 (no such section; the loader accepts it): inspect lists it, exit 0."""
    path = tmp_path / "bad_info.livepatch"
    path.write_bytes(_with_section_field((PAYLOADS / "xen_expectations.livepatch").read_bytes(), ".rela.text",
                                         SH_INFO, 0x1000))
    assert CliRunner().invoke(main, ["livepatch", "--vcpus", "2", "upload", "p", str(path)]).exit_code == 0
    result = CliRunner().invoke(main, ["payload", "inspect", str(path)], env={"COLUMNS": "160"})
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    assert "(section 4096)" in result.output


def test_inspect_never_fails_on_a_mutant_the_loader_accepts(payloads):
    """300 mutated payloads (one has a RELR section pyelftools cannot read): each is refused or inspected."""
    image, rng = load_image(builtin_firmware()), random.Random(5)
    bases = [(PAYLOADS / f"{name}.livepatch").read_bytes() for name in BASES]
    inspected = 0
    for _ in range(300):
        try:
            report = inspect_payload("m", mutate(rng.choice(bases), rng), image)
        except LivepatchError:
            continue
        inspected += report.loaded is not None
    assert inspected > 30
