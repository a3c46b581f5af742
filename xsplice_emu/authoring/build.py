"""Building a livepatch payload from C: gcc, then `ld -r` with the build-id notes.

What Xen's test Makefile (xen/test/livepatch) does, as one function:

1. Generate `<xsplice_firmware.h>` from the firmware ELF the payload is built
   against: the size and leading bytes of each of its functions, so that a
   record's `old_size` and an expectation's bytes come from that very image
   (Xen's `config.h` / `expect_config.h`).
2. Compile once with `XSPLICE_SIZING_PASS` to measure the payload's own
   functions, then again with their sizes (`XSPLICE_NEW_SIZE(fn)`, Xen's
   `NEW_CODE_SZ`).
3. `ld -r --build-id=sha1` the object with a note object holding
   `.livepatch.depends` (the build-id the payload applies on top of: the
   firmware's, or another payload's) and `.livepatch.xen_depends` (the
   firmware's build-id; optional).

Payloads compile with `-fpic` and hidden visibility (set by
`xsplice_payload.h`), as Xen's do: references become RIP-relative
(R_X86_64_PC32 / PLT32) rather than R_X86_64_32 / 32S absolutes or GOT
entries: like Xen's, the loader takes only R_X86_64_NONE, 64, PC32 and PLT32
and refuses every other type with EOPNOTSUPP.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import tempfile
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import NoteSection, SymbolTableSection

from ..arch import Architecture
from ..errors import ConfigError, ToolchainError
from ..files import TEXT_LIMIT, check_destination, read_file
from ..image import Image, load_image
from ..livepatch.abi import BUILD_ID_NOTE, DEPENDS, EXPECT_MAX, NT_GNU_BUILD_ID, XEN_DEPENDS
from ..provision.sources import sources_dir
from ..provision.toolchain import Toolchain, toolchain

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
BUILD_STEP_SECONDS = 120
"""Host seconds one step of a payload's build (a compile, a link) may take: a hello world's whole build takes
under a second, and a source that includes a device (`#include "/dev/zero"`) would make gcc read for ever."""


def build_payload(
    source: str | Path,
    output: str | Path,
    *,
    firmware: str | Path,
    depends: str | Path | None = None,
    xen_depends: bool = True,
    include_dir: str | Path | None = None,
) -> Path:
    """Compile `source` into the payload `output` for `firmware`; return `output`.

    `.livepatch.depends` holds the firmware's build-id, or that of the payload
    `depends` when given; `.livepatch.xen_depends` the firmware's build-id
    unless `xen_depends` is false. `include_dir` holds `xsplice_payload.h`
    (default: the shipped payloads/include).
    """
    source, output = Path(source), check_destination(output)
    image = load_image(firmware)
    tools = toolchain(image.arch)
    tools.require("build the payload", "gcc", "ld")
    include_dir = sources_dir() / "payloads" / "include" if include_dir is None else Path(include_dir)
    text = read_file(source, limit=TEXT_LIMIT, what="C source")
    if b"\0" in text or not text.strip():
        raise ConfigError(f"{source}: not a C source ({'binary data' if text.strip() else 'empty'})")
    if not image.build_id:
        raise ConfigError(f"{image.path}: the firmware has no GNU build-id note")
    depends_id = image.build_id if depends is None else payload_build_id(depends)

    with tempfile.TemporaryDirectory(prefix="xsplice-payload-") as tmp_name:
        tmp = Path(tmp_name)
        header = tmp / "xsplice_firmware.h"
        include = ["-I", str(include_dir.resolve()), "-I", str(tmp)]
        facts = _firmware_facts(image)

        header.write_text(facts)
        sizing = tmp / "sizing.o"
        _compile(tools, image.arch, source, sizing, [*include, "-DXSPLICE_SIZING_PASS"])
        sizes = _function_sizes(sizing)

        header.write_text(facts + "".join(f"#define XSPLICE_NEW_SIZE_{n} {s}\n" for n, s in sizes.items()))
        obj = tmp / "payload.o"
        _compile(tools, image.arch, source, obj, include)
        if _function_sizes(obj) != sizes:
            raise ToolchainError(f"{source}: function sizes changed between the two compile passes")

        notes = tmp / "notes.o"
        _assemble_notes(tools, notes, depends_id, image.build_id if xen_depends else None)
        _run([tools.ld, "-r", "--build-id=sha1", "-o", str(output), str(obj), str(notes)], what="ld")
    return output


def read_note(path: str | Path, section: str) -> bytes | None:
    """The descriptor of the GNU build-id note in `section` of ELF `path`, or None."""
    path = Path(path)
    try:
        with path.open("rb") as stream:
            found = ELFFile(stream).get_section_by_name(section)
            if not isinstance(found, NoteSection):
                return None
            for note in found.iter_notes():
                if note["n_type"] == "NT_GNU_BUILD_ID":
                    return bytes.fromhex(note["n_desc"])
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except ELFError as exc:
        raise ConfigError(f"{path}: not an ELF file ({exc})") from None
    return None


def payload_build_id(path: str | Path) -> bytes:
    """A built payload's own build-id (its `.note.gnu.build-id`)."""
    build_id = read_note(path, BUILD_ID_NOTE)
    if not build_id:
        raise ConfigError(f"{path}: no {BUILD_ID_NOTE} note (not a payload?)")
    return build_id


