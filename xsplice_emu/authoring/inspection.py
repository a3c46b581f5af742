"""What a payload holds, for people: sections, relocations, build-ids, records
and the new functions disassembled (`xsplice-emu payload inspect`)."""

from __future__ import annotations

import io
from dataclasses import dataclass

from elftools.common.exceptions import ELFError
from elftools.elf.constants import SH_FLAGS
from elftools.elf.elffile import ELFFile
from elftools.elf.relocation import RelocationSection
from elftools.elf.sections import SymbolTableSection

from ..arch import Architecture
from ..image import Image
from ..livepatch.payload import FuncRecord, LoadedPayload, Region, load_beside


@dataclass(frozen=True)
class SectionInfo:
    name: str
    kind: str  # text, rodata, data, or "-" (not loaded)
    size: int


@dataclass(frozen=True)
class RelocationInfo:
    section: str
    offset: int
    type: str
    symbol: str
    addend: int


@dataclass(frozen=True)
class FunctionInfo:
    record: FuncRecord
    old: str  # the old address described with the firmware's symbols
    new_code: tuple[tuple[int, str], ...]  # (address, instruction) of the new function


@dataclass(frozen=True)
class PayloadReport:
    name: str
    loaded: LoadedPayload
    firmware_build_id: bytes
    sections: tuple[SectionInfo, ...]
    relocations: tuple[RelocationInfo, ...]
    functions: tuple[FunctionInfo, ...]
    unreadable: str | None = None
    """Why the ELF's sections or relocations could not all be listed (the loader accepted what it reads)."""

    @property
    def depends_on(self) -> str:
        """`the hypervisor`, `another payload` or `nothing`."""
        if self.loaded.depends is None:
            return "nothing"
        return "the hypervisor" if self.loaded.depends == self.firmware_build_id else "another payload"


def inspect_payload(name: str, data: bytes, image: Image) -> PayloadReport:
    """Load `data` as it would be loaded next to `image` and describe it."""
    loaded = load_beside(name, data, image)
    elf = ELFFile(io.BytesIO(data))
    sections: list[SectionInfo] = []
    relocations: list[RelocationInfo] = []
    unreadable = None
    try:
        sections.extend(_sections(elf))
        relocations.extend(_relocations(elf, image.arch))
    except ELFError as exc:  # a part of the file the loader never reads: list what came before it
        unreadable = str(exc)
    return PayloadReport(
        name=name,
        loaded=loaded,
        firmware_build_id=image.build_id,
        sections=tuple(sections),
        relocations=tuple(relocations),
        unreadable=unreadable,
        functions=tuple(FunctionInfo(func, image.describe(func.old_addr), _new_code(loaded.regions, func, image.arch))
                        for func in loaded.funcs),
    )


def _sections(elf: ELFFile):
    for section in elf.iter_sections():
        if not section.name:
            continue
        flags = section["sh_flags"]
        if not flags & SH_FLAGS.SHF_ALLOC:
            kind = "-"
        elif flags & SH_FLAGS.SHF_EXECINSTR:
            kind = "text"
        else:
            kind = "data" if flags & SH_FLAGS.SHF_WRITE else "rodata"
        yield SectionInfo(section.name, kind, section["sh_size"])


def _relocations(elf: ELFFile, arch: Architecture):
    symtab = elf.get_section_by_name(".symtab")
    if not isinstance(symtab, SymbolTableSection):
        return
    for section in elf.iter_sections():
        if not isinstance(section, RelocationSection) or not section.is_RELA():
            continue
        target = _section_name(elf, section["sh_info"])
        for reloc in section.iter_relocations():
            sym = symtab.get_symbol(reloc["r_info_sym"])
            name = sym.name or (_section_name(elf, sym["st_shndx"]) if isinstance(sym["st_shndx"], int) else "")
            yield RelocationInfo(target, reloc["r_offset"], arch.relocation_name(reloc["r_info_type"]), name,
                                 reloc["r_addend"])


def _section_name(elf: ELFFile, index: int) -> str:
    """Section `index`'s name, or `(section N)` where the file has no such section (the loader never reads it:
    a relocation section for nothing it loads)."""
    return elf.get_section(index).name if index < elf.num_sections() else f"(section {index})"


def _new_code(regions: tuple[Region, ...], func: FuncRecord, arch: Architecture) -> tuple[tuple[int, str], ...]:
    if func.new_addr == 0:
        return ()
    for region in regions:
        if region.address <= func.new_addr < region.end:
            start = func.new_addr - region.address
            code = region.data[start:start + func.new_size]
            return tuple((address, text) for address, _, text in arch.instructions(code, func.new_addr))
    return ()
