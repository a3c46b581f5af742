"""A livepatch payload: validate the relocatable ELF, lay it out, resolve and relocate it.

Nothing here touches guest memory: `load_payload` returns the relocated bytes of
each region and the address they were planned for. The checks and their errno
follow Xen's livepatch loader (livepatch_elf.c, livepatch.c, arch/x86/livepatch.c).
"""

from __future__ import annotations

import enum
import errno
import io
from collections.abc import Callable
from dataclasses import dataclass

from elftools.common.exceptions import ELFError
from elftools.construct.core import ConstructError
from elftools.elf.constants import SH_FLAGS
from elftools.elf.elffile import ELFFile

from ..arch import Architecture
from ..errors import LivepatchError
from . import abi

Resolver = Callable[[str], int | None]

_EHDR_SIZE = 64
_SHDR_SIZE = 64
_SYM_SIZE = 24
_RELA_SIZE = 24
_STN_UNDEF = 0
_SHN_LORESERVE = 0xFF00
_OSABIS = ("ELFOSABI_SYSV", "ELFOSABI_FREEBSD")  # Xen accepts both


class RegionKind(enum.StrEnum):
    """What a region holds, hence how it is mapped: RX, RO or RW."""

    TEXT = "text"
    RODATA = "rodata"
    DATA = "data"


@dataclass(frozen=True)
class Region:
    """Relocated bytes planned for `address` (page aligned); NOBITS parts are zeros."""

    address: int
    data: bytes
    kind: RegionKind

    @property
    def end(self) -> int:
        return self.address + len(self.data)


@dataclass(frozen=True)
class FuncRecord:
    """One function record, relocated and resolved: patch `old_addr` to reach `new_addr`.

    `new_addr == 0` is a NOP patch of `new_size` bytes. `expect` holds the bytes the
    old function must start with (v2, when enabled), else None.
    """

    name: str
    new_addr: int
    old_addr: int
    new_size: int
    old_size: int
    version: int
    expect: bytes | None

    @property
    def is_nop(self) -> bool:
        return self.new_addr == 0


@dataclass(frozen=True)
class LoadedPayload:
    """A validated payload laid out at its planned addresses, ready to be copied in."""

    name: str
    build_id: bytes
    depends: bytes | None
    xen_depends: bytes | None
    regions: tuple[Region, ...]
    funcs: tuple[FuncRecord, ...]
    hooks: dict[str, tuple[int, ...]]
    symbols: dict[str, int]
    has_writable_data: bool
    end: int


@dataclass
class _Section:
    index: int
    name: str
    header: dict
    data: bytes
    address: int = 0  # set when laid out (allocated sections only)

    @property
    def flags(self) -> int:
        return self.header["sh_flags"]

    @property
    def size(self) -> int:
        return self.header["sh_size"]

    @property
    def allocated(self) -> bool:
        return bool(self.flags & SH_FLAGS.SHF_ALLOC)

    def __str__(self) -> str:
        return f"section {self.name} (index {self.index})"


@dataclass(frozen=True)
class _Symbol:
    name: str
    kind: str  # STT_*
    is_global: bool
    shndx: int | str  # an index, or SHN_UNDEF / SHN_ABS / SHN_COMMON
    value: int


def load_payload(name: str, data: bytes, *, arch: Architecture, resolve: Resolver, base: int,
                 limit: int) -> LoadedPayload:
    """Check payload `data` for `arch`, lay it out from `base` (ending at or below `limit`), relocate it.

    `resolve(symbol)` gives the address of a symbol outside the payload (statics
    spelled `file#symbol`) or None. Raises LivepatchError with Xen's errno.
    """
    if not data or len(data) > abi.PAYLOAD_MAX_SIZE:
        raise LivepatchError(errno.EINVAL, f"{name}: size {len(data)} is not within 1..{abi.PAYLOAD_MAX_SIZE} bytes")
    try:
        return _Loader(name, bytes(data), arch, resolve).load(base=base, limit=limit)
    except (ELFError, ConstructError) as exc:
        raise LivepatchError(errno.EINVAL, f"{name}: malformed ELF ({exc})") from None


