"""A livepatch payload: validate the relocatable ELF, lay it out, resolve and relocate it.

Nothing here touches guest memory: `load_payload` returns the relocated bytes of
each region and the address they were planned for. The checks and their errno
follow Xen's livepatch loader (livepatch_elf.c, livepatch.c, arch/x86/livepatch.c);
docs/loader.md lists where they deliberately differ.
"""

from __future__ import annotations

import enum
import errno
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from elftools.common.exceptions import ELFError
from elftools.construct.core import ConstructError
from elftools.elf.constants import SH_FLAGS
from elftools.elf.elffile import ELFFile

from ..arch import Architecture
from ..errors import LivepatchError
from ..image import CodeReader, Image
from . import abi

Resolver = Callable[[str], int | None]

_EHDR_SIZE = 64
_SHDR_SIZE = 64
_SYM_SIZE = 24
_RELA_SIZE = 24
_REL_SIZE = 16
_STN_UNDEF = 0
_SHN_LORESERVE = 0xFF00
_ADDRESS_SPACE = 1 << 64
_FAULT = "(Xen would fault here)"
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

    def expectation_mismatch(self, read: CodeReader) -> str | None:
        """How the code `read` gives at `old_addr` differs from `expect` (None: met, or no expectation)."""
        if self.expect is None:
            return None
        found = read(self.old_addr, len(self.expect))
        if found is None:
            return f"{self.name} at {self.old_addr:#x} is outside the hypervisor's memory"
        if found != self.expect:
            return f"{self.name} starts with {found.hex(' ')}, expected {self.expect.hex(' ')}"
        return None


@dataclass(frozen=True)
class LoadedPayload:
    """A validated payload laid out at its planned addresses, ready to be copied in."""

    name: str
    build_id: bytes
    depends: bytes | None
    xen_depends: bytes | None
    regions: tuple[Region, ...]
    funcs: tuple[FuncRecord, ...]
    records: int
    """Where the function records are loaded (0: a hooks-only payload)."""
    hooks: dict[str, tuple[int, ...]]
    symbols: dict[str, int]
    new_symbols: dict[str, int]
    has_writable_data: bool
    end: int

    @property
    def text(self) -> tuple[Region, ...]:
        return tuple(r for r in self.regions if r.kind is RegionKind.TEXT)


@dataclass(frozen=True)
class Host:
    """What a payload is loaded against: the hypervisor and the payloads already loaded.

    `symbols(name)` gives a hypervisor symbol (statics spelled `file#symbol`) or None;
    `text` holds the executable ranges `[start, end)` of the hypervisor.
    """

    build_id: bytes
    symbols: Resolver
    text: tuple[tuple[int, int], ...]
    payloads: tuple[LoadedPayload, ...] = field(default=())

    @classmethod
    def of(cls, image: Image, payloads: Sequence[LoadedPayload] = ()) -> Host:
        """The firmware `image`, with `payloads` loaded in that order."""
        text = tuple((s.address, s.address + s.memory_size) for s in image.segments if s.executable)
        return cls(image.build_id, image.resolve, text, tuple(payloads))

    def resolve(self, name: str) -> int | None:
        """A hypervisor symbol, else a new symbol of a loaded payload (Xen's order)."""
        address = self.symbols(name)
        if address:
            return address
        return next((p.new_symbols[name] for p in self.payloads if name in p.new_symbols), None)

    def in_text(self, start: int, end: int) -> bool:
        """Whether `[start, end)` lies inside the text of the hypervisor or of one loaded payload."""
        ranges = self.text + tuple((r.address, r.end) for p in self.payloads for r in p.text)
        return any(low <= start and end <= high for low, high in ranges)


@dataclass
class _Section:
    index: int
    name: str
    header: dict
    data: bytes  # the file's bytes (none for NOBITS)
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
    ignored: bool = False  # in a section Xen does not load: relocations against it are refused


