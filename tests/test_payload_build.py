"""Building livepatch payloads from C: the notes, build-ids, records, errors and the CLI."""

from __future__ import annotations

import io
import re
import shutil
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner
from elftools.elf.constants import SH_FLAGS
from elftools.elf.descriptions import describe_reloc_type
from elftools.elf.elffile import ELFFile

from xsplice_emu import ToolchainError, builtin_firmware, load_image
from xsplice_emu.authoring import build
from xsplice_emu.authoring.build import build_payload
from xsplice_emu.cli import main

SRC = Path(__file__).resolve().parent.parent / "payloads" / "src"
SUPPORTED_RELOCATIONS = {"R_X86_64_NONE", "R_X86_64_64", "R_X86_64_PC32", "R_X86_64_PLT32"}
RECORD = struct.Struct("<QQQIIB")  # name, new_addr, old_addr, new_size, old_size, version


@pytest.fixture(scope="module")
def firmware() -> Path:
    return builtin_firmware()


@pytest.fixture(scope="module")
def built(tmp_path_factory, firmware) -> dict[str, Path]:
    """Every payload of payloads/src built once, bye_world on top of hello_world."""
    out = tmp_path_factory.mktemp("payloads")
    hello = build_payload(SRC / "xen_hello_world.c", out / "xen_hello_world.livepatch", firmware=firmware)
    paths = {"xen_hello_world": hello}
    for source in sorted(SRC.glob("*.c")):
        if source.stem not in paths:
            depends = paths["xen_hello_world"] if source.stem == "xen_bye_world" else None
            paths[source.stem] = build_payload(source, out / f"{source.stem}.livepatch", firmware=firmware,
                                               depends=depends)
    return paths


def _elf(path: Path) -> ELFFile:
    return ELFFile(io.BytesIO(path.read_bytes()))


def _note(path: Path, section: str) -> bytes | None:
    found = _elf(path).get_section_by_name(section)
    if found is None:
        return None
    (note,) = found.iter_notes()
    assert note["n_type"] == "NT_GNU_BUILD_ID" and note["n_name"] == "GNU"
    return bytes.fromhex(note["n_desc"])


def _record(path: Path) -> bytes:
    return _elf(path).get_section_by_name(".livepatch.funcs").data()


def _symbol_size(path: Path, name: str) -> int:
    (sym,) = _elf(path).get_section_by_name(".symtab").get_symbol_by_name(name)
    return sym["st_size"]


def test_hello_world_is_a_relocatable_payload_depending_on_the_firmware(built, firmware):
    """hello_world is an ET_REL ELF with its own build-id whose depends notes hold the firmware's build-id."""
    hello = built["xen_hello_world"]
    assert _elf(hello)["e_type"] == "ET_REL"
    assert len(_note(hello, ".note.gnu.build-id")) == 20
    firmware_id = load_image(firmware).build_id
    assert _note(hello, ".livepatch.depends") == firmware_id
    assert _note(hello, ".livepatch.xen_depends") == firmware_id


def test_bye_world_depends_on_hello_world(built):
    """bye_world's .livepatch.depends is hello_world's own build-id."""
    assert _note(built["xen_bye_world"], ".livepatch.depends") == _note(built["xen_hello_world"], ".note.gnu.build-id")


def test_no_xen_depends_leaves_the_section_out(tmp_path, firmware):
    """xen_depends=False builds a payload without .livepatch.xen_depends but still with .livepatch.depends."""
    out = build_payload(SRC / "xen_nop.c", tmp_path / "nop.livepatch", firmware=firmware, xen_depends=False)
    assert _elf(out).get_section_by_name(".livepatch.xen_depends") is None
    assert _note(out, ".livepatch.depends") == load_image(firmware).build_id


def test_missing_gcc_is_one_clear_error(tmp_path, firmware, monkeypatch):
    """With no gcc on PATH the build fails with one line naming gcc and its package."""
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(ToolchainError) as caught:
        build_payload(SRC / "xen_hello_world.c", tmp_path / "out.livepatch", firmware=firmware)
    assert str(caught.value) == "cannot build the payload: gcc is not installed (Debian: apt-get install gcc)"