def _firmware_facts(image: Image) -> str:
    """`<xsplice_firmware.h>`: size and leading bytes of every firmware function.

    Globals keep their name; a static `name` of `file.c` becomes `file_c__name`
    (`file#name` is no C identifier). Names that are not unique are left out.
    """
    by_name: dict[str, list] = {}
    for sym in image.functions():
        name = f"{re.sub(r'[^A-Za-z0-9_]', '_', sym.file)}__{sym.name}" if sym.is_local and sym.file else sym.name
        if _IDENTIFIER.match(name):
            by_name.setdefault(name, []).append(sym)
    lines = [
        f"/* Generated by xsplice-emu from {image.path.name} (build-id {image.build_id.hex()}); do not edit. */",
        "#ifndef XSPLICE_FIRMWARE_H",
        "#define XSPLICE_FIRMWARE_H",
    ]
    for name, syms in sorted(by_name.items()):
        if len(syms) != 1:
            continue
        sym = syms[0]
        lines.append(f"#define XSPLICE_FW_SIZE_{name} {sym.size}")
        head = image.read(sym.address, min(sym.size, EXPECT_MAX))
        if head:
            lines.append(f"#define XSPLICE_FW_HEAD_LEN_{name} {len(head)}")
            lines.append(f"#define XSPLICE_FW_HEAD_{name} " + ", ".join(f"{b:#04x}" for b in head))
    lines.append("#endif")
    return "\n".join(lines) + "\n"


def _compile(tools: Toolchain, arch: Architecture, source: Path, obj: Path, extra: list[str]) -> None:
    # Run from the source's directory and name it by its base name: the object
    # (hence the build-id) does not depend on where the tree is checked out.
    _run([tools.gcc, *arch.payload_cflags, *extra, "-fmax-errors=1", "-x", "c", "-c", source.name,
          "-o", str(obj.resolve())], what=f"{source}: not a C source that compiles: gcc", cwd=source.parent)


def _function_sizes(obj: Path) -> dict[str, int]:
    """Size of each function defined in a relocatable object, by name."""
    with obj.open("rb") as stream:
        symtab = ELFFile(stream).get_section_by_name(".symtab")
        return {
            sym.name: sym["st_size"]
            for sym in (symtab.iter_symbols() if isinstance(symtab, SymbolTableSection) else ())
            if sym["st_info"]["type"] == "STT_FUNC" and sym["st_shndx"] != "SHN_UNDEF" and _IDENTIFIER.match(sym.name)
        }


def _note_asm(section: str, build_id: bytes) -> str:
    data = ", ".join(f"{b:#04x}" for b in build_id)
    return (
        f'\t.section {section}, "a", @note\n'
        "\t.balign 4\n"
        f"\t.long 4, {len(build_id)}, {NT_GNU_BUILD_ID}\n"
        '\t.asciz "GNU"\n'
        f"\t.byte {data}\n"
        "\t.balign 4\n"
    )


def _assemble_notes(tools: Toolchain, obj: Path, depends: bytes, xen_depends: bytes | None) -> None:
    text = _note_asm(DEPENDS, depends)
    if xen_depends is not None:
        text += _note_asm(XEN_DEPENDS, xen_depends)
    text += '\t.section .note.GNU-stack, "", @progbits\n'
    _run([tools.gcc, "-c", "-x", "assembler", "-", "-o", str(obj)], what="gcc", stdin=text)


def _run(argv: list[str], *, what: str, cwd: Path | None = None, stdin: str | None = None) -> None:
    """Run one build step in a process group of its own, so that a step stopped (its time is up, or the user's
    Ctrl-C) leaves none of its children running (gcc's cc1 reading /dev/zero grows by ~1 GB a second)."""
    try:
        process = subprocess.Popen(argv, cwd=cwd, stdin=None if stdin is None else subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env={**os.environ, "LC_ALL": "C"}, start_new_session=True)
    except FileNotFoundError:
        raise ToolchainError(f"cannot build the payload: {argv[0]} is not installed") from None
    try:
        stdout, stderr = process.communicate(stdin, timeout=BUILD_STEP_SECONDS)
    except BaseException as exc:
        with contextlib.suppress(ProcessLookupError):  # (every process of the group already gone)
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        if isinstance(exc, subprocess.TimeoutExpired):
            raise ToolchainError(f"{what} did not finish in {BUILD_STEP_SECONDS} s (stopped): does the source read "
                                 "a device or a pipe?") from None
        raise
    if process.returncode:
        lines = [line for line in (stderr + stdout).splitlines() if line.strip()]
        fallback = lines[0] if lines else f"exit status {process.returncode}"
        first = next((line for line in lines if "error" in line), fallback)
        raise ToolchainError(f"{what} failed: {first.strip()}")
