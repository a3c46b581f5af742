"""What a payload holds, for people: sections, relocations, build-ids, records
and the new functions disassembled (`xsplice-emu payload inspect`)."""

from __future__ import annotations

import io
from dataclasses import dataclass

from elftools.elf.constants import SH_FLAGS
from elftools.elf.elffile import ELFFile
from elftools.elf.relocation import RelocationSection
from elftools.elf.sections import SymbolTableSection

from ..arch import Architecture
from ..image import Image
from .payload import FuncRecord, LoadedPayload, Region, load_beside


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
    return PayloadReport(
        name=name,
        loaded=loaded,
        firmware_build_id=image.build_id,
        sections=tuple(_sections(elf)),
        relocations=tuple(_relocations(elf, image.arch)),
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
        target = elf.get_section(section["sh_info"]).name
        for reloc in section.iter_relocations():
            sym = symtab.get_symbol(reloc["r_info_sym"])
            name = sym.name or (elf.get_section(sym["st_shndx"]).name if isinstance(sym["st_shndx"], int) else "")
            yield RelocationInfo(target, reloc["r_offset"], arch.relocation_name(reloc["r_info_type"]), name,
                                 reloc["r_addend"])


def _new_code(regions: tuple[Region, ...], func: FuncRecord, arch: Architecture) -> tuple[tuple[int, str], ...]:
    if func.new_addr == 0:
        return ()
    for region in regions:
        if region.address <= func.new_addr < region.end:
            start = func.new_addr - region.address
            code = region.data[start:start + func.new_size]
            return tuple((address, text) for address, _, text in arch.instructions(code, func.new_addr))
    return ()