def test_c_syntax_error_reports_gccs_error_line(tmp_path, firmware):
    """A C syntax error becomes a ToolchainError quoting gcc's first error line."""
    source = tmp_path / "broken.c"
    source.write_text("#include <xsplice_payload.h>\nint broken( {\n")
    with pytest.raises(ToolchainError) as caught:
        build_payload(source, tmp_path / "broken.livepatch", firmware=firmware)
    message = str(caught.value)
    assert "broken.c: not a C source that compiles: gcc failed: broken.c:2:" in message
    assert "error:" in message and "\n" not in message
    assert not (tmp_path / "broken.livepatch").exists()


def test_every_payload_uses_only_relocations_the_loader_does(built):
    """Xen's test payloads carry only R_X86_64_NONE, _64, _PC32 and _PLT32 relocations."""
    for name, path in built.items():
        elf = _elf(path)
        for section in elf.iter_sections():
            if section["sh_type"] == "SHT_RELA":
                kinds = {describe_reloc_type(r["r_info_type"], elf) for r in section.iter_relocations()}
                assert kinds <= SUPPORTED_RELOCATIONS, f"{name}: {section.name}: {kinds}"


def test_records_carry_the_real_function_sizes(built, firmware):
    """hello_world's record has new_size = its function's size and old_size = the firmware function's size."""
    hello = built["xen_hello_world"]
    _, _, _, new_size, old_size, version = RECORD.unpack_from(_record(hello))
    assert version == 2
    assert new_size == _symbol_size(hello, "xen_hello_world") > 0
    assert old_size == load_image(firmware).symbol("xen_extra_version").size >= 5


def test_nop_record_nops_all_but_the_ret(built, firmware):
    """xen_nop is a NOP patch (new_addr 0) of all of xen_minor_version but its 1-byte ret."""
    _, new_addr, _, new_size, old_size, _ = RECORD.unpack_from(_record(built["xen_nop"]))
    assert new_addr == 0
    assert old_size == load_image(firmware).symbol("xen_minor_version").size
    assert new_size == old_size - 1


def test_expectation_holds_the_firmware_bytes(built, firmware):
    """xen_expectations expects exactly the first bytes of xen_extra_version in this firmware; _fail does not."""
    image = load_image(firmware)
    target = image.symbol("xen_extra_version")
    (text,) = [s for s in image.segments if s.address <= target.address < s.address + len(s.data)]
    actual = text.data[target.address - text.address :][: target.size]
    for name, matches in (("xen_expectations", True), ("xen_expectations_fail", False)):
        flags, data = struct.unpack_from("<B31s", _record(built[name]), 72)
        enabled, length = flags & 1, (flags >> 1) & 0x1F
        assert enabled and length > 0
        assert (data[:length] == actual[:length]) is matches, name


def test_only_payloads_with_data_have_writable_sections(built):
    """nop and replace_world write nothing but their records (safe to re-apply); hello_world has .data."""
    def writable(path):
        return {
            s.name for s in _elf(path).iter_sections()
            if s["sh_flags"] & SH_FLAGS.SHF_ALLOC and s["sh_flags"] & SH_FLAGS.SHF_WRITE and s["sh_size"]
        }
    assert writable(built["xen_nop"]) == {".livepatch.funcs"}
    assert writable(built["xen_replace_world"]) == {".livepatch.funcs"}
    assert ".data" in writable(built["xen_hello_world"])


def test_build_is_reproducible(tmp_path, firmware):
    """The same source built from two places gives the same build-id."""
    copy = tmp_path / "elsewhere" / "xen_hello_world.c"
    copy.parent.mkdir()
    shutil.copy(SRC / "xen_hello_world.c", copy)
    first = build_payload(SRC / "xen_hello_world.c", tmp_path / "a.livepatch", firmware=firmware)
    second = build_payload(copy, tmp_path / "b.livepatch", firmware=firmware)
    assert _note(first, ".note.gnu.build-id") == _note(second, ".note.gnu.build-id")