class _Loader:
    """Xen's upload path, step by step; each step raises LivepatchError on refusal."""

    def __init__(self, name: str, data: bytes, arch: Architecture, resolve: Resolver):
        self.name = name
        self.data = data
        self.arch = arch
        self.resolve = resolve

    def error(self, code: int, message: str) -> LivepatchError:
        return LivepatchError(code, f"{self.name}: {message}")

    def load(self, *, base: int, limit: int) -> LoadedPayload:
        self.elf = self._open()
        self.sections = self._read_sections()
        self.symtab_index, self.strtab = self._find_symtab()
        self._name_sections()
        self.raw_symbols = self._read_symbols()
        regions = self._lay_out(base=base, limit=limit)
        self.own_symbols = self._own_symbols()
        self.values = [self._resolve_symbol(i, sym) for i, sym in enumerate(self.raw_symbols)]
        self._relocate(regions)
        self.regions = tuple(Region(start, bytes(buf), kind) for kind, (start, buf) in regions.items())
        build_id = self._note(abi.BUILD_ID_NOTE)
        if build_id is None:
            raise self.error(errno.EINVAL, f"section {abi.BUILD_ID_NOTE} is missing")
        funcs_section, layout = self._funcs_section()
        return LoadedPayload(
            name=self.name,
            build_id=build_id,
            depends=self._note(abi.DEPENDS),
            xen_depends=self._note(abi.XEN_DEPENDS),
            regions=self.regions,
            funcs=tuple(self._funcs(funcs_section, layout)),
            hooks={kind: self._hooks(kind) for kind in abi.HOOK_SECTIONS},
            symbols=self.own_symbols,
            has_writable_data=any(
                _kind(s) is RegionKind.DATA and s.size and s is not funcs_section for s in self._loaded()
            ),
            end=self.regions[-1].end,
        )

    # -- ELF structure -----------------------------------------------------

    def _open(self) -> ELFFile:
        data = self.data
        if len(data) < _EHDR_SIZE or data[:4] != b"\x7fELF":
            raise self.error(errno.EINVAL, "not an ELF file")
        if data[4] != 2 or data[5] != 1:
            raise self.error(errno.EOPNOTSUPP, "not a little-endian ELF64 object")
        elf = ELFFile(io.BytesIO(data))
        header, ident = elf.header, elf.header["e_ident"]
        refusals = (
            (ident["EI_VERSION"] != "EV_CURRENT" or header["e_version"] != "EV_CURRENT", "ELF version is not 1"),
            (ident["EI_OSABI"] not in _OSABIS, f"unsupported OS ABI {ident['EI_OSABI']}"),
            (ident["EI_ABIVERSION"] != 0, f"unsupported ABI version {ident['EI_ABIVERSION']}"),
            (header["e_type"] != "ET_REL", f"not a relocatable object (e_type {header['e_type']})"),
            (header["e_phnum"] != 0, f"has {header['e_phnum']} program headers"),
            (header["e_machine"] != self.arch.elf_machine,
             f"not an {self.arch.title} object (e_machine {header['e_machine']})"),
        )
        for refused, message in refusals:
            if refused:
                raise self.error(errno.EOPNOTSUPP, message)
        shnum, shoff, shentsize = header["e_shnum"], header["e_shoff"], header["e_shentsize"]
        if header["e_shstrndx"] == 0:
            raise self.error(errno.EINVAL, "no section name table (e_shstrndx is 0)")
        if shnum >= abi.SECTIONS_MAX:
            raise self.error(errno.EOPNOTSUPP, f"too many sections ({shnum}, at most {abi.SECTIONS_MAX - 1})")
        if header["e_shstrndx"] >= shnum:
            raise self.error(errno.EINVAL, f"e_shstrndx {header['e_shstrndx']} is past the {shnum} sections")
        if shoff >= len(data) or shentsize < _SHDR_SIZE or (len(data) - shoff) // shentsize < shnum:
            raise self.error(errno.EINVAL, f"section header table (offset {shoff:#x}) is outside the file")
        return elf

    def _read_sections(self) -> list[_Section]:
        sections = [_Section(0, "", self.elf.structs.Elf_Shdr.parse(bytes(_SHDR_SIZE)), b"")]
        for index in range(1, self.elf["e_shnum"]):
            at = self.elf["e_shoff"] + index * self.elf["e_shentsize"]
            header = self.elf.structs.Elf_Shdr.parse(self.data[at : at + _SHDR_SIZE])
            offset, size = header["sh_offset"], header["sh_size"]
            nobits = header["sh_type"] == "SHT_NOBITS"
            if offset < _EHDR_SIZE or (not nobits and offset + size > len(self.data)):
                raise self.error(errno.EINVAL, f"section {index} data ({offset:#x}+{size:#x}) is outside the file")
            data = b"" if nobits else self.data[offset : offset + size]
            sections.append(_Section(index, "", header, data))
        return sections

    def _find_symtab(self) -> tuple[int, _Section]:
        symtabs = [s for s in self.sections if s.header["sh_type"] == "SHT_SYMTAB"]
        if len(symtabs) > 1:
            raise self.error(errno.EOPNOTSUPP, f"{len(symtabs)} symbol tables, only one is supported")
        if not symtabs:
            raise self.error(errno.EINVAL, "no symbol table")
        symtab = symtabs[0]
        link, size, entsize = symtab.header["sh_link"], symtab.size, symtab.header["sh_entsize"]
        if link == 0 or link >= len(self.sections):
            raise self.error(errno.EINVAL, f"symbol table links to string table {link}, which does not exist")
        if not size or entsize < _SYM_SIZE or size % entsize:
            raise self.error(errno.EINVAL, f"symbol table (index {symtab.index}) header is corrupted")
        strtab = self.sections[link]
        self._check_strtab(strtab, "string table")
        return symtab.index, strtab

    def _check_strtab(self, section: _Section, what: str) -> None:
        data = section.data
        if section.header["sh_type"] != "SHT_STRTAB" or not data or data[0] or data[-1]:
            raise self.error(errno.EINVAL, f"{what} (section {section.index}) is corrupted")

    def _name_sections(self) -> None:
        shstrtab = self.sections[self.elf["e_shstrndx"]]
        self._check_strtab(shstrtab, "section name table")
        for section in self.sections[1:]:
            offset = section.header["sh_name"]
            if offset >= len(shstrtab.data):
                raise self.error(errno.EINVAL, f"section {section.index} name is outside the section name table")
            section.name = _cstring(shstrtab.data, offset)

    def _read_symbols(self) -> list[_Symbol]:
        symtab = self.sections[self.symtab_index]
        entsize = symtab.header["sh_entsize"]
        symbols = [_Symbol("", "STT_NOTYPE", False, "SHN_UNDEF", 0)]
        for index in range(1, symtab.size // entsize):
            entry = self.elf.structs.Elf_Sym.parse(symtab.data[index * entsize : index * entsize + _SYM_SIZE])
            if entry["st_name"] >= len(self.strtab.data):
                raise self.error(errno.EINVAL, f"symbol {index} name is outside the string table")
            symbols.append(
                _Symbol(
                    name=_cstring(self.strtab.data, entry["st_name"]),
                    kind=entry["st_info"]["type"],
                    is_global=entry["st_info"]["bind"] != "STB_LOCAL",
                    shndx=entry["st_shndx"],
                    value=entry["st_value"],
                )
            )
        return symbols

    # -- layout ------------------------------------------------------------

    def _loaded(self) -> list[_Section]:
        return [s for s in self.sections[1:] if s.allocated]

    def _lay_out(self, *, base: int, limit: int) -> dict[RegionKind, tuple[int, bytearray]]:
        """Text, then rodata, then data, each region page aligned; sections at their alignment."""
        loaded = self._loaded()
        for section in loaded:
            if section.flags & SH_FLAGS.SHF_EXECINSTR and section.flags & SH_FLAGS.SHF_WRITE:
                raise self.error(errno.EOPNOTSUPP, f"{section} is writable and executable")
        regions = {}
        cursor = base
        for kind in RegionKind:
            members = [s for s in loaded if _kind(s) is kind]
            if not members:
                continue
            start = _align(cursor, max([abi.PAGE_SIZE] + [s.header["sh_addralign"] for s in members]))
            size = 0
            for section in members:
                offset = _align(size, section.header["sh_addralign"])
                section.address = start + offset
                size = offset + section.size
            if start + size > limit:
                raise self.error(errno.ENOMEM, f"needs memory up to {start + size:#x}, past the limit {limit:#x}")
            buf = bytearray(size)
            for section in members:
                at = section.address - start
                buf[at : at + len(section.data)] = section.data
            regions[kind] = (start, buf)
            cursor = start + size
        return regions

    # -- symbols -----------------------------------------------------------

    def _own_symbols(self) -> dict[str, int]:
        """Named functions and objects in loaded sections; a global wins over a static."""
        found: dict[str, int] = {}
        candidates = [
            (sym, self.sections[sym.shndx])
            for sym in self.raw_symbols
            if sym.kind in ("STT_FUNC", "STT_OBJECT")
            and sym.name
            and isinstance(sym.shndx, int)
            and 0 < sym.shndx < len(self.sections)
        ]
        for sym, section in sorted(candidates, key=lambda pair: pair[0].is_global):
            if section.allocated:
                found[sym.name] = section.address + sym.value
        return found

    def _resolve_symbol(self, index: int, sym: _Symbol) -> int:
        if index == _STN_UNDEF or sym.shndx == "SHN_ABS":
            return sym.value
        if sym.shndx == "SHN_COMMON":
            raise self.error(errno.EINVAL, f"symbol {sym.name} is a common symbol")
        if sym.shndx == "SHN_UNDEF":
            address = self._lookup(sym.name)
            if address is None:
                raise self.error(errno.ENOENT, f"unknown symbol {sym.name}")
            return address
        if isinstance(sym.shndx, str) or sym.shndx >= _SHN_LORESERVE:
            raise self.error(errno.EOPNOTSUPP, f"symbol {sym.name or index} has reserved section index {sym.shndx}")
        if sym.shndx >= len(self.sections):
            raise self.error(errno.EINVAL, f"symbol {sym.name or index} is in section {sym.shndx}, past the end")
        section = self.sections[sym.shndx]
        return section.address + sym.value if section.allocated else sym.value

    def _lookup(self, name: str) -> int | None:
        """The firmware's symbol (through `resolve`), else the payload's own."""
        address = self.resolve(name)
        return address if address is not None else self.own_symbols.get(name)

    # -- relocations -------------------------------------------------------

    def _relocate(self, regions: dict[RegionKind, tuple[int, bytearray]]) -> None:
        for rel in self.sections[1:]:
            rel_type = rel.header["sh_type"]
            if rel_type not in ("SHT_REL", "SHT_RELA") or rel.header["sh_info"] >= len(self.sections):
                continue
            target = self.sections[rel.header["sh_info"]]
            if not target.allocated:
                continue  # e.g. .rela.debug_info
            if rel.header["sh_link"] != self.symtab_index:
                raise self.error(errno.EINVAL, f"{rel} does not use the symbol table")
            if rel_type == "SHT_REL":
                raise self.error(errno.EOPNOTSUPP, f"{rel} is SHT_REL; only SHT_RELA is supported")
            if rel.header["sh_entsize"] != _RELA_SIZE or rel.size % _RELA_SIZE:
                raise self.error(errno.EINVAL, f"{rel} has a corrupted entry size")
            start, buf = regions[_kind(target)]
            at = target.address - start
            self._apply(rel, target, memoryview(buf)[at : at + target.size])

    def _apply(self, rel: _Section, target: _Section, contents: memoryview) -> None:
        for i in range(rel.size // _RELA_SIZE):
            entry = self.elf.structs.Elf_Rela.parse(rel.data[i * _RELA_SIZE : (i + 1) * _RELA_SIZE])
            sym_index, offset = entry["r_info_sym"], entry["r_offset"]
            where = f"{self.name}: {rel.name} entry {i}"
            if sym_index == _STN_UNDEF:
                raise LivepatchError(errno.EOPNOTSUPP, f"{where} has no symbol (STN_UNDEF)")
            if sym_index >= len(self.values):
                raise LivepatchError(errno.EINVAL, f"{where} uses symbol {sym_index}, past the symbol table end")
            kind = self.arch.relocation(entry["r_info_type"], where=where)
            kind.apply(
                contents,
                offset,
                symbol=self.values[sym_index],
                addend=entry["r_addend"],
                place=target.address + offset,
                where=f"{where} ({kind.name} against {self._describe(sym_index)} at {target.name}+{offset:#x})",
            )

    def _describe(self, sym_index: int) -> str:
        sym = self.raw_symbols[sym_index]
        if sym.kind == "STT_SECTION" and isinstance(sym.shndx, int):
            return self.sections[sym.shndx].name
        return sym.name or f"symbol {sym_index}"

    # -- special sections --------------------------------------------------

    def _unique(self, name: str) -> _Section | None:
        found = [s for s in self.sections[1:] if s.name == name]
        if len(found) > 1:
            raise self.error(errno.EINVAL, f"section {name} appears {len(found)} times")
        return found[0] if found else None

    def _note(self, section_name: str) -> bytes | None:
        """The build-id held in a GNU build-id note section; None when there is no such section."""
        section = self._unique(section_name)
        if section is None:
            return None
        data = section.data
        if len(data) <= abi.NOTE_HEADER.size:
            raise self.error(errno.EINVAL, f"{section} is too small for a note")
        namesz, descsz, note_type = abi.NOTE_HEADER.unpack_from(data)
        desc_at = abi.NOTE_HEADER.size + _align(namesz, 4)
        if (
            note_type != abi.NT_GNU_BUILD_ID
            or data[abi.NOTE_HEADER.size : abi.NOTE_HEADER.size + namesz] != abi.NOTE_NAME
            or not descsz
            or desc_at + descsz > len(data)
        ):
            raise self.error(errno.EINVAL, f"{section} is not a well-formed GNU build-id note")
        return data[desc_at : desc_at + descsz]

    def _funcs_section(self) -> tuple[_Section, abi.FuncLayout]:
        found = [(s, layout) for layout in abi.FUNC_LAYOUTS if (s := self._unique(layout.section))]
        if len(found) != 1:
            names = " or ".join(layout.section for layout in abi.FUNC_LAYOUTS)
            problem = "both" if found else "neither"
            raise self.error(errno.EINVAL, f"has {problem} of the function record sections {names}")
        section, layout = found[0]
        if not section.size or section.size % layout.record.size:
            raise self.error(
                errno.EINVAL, f"{section} size {section.size} is not a multiple of {layout.record.size} bytes"
            )
        if not section.allocated:
            raise self.error(errno.EINVAL, f"{section} is not allocated")
        return section, layout

    def _funcs(self, section: _Section, layout: abi.FuncLayout):
        records = self._contents(section)
        for i, fields in enumerate(layout.record.iter_unpack(records)):
            name_ptr, new_addr, old_addr, new_size, old_size, version = fields[:6]
            where = f"function record {i} in {section.name}"
            if version != layout.version:
                raise self.error(errno.EOPNOTSUPP, f"{where} has version {version}, expected {layout.version}")
            name = self._read_name(name_ptr, where)
            where = f"function record {i} ({name})"
            if old_size == 0:
                raise self.error(errno.EINVAL, f"{where} has old_size 0")
            if new_addr == 0:
                if new_size == 0:
                    raise self.error(errno.EINVAL, f"{where} is a NOP patch of new_size 0")
                if new_size > abi.NOP_MAX:
                    raise self.error(errno.EOPNOTSUPP, f"{where} NOPs {new_size} bytes, at most {abi.NOP_MAX}")
                if old_size < new_size:
                    raise self.error(errno.EINVAL, f"{where} NOPs {new_size} bytes of a {old_size}-byte function")
            elif old_size < self.arch.jump_size:
                raise self.error(errno.EINVAL, f"{where} old_size {old_size} is below {self.arch.jump_size}")
            if old_addr == 0:
                old_addr = self._lookup(name)
                if old_addr is None:
                    raise self.error(errno.ENOENT, f"{where}: cannot resolve the old address of {name}")
            if new_addr and not self.arch.jump_reaches(old_addr, new_addr):
                raise self.error(errno.EOVERFLOW, f"{where}: {new_addr:#x} is out of jump range from {old_addr:#x}")
            expect = self._expectation(fields[6:], old_size, where) if layout.has_expectation else None
            yield FuncRecord(name, new_addr, old_addr, new_size, old_size, version, expect)

    def _expectation(self, fields: tuple, old_size: int, where: str) -> bytes | None:
        flags, data = fields
        if not flags & abi.EXPECT_ENABLED:
            return None
        length = (flags >> abi.EXPECT_LEN_SHIFT) & abi.EXPECT_LEN_MASK
        if flags & abi.EXPECT_RSV_MASK:
            raise self.error(errno.EINVAL, f"{where} expectation has reserved bits set")
        if length == 0:
            raise self.error(errno.EINVAL, f"{where} expectation is enabled but empty")
        if length > old_size:
            raise self.error(errno.ERANGE, f"{where} expects {length} bytes of a {old_size}-byte function")
        return data[:length]

    def _hooks(self, kind: str) -> tuple[int, ...]:
        section = self._unique(abi.HOOK_SECTIONS[kind])
        if section is None:
            return ()
        size = abi.HOOK_POINTER.size
        if not section.size or section.size % size:
            raise self.error(errno.EINVAL, f"{section} size {section.size} is not a non-zero multiple of {size}")
        if kind not in abi.MULTI_HOOKS and section.size != size:
            raise self.error(errno.EINVAL, f"{section} must hold exactly one hook, not {section.size // size}")
        if not section.allocated:
            raise self.error(errno.EINVAL, f"{section} is not allocated")
        return tuple(ptr for (ptr,) in abi.HOOK_POINTER.iter_unpack(self._contents(section)))

    # -- reading the relocated image -----------------------------------------

    def _contents(self, section: _Section) -> bytes:
        """A loaded section's bytes after relocation."""
        region = next(r for r in self.regions if r.kind is _kind(section))
        at = section.address - region.address
        return region.data[at : at + section.size]

    def _read_name(self, address: int, where: str) -> str:
        for region in self.regions:
            if region.address <= address < region.end:
                tail = region.data[address - region.address : address - region.address + abi.NAME_MAX]
                if b"\0" in tail:
                    return tail[: tail.index(b"\0")].decode("utf-8", errors="replace")
        raise self.error(errno.EINVAL, f"{where} name at {address:#x} is not a string in the payload")


def _kind(section: _Section) -> RegionKind:
    if section.flags & SH_FLAGS.SHF_EXECINSTR:
        return RegionKind.TEXT
    return RegionKind.DATA if section.flags & SH_FLAGS.SHF_WRITE else RegionKind.RODATA


def _align(value: int, alignment: int) -> int:
    return value if alignment <= 1 else -(-value // alignment) * alignment


def _cstring(table: bytes, offset: int) -> str:
    end = table.index(b"\0", offset)
    return table[offset:end].decode("utf-8", errors="replace")