def load_payload(name: str, data: bytes, *, arch: Architecture, host: Host, base: int,
                 limit: int) -> LoadedPayload:
    """Check payload `data` for `arch` and `host`, lay it out from `base` (ending at or below `limit`), relocate it.

    Raises LivepatchError with Xen's errno.
    """
    if not data or len(data) > abi.PAYLOAD_MAX_SIZE:
        raise LivepatchError(errno.EINVAL, f"{name}: size {len(data)} is not within 1..{abi.PAYLOAD_MAX_SIZE} bytes")
    try:
        return _Loader(name, bytes(data), arch, host).load(base=base, limit=limit)
    except (ELFError, ConstructError) as exc:
        raise LivepatchError(errno.EINVAL, f"{name}: malformed ELF ({exc})") from None


def load_beside(name: str, data: bytes, image: Image) -> LoadedPayload:
    """`load_payload` offline: laid out where a first payload goes, from `image`'s end rounded up to a page."""
    base = -(-image.end // abi.PAGE_SIZE) * abi.PAGE_SIZE
    return load_payload(name, data, arch=image.arch, host=Host.of(image), base=base,
                        limit=base + 2 * abi.PAYLOAD_MAX_SIZE + 64 * abi.PAGE_SIZE)


class _Loader:
    """Xen's upload path, step by step; each step raises LivepatchError on refusal."""

    def __init__(self, name: str, data: bytes, arch: Architecture, host: Host):
        self.name = name
        self.data = data
        self.arch = arch
        self.host = host

    def error(self, code: int, message: str) -> LivepatchError:
        return LivepatchError(code, f"{self.name}: {message}")

    def load(self, *, base: int, limit: int) -> LoadedPayload:
        self.elf = self._open()
        self.sections = self._read_sections()
        self.symtab_index, self.strtab = self._find_symtab()
        self._name_sections()
        self.raw_symbols = self._read_symbols()
        xen_depends = self._check_xen_depends()
        regions = self._lay_out(base=base, limit=limit)
        self.values = [self._resolve_symbol(i, sym) for i, sym in enumerate(self.raw_symbols)]
        self._relocate(regions)
        self.regions = tuple(Region(start, bytes(buf), kind) for kind, (start, buf) in regions.items())
        self._check_special_sections()
        funcs_section, layout = self._funcs_section()
        funcs = tuple(self._funcs(funcs_section, layout)) if funcs_section and layout else ()
        hooks = {kind: self._hooks(kind) for kind in abi.HOOK_SECTIONS}
        build_id = self._note(abi.BUILD_ID_NOTE)
        for other in self.host.payloads:
            if other.build_id == build_id:
                raise self.error(errno.EEXIST, f"Already loaded as {other.name}")
        depends = self._note(abi.DEPENDS)
        symbols = self._symbols()
        return LoadedPayload(
            name=self.name,
            build_id=build_id,
            depends=depends,
            xen_depends=xen_depends,
            regions=self.regions,
            funcs=funcs,
            records=funcs_section.address if funcs_section else 0,
            hooks=hooks,
            symbols=symbols,
            new_symbols=self._new_symbols(funcs),
            has_writable_data=any(
                _kind(s) is RegionKind.DATA and s.size and s is not funcs_section for s in self._loaded()
            ),
            end=self.regions[-1].end if self.regions else base,
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
                wraps = (offset + size) % _ADDRESS_SPACE <= len(self.data) and offset >= _EHDR_SIZE
                raise self.error(errno.EINVAL, f"section {index} data ({offset:#x}+{size:#x}) is outside the file"
                                 + (f": the end wraps past 2^64 {_FAULT}" if wraps else ""))
            if nobits and header["sh_flags"] & (SH_FLAGS.SHF_WRITE | SH_FLAGS.SHF_ALLOC) \
                    and size > abi.PAYLOAD_MAX_SIZE:
                raise self.error(errno.EINVAL, f"section {index} NOBITS size {size:#x} is over "
                                               f"{abi.PAYLOAD_MAX_SIZE:#x}")
            align, address = header["sh_addralign"], header["sh_addr"]
            if align & (align - 1):
                raise self.error(errno.EOPNOTSUPP, f"Section [{index}] alignment ({align:#x}) is not supported")
            if align and address % align:
                raise self.error(errno.EINVAL, f"Section [{index}] address ({address:#x}) is not aligned properly "
                                               f"({align:#x})")
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
            start = _align(cursor, abi.PAGE_SIZE)
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

    def _symbols(self, *, only_global: bool = False) -> dict[str, int]:
        """Xen's payload symbols: named, in a loaded section, not a `.L` label of a mergeable one."""
        found: dict[str, int] = {}
        for sym, value in zip(self.raw_symbols, self.values, strict=True):
            if not (sym.name and isinstance(sym.shndx, int) and 0 < sym.shndx < len(self.sections)):
                continue
            if only_global and not sym.is_global:
                continue
            section = self.sections[sym.shndx]
            if section.allocated and not (section.flags & SH_FLAGS.SHF_MERGE and sym.name.startswith(".L")):
                found.setdefault(sym.name, value)
        return found

    def _new_symbols(self, funcs: tuple[FuncRecord, ...]) -> dict[str, int]:
        """The global symbols that are not a record's new function; each must be new to the host (else EEXIST).
        Statics never clash: two payloads may each have a static `apply_hook`, as Xen's xen_local_symbols test
        and hello_world do (reference section 7: a duplicate *global* symbol is refused)."""
        replacements = {func.new_addr for func in funcs}
        new = {name: value for name, value in self._symbols(only_global=True).items() if value not in replacements}
        for name in new:
            if self.host.resolve(name) is not None:
                raise self.error(errno.EEXIST, f"duplicate new symbol: {name}")
        return new

    def _resolve_symbol(self, index: int, sym: _Symbol) -> int:
        if index == _STN_UNDEF or sym.shndx == "SHN_ABS":
            return sym.value
        if sym.shndx == "SHN_COMMON":
            raise self.error(errno.EINVAL, f"symbol {sym.name} is a common symbol")
        if sym.shndx == "SHN_UNDEF":
            address = self.host.resolve(sym.name)
            if address is None:
                raise self.error(errno.ENOENT, f"unknown symbol {sym.name}")
            return address
        if isinstance(sym.shndx, str) or sym.shndx >= _SHN_LORESERVE:
            raise self.error(errno.EOPNOTSUPP, f"symbol {sym.name or index} has reserved section index {sym.shndx}")
        if sym.shndx >= len(self.sections):
            raise self.error(errno.EINVAL, f"symbol {sym.name or index} is in section {sym.shndx}, past the end")
        section = self.sections[sym.shndx]
        if not section.allocated:
            self.raw_symbols[index] = _Symbol(sym.name, sym.kind, sym.is_global, sym.shndx, sym.value, ignored=True)
            return sym.value
        return section.address + sym.value

    # -- relocations -------------------------------------------------------

    def _relocate(self, regions: dict[RegionKind, tuple[int, bytearray]]) -> None:
        for rel in self.sections[1:]:
            rel_type = rel.header["sh_type"]
            if rel_type not in ("SHT_REL", "SHT_RELA") or rel.header["sh_info"] >= len(self.sections):
                continue
            if rel.header["sh_info"] == 0:
                raise self.error(errno.EINVAL, f"{rel} applies to section 0 {_FAULT}")
            target = self.sections[rel.header["sh_info"]]
            if not target.allocated:
                continue  # e.g. .rela.debug_info
            if rel.header["sh_link"] != self.symtab_index:
                raise self.error(errno.EINVAL, f"{rel} does not use the symbol table")
            if not rel.size:
                continue
            entsize = rel.header["sh_entsize"]
            if entsize < (_RELA_SIZE if rel_type == "SHT_RELA" else _REL_SIZE) or rel.size % entsize:
                raise self.error(errno.EINVAL, f"{rel} has a corrupted entry size")
            if rel_type == "SHT_REL":
                raise self.error(errno.EOPNOTSUPP, f"{rel} is SHT_REL; only SHT_RELA is supported")
            start, buf = regions[_kind(target)]
            at = target.address - start
            self._apply(rel, target, memoryview(buf)[at : at + target.size])

    def _apply(self, rel: _Section, target: _Section, contents: memoryview) -> None:
        entsize = rel.header["sh_entsize"]
        for i in range(rel.size // entsize):
            entry = self.elf.structs.Elf_Rela.parse(rel.data[i * entsize : i * entsize + _RELA_SIZE])
            sym_index, offset = entry["r_info_sym"], entry["r_offset"]
            where = f"{self.name}: {rel.name} entry {i}"
            if sym_index == _STN_UNDEF:
                raise LivepatchError(errno.EOPNOTSUPP, f"{where} has no symbol (STN_UNDEF)")
            if sym_index >= len(self.values):
                raise LivepatchError(errno.EINVAL, f"{where} uses symbol {sym_index}, past the symbol table end")
            if self.raw_symbols[sym_index].ignored:
                raise LivepatchError(errno.EINVAL, f"{where} is against {self._describe(sym_index)}, in a section "
                                                   "that is not loaded")
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

    def _section(self, name: str) -> _Section | None:
        """The first section called `name`, as Xen finds it."""
        return next((s for s in self.sections[1:] if s.name == name), None)

    def _mandatory(self, name: str) -> _Section:
        section = self._section(name)
        if section is None:
            raise self.error(errno.EINVAL, f"{name} is missing")
        if not section.size:
            raise self.error(errno.EINVAL, f"{name} is empty")
        return section

    def _check_xen_depends(self) -> bytes:
        """Xen's first check after reading the ELF: .livepatch.xen_depends names the hypervisor's build-id."""
        section = self._mandatory(abi.XEN_DEPENDS)
        build_id = _parse_note(section.data)
        if isinstance(build_id, int):
            raise self.error(errno.EINVAL, f"failed to parse section {abi.XEN_DEPENDS} as build-id: {build_id}")
        if build_id != self.host.build_id:
            raise self.error(errno.EINVAL, f"{abi.XEN_DEPENDS} {build_id.hex()} is not the hypervisor's "
                                           f"build-id {self.host.build_id.hex()}")
        return build_id

    def _check_special_sections(self) -> None:
        for name in abi.NOTE_SECTIONS:
            self._mandatory(name)

    def _note(self, name: str) -> bytes:
        """The build-id in a loaded GNU build-id note (Xen's errno: EINVAL, or the parser's ENODATA)."""
        section = self._mandatory(name)
        if not section.allocated:
            raise self.error(errno.EINVAL, f"{section} is not loaded {_FAULT}")
        if section.size <= abi.NOTE_HEADER.size:
            raise self.error(errno.EINVAL, f"{section} is too small for a note")
        build_id = _parse_note(self._contents(section))
        if isinstance(build_id, int):
            raise self.error(-build_id, f"{section} is not a GNU build-id note")
        if not build_id:
            raise self.error(errno.EINVAL, f"{section} holds an empty build-id")
        return build_id

    def _funcs_section(self) -> tuple[_Section | None, abi.FuncLayout | None]:
        """The function records (optional when there are hooks); at least one patching section is present."""
        present = [name for name in (*(layout.section for layout in abi.FUNC_LAYOUTS), *abi.HOOK_SECTIONS.values())
                   if self._section(name)]
        for name in present:
            self._mandatory(name)
        if not present:
            raise self.error(errno.EINVAL, "Nothing to patch. Aborting...")
        found = [(s, layout) for layout in abi.FUNC_LAYOUTS if (s := self._section(layout.section))]
        if not found:
            return None, None
        if len(found) > 1:
            names = " and ".join(layout.section for layout in abi.FUNC_LAYOUTS)
            raise self.error(errno.EINVAL, f"has both of the function record sections {names}")
        section, layout = found[0]
        if section.size % layout.record.size:
            raise self.error(
                errno.EINVAL, f"{section} size {section.size} is not a multiple of {layout.record.size} bytes"
            )
        if not section.allocated:
            raise self.error(errno.EINVAL, f"{section} is not loaded {_FAULT}")
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
                if new_size > abi.NOP_MAX:
                    raise self.error(errno.EOPNOTSUPP, f"{where} NOPs {new_size} bytes, at most {abi.NOP_MAX}")
                if old_size < new_size:
                    raise self.error(errno.EINVAL, f"{where} NOPs {new_size} bytes of a {old_size}-byte function")
            elif old_size < self.arch.jump_size:
                raise self.error(errno.EINVAL, f"{where} old_size {old_size} is below {self.arch.jump_size}")
            if old_addr == 0:
                old_addr = self.host.resolve(name)
                if old_addr is None:
                    raise self.error(errno.ENOENT, f"{where}: cannot resolve the old address of {name}")
            self._check_bounds(where, old_addr, old_size, new_addr)
            if new_addr and not self.arch.jump_reaches(old_addr, new_addr):
                raise self.error(errno.EOVERFLOW, f"{where}: {new_addr:#x} is out of jump range from {old_addr:#x}")
            expect = self._expectation(fields[6:], old_size, where) if layout.has_expectation else None
            yield FuncRecord(name, new_addr, old_addr, new_size, old_size, version, expect)

    def _check_bounds(self, where: str, old_addr: int, old_size: int, new_addr: int) -> None:
        """The old function lies in the host's text, the new one in this payload's own text."""
        if not self.host.in_text(old_addr, old_addr + old_size):
            raise self.error(errno.EINVAL, f"{where} patches {old_addr:#x}+{old_size:#x}, outside the text of "
                                           "the hypervisor and of the loaded payloads (Xen would fault here "
                                           "reading it if unmapped)")
        text = [r for r in self.regions if r.kind is RegionKind.TEXT]
        if new_addr and not any(r.address <= new_addr < r.end for r in text):
            raise self.error(errno.EINVAL, f"{where} new function {new_addr:#x} is outside the payload's text")

    def _expectation(self, fields: tuple, old_size: int, where: str) -> bytes | None:
        flags, data = fields
        if not flags & abi.EXPECT_ENABLED:
            return None
        length = (flags >> abi.EXPECT_LEN_SHIFT) & abi.EXPECT_LEN_MASK
        if flags & abi.EXPECT_RSV_MASK:
            raise self.error(errno.EINVAL, f"{where} expectation has reserved bits set")
        if length > old_size:
            raise self.error(errno.ERANGE, f"{where} expects {length} bytes of a {old_size}-byte function")
        return data[:length]

    def _hooks(self, kind: str) -> tuple[int, ...]:
        """The hook pointers; a single hook Xen sees as NULL (not loaded, or 0) is no hook."""
        section = self._section(abi.HOOK_SECTIONS[kind])
        if section is None:
            return ()
        size = abi.HOOK_POINTER.size
        if section.size % size:
            raise self.error(errno.EINVAL, f"{section} size {section.size} is not a multiple of {size}")
        if kind not in abi.MULTI_HOOKS and section.size != size:
            raise self.error(errno.EINVAL, f"{section} must hold exactly one hook, not {section.size // size}")
        if not section.allocated:
            if kind in abi.MULTI_HOOKS:
                raise self.error(errno.EINVAL, f"{section} is not loaded {_FAULT}")
            return ()
        pointers = tuple(ptr for (ptr,) in abi.HOOK_POINTER.iter_unpack(self._contents(section)))
        return pointers if kind in abi.MULTI_HOOKS or pointers != (0,) else ()

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
        raise self.error(errno.EINVAL, f"{where} name at {address:#x} is not a string in the payload {_FAULT}")


def _kind(section: _Section) -> RegionKind:
    if section.flags & SH_FLAGS.SHF_EXECINSTR:
        return RegionKind.TEXT
    return RegionKind.DATA if section.flags & SH_FLAGS.SHF_WRITE else RegionKind.RODATA


def _parse_note(data: bytes) -> bytes | int:
    """The descriptor of a GNU build-id note, or Xen's -errno for it (xen_build_id_check)."""
    if len(data) <= abi.NOTE_HEADER.size:
        return -errno.EINVAL
    namesz, descsz, note_type = abi.NOTE_HEADER.unpack_from(data)
    if note_type != abi.NT_GNU_BUILD_ID:
        return -errno.ENODATA
    if namesz < len(abi.NOTE_NAME) or namesz + descsz > len(data) - abi.NOTE_HEADER.size or namesz + descsz >= 1 << 32:
        return -errno.EINVAL
    name = data[abi.NOTE_HEADER.size : abi.NOTE_HEADER.size + len(abi.NOTE_NAME)]
    if name != abi.NOTE_NAME:  # strncmp(name, "GNU", namesz): "GNU" and its NUL
        return -errno.ENODATA
    desc_at = abi.NOTE_HEADER.size + _align(namesz, 4)
    return data[desc_at : desc_at + descsz]


def _align(value: int, alignment: int) -> int:
    return value if alignment <= 1 else -(-value // alignment) * alignment


def _cstring(table: bytes, offset: int) -> str:
    end = table.index(b"\0", offset)
    return table[offset:end].decode("utf-8", errors="replace")