def test_cli_payload_build_prints_one_line(tmp_path, firmware, monkeypatch):
    """`payload build` writes SRC's stem + .livepatch here and prints its build-id and dependency."""
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["payload", "build", str(SRC / "xen_replace_world.c"),
                                       "--firmware", str(firmware)])
    assert result.exit_code == 0, result.output
    out = tmp_path / "xen_replace_world.livepatch"
    own = _note(out, ".note.gnu.build-id").hex()
    depends = load_image(firmware).build_id.hex()
    assert result.output == f"built xen_replace_world.livepatch (build-id {own}, depends {depends})\n"


def test_cli_payload_build_depends_on_another_payload(tmp_path, built):
    """`--depends OTHER.livepatch -o OUT` records OTHER's build-id; the default firmware is the built-in one."""
    hello = built["xen_hello_world"]
    out = tmp_path / "bye.livepatch"
    result = CliRunner().invoke(main, ["payload", "build", str(SRC / "xen_bye_world.c"), "-o", str(out),
                                       "--depends", str(hello)])
    assert result.exit_code == 0, result.output
    hello_id = _note(hello, ".note.gnu.build-id").hex()
    expected = rf"built {re.escape(str(out))} \(build-id [0-9a-f]{{40}}, depends {hello_id}\)\n"
    assert re.fullmatch(expected, result.output)


def test_cli_payload_build_names_the_missing_program(tmp_path, firmware, monkeypatch):
    """With gcc but no ld on PATH, `payload build` says ld is missing: one line, exit 1, no file."""
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "gcc").symlink_to(shutil.which("gcc"))
    monkeypatch.setenv("PATH", str(tools))
    out = tmp_path / "hello.livepatch"
    result = CliRunner().invoke(main, ["payload", "build", str(SRC / "xen_hello_world.c"), "-o", str(out),
                                       "--firmware", str(firmware)])
    assert result.exit_code == 1
    assert result.output == "error: cannot build the payload: ld is not installed (Debian: apt-get install binutils)\n"
    assert not out.exists()


def test_building_a_file_that_is_not_c_names_the_compilers_first_error(tmp_path):
    """`payload build /etc/passwd`: not a C source that compiles, with gcc's first error line; exit 1."""
    result = CliRunner().invoke(main, ["payload", "build", "/etc/passwd", "-o", str(tmp_path / "x.livepatch")])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: /etc/passwd: not a C source that compiles: gcc failed: passwd:")
    assert result.stderr.count("\n") == 1


def test_building_into_a_missing_directory_is_refused_and_creates_nothing(tmp_path):
    """`payload build -o MISSING/DIR/x.livepatch`: refused with exit 2; the directory is not made."""
    result = CliRunner().invoke(main, ["payload", "build", str(SRC / "xen_hello_world.c"),
                                       "-o", str(tmp_path / "missing" / "x.livepatch")])
    assert result.exit_code == 2
    assert f"no directory {tmp_path / 'missing'}" in result.stderr
    assert not (tmp_path / "missing").exists()


def test_a_source_that_never_finishes_compiling_is_stopped(tmp_path, monkeypatch):
    """A source that includes /dev/zero would have gcc read for ever: the step is stopped after
    BUILD_STEP_SECONDS (here 1) and the build fails in one line, exit 1, writing nothing."""
    monkeypatch.setattr(build, "BUILD_STEP_SECONDS", 1)
    source = tmp_path / f"endless_{tmp_path.name}.c"  # (a name no other process's command line holds)
    source.write_text('#include "/dev/zero"\n')
    out = tmp_path / "endless.livepatch"
    result = CliRunner().invoke(main, ["payload", "build", str(source), "-o", str(out)])
    assert result.exit_code == 1, result.output
    assert result.stderr == (f"error: {source}: not a C source that compiles: gcc did not finish in 1 s (stopped): "
                             "does the source read a device or a pipe?\n")
    assert not out.exists()
    assert not _processes_naming(source.name), "gcc's cc1 was left running"


def _processes_naming(name: str) -> list[int]:
    """The processes whose command line holds `name` (the build compiles a copy of the source by its name)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and name.encode() in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:  # gone meanwhile
            pass
    return found
