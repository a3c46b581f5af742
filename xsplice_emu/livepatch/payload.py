"""A livepatch payload: validate the relocatable ELF, lay it out, resolve and relocate it.

Nothing here touches guest memory: `load_payload` returns the relocated bytes of
each region and the address they were planned for. The checks and their errno
follow Xen's livepatch loader (livepatch_elf.c, livepatch.c, arch/x86/livepatch.c);
docs/loader.md lists where they deliberately differ.
"""

from __future__ import annotations

import enum
import errno
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain

from elftools.elf.constants import SH_FLAGS
from elftools.elf.enums import ENUM_E_MACHINE

from ..arch import Architecture
from ..errors import LivepatchError
from ..image import CodeReader, Image
from . import abi

Resolver = Callable[[str], int | None]

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
"""Elf64_Ehdr: e_ident, type, machine, version, entry, phoff, shoff, flags, ehsize, phentsize, phnum, shentsize,
shnum, shstrndx."""
_SHDR = struct.Struct("<IIQQQQIIQQ")
"""Elf64_Shdr: name, type, flags, addr, offset, size, link, info, addralign, entsize."""
_SYM = struct.Struct("<IBBHQQ")
"""Elf64_Sym: name, info, other, shndx, value, size."""
_RELA = struct.Struct("<QQq")
"""Elf64_Rela: offset, info, addend."""
_REL_SIZE = 16
_ELF_MAGIC = b"\x7fELF"
_ELFCLASS64, _ELFDATA2LSB, _EV_CURRENT, _ET_REL = 2, 1, 1, 1
_OSABIS = (0, 9)  # ELFOSABI_NONE, ELFOSABI_FREEBSD: Xen accepts both
_SHT_SYMTAB, _SHT_STRTAB, _SHT_RELA, _SHT_NOBITS, _SHT_REL = 2, 3, 4, 8, 9
_STT_SECTION = 3
_STB_LOCAL = 0
_STN_UNDEF = 0
_SHN_UNDEF, _SHN_LORESERVE, _SHN_ABS, _SHN_COMMON = 0, 0xFF00, 0xFFF1, 0xFFF2
_ADDRESS_SPACE = 1 << 64
_FAULT = "(Xen would fault here)"

BUGFRAME_SECTIONS = tuple(f".bug_frames.{n}" for n in range(4))
"""Xen's BUG/WARN/assert frame tables (BUGFRAME_NR is 4), each an array of 8-byte `struct bug_frame`."""
BUG_FRAME_SIZE = 8
EX_TABLE_ENTRY_SIZE = 8
"""`struct exception_table_entry`: two s32 displacements."""
ALT_INSTR = struct.Struct("<iiHBBBB")
"""`struct alt_instr` (packed): orig_offset, repl_offset, cpuid, orig_len, repl_len, pad_len, priv."""


class UploadOrder(enum.Enum):
    """Whose upload path the loader follows: its order of checks decides the errno of a malformed payload."""

    XEN_4_17 = "Xen 4.17"
    """.livepatch.xen_depends compared last (xen_build_id_dep after prepare_payload); every note error EINVAL."""
    STAGING = "staging"
    """Upstream master: .livepatch.xen_depends checked first (check_xen_buildid); the notes' parser errno."""

    @classmethod
    def of(cls, image: Image) -> UploadOrder:
        """Xen 4.17's for an image whose xen_major_version and xen_minor_version return 4 and 17; staging's for
        any other (the built-in firmware calls itself 4.7-unstable: a development tree, as before)."""
        version = []
        for name in ("xen_major_version", "xen_minor_version"):
            address = image.resolve(name)
            code = image.read(address, 16) if address is not None else None
            version.append(image.arch.constant_result(code) if code else None)
        return cls.XEN_4_17 if version == [4, 17] else cls.STAGING


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
    old function must start with (v2, when enabled), else None. The patch goes
    `patch_offset` bytes into the old function (past an instruction that must stay
    first, as Xen 4.17 moves it past ENDBR64) and writes `patch_size` bytes there
    (Xen's livepatch_insn_len).
    """

    name: str
    new_addr: int
    old_addr: int
    new_size: int
    old_size: int
    version: int
    expect: bytes | None
    patch_offset: int = 0
    patch_size: int = 0

    @property
    def is_nop(self) -> bool:
        return self.new_addr == 0

    @property
    def patch_addr(self) -> int:
        """Where the patch is written."""
        return self.old_addr + self.patch_offset

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
    metadata: bytes = b""
    """Its .modinfo section as Xen keeps it for `list`: NUL-terminated strings (b"": none)."""

    @property
    def text(self) -> tuple[Region, ...]:
        return tuple(r for r in self.regions if r.kind is RegionKind.TEXT)


def _unreadable(address: int, length: int) -> bytes | None:
    return None


@dataclass(frozen=True)
class Host:
    """What a payload is loaded against: the hypervisor and the payloads already loaded.

    `symbols(name)` gives a hypervisor symbol (statics spelled `file#symbol`) or None;
    `text` holds the executable ranges `[start, end)` of the hypervisor; `read` its
    bytes as built; `order` whose upload path decides the errno.
    """

    build_id: bytes
    symbols: Resolver
    text: tuple[tuple[int, int], ...]
    payloads: tuple[LoadedPayload, ...] = field(default=())
    read: CodeReader = _unreadable
    order: UploadOrder = UploadOrder.STAGING

    @classmethod
    def of(cls, image: Image, payloads: Sequence[LoadedPayload] = ()) -> Host:
        """The firmware `image`, with `payloads` loaded in that order; the upload order its version selects."""
        text = tuple((s.address, s.address + s.memory_size) for s in image.segments if s.executable)
        return cls(image.build_id, image.resolve, text, tuple(payloads), image.read, UploadOrder.of(image))

    def resolve(self, name: str) -> int | None:
        """A hypervisor symbol, else a new symbol of a loaded payload (Xen's order)."""
        address = self.symbols(name)
        if address:
            return address
        return next((p.new_symbols[name] for p in self.payloads if name in p.new_symbols), None)

    def in_text(self, start: int, end: int) -> bool:
        """Whether `[start, end)` lies inside the text of the hypervisor or of one loaded payload."""
        ranges = chain(self.text, ((r.address, r.end) for p in self.payloads for r in p.text))
        return any(low <= start and end <= high for low, high in ranges)  # the hypervisor's first: most are there

    def code(self, address: int, length: int) -> bytes | None:
        """The hypervisor's bytes at `address` as built, else a loaded payload's (None: neither has them all)."""
        found = self.read(address, length)
        if found is not None:
            return found
        return _read_regions((r for p in self.payloads for r in p.regions), address, length)


def _read_regions(regions: Iterator[Region] | Sequence[Region], address: int, length: int) -> bytes | None:
    for region in regions:
        if region.address <= address and address + length <= region.end:
            return region.data[address - region.address : address - region.address + length]
    return None


@dataclass
class _Section:
    index: int
    name: str
    type: int
    flags: int
    addr: int
    offset: int
    size: int
    link: int
    info: int
    addralign: int
    entsize: int
    name_offset: int
    data: bytes  # the file's bytes (none for NOBITS)
    wraps: bool = False  # offset + size wraps past 2^64: Xen's bound check passes it
    address: int = 0  # set when laid out (allocated sections only)

    @property
    def allocated(self) -> bool:
        return bool(self.flags & SH_FLAGS.SHF_ALLOC)

    def __str__(self) -> str:
        return f"section {self.name} (index {self.index})"


@dataclass(frozen=True)
class _Symbol:
    name: str
    kind: int  # STT_*
    is_global: bool
    shndx: int
    value: int
    ignored: bool = False  # in a section Xen does not load: relocations against it are refused


def load_payload(name: str, data: bytes, *, arch: Architecture, host: Host, base: int,
                 limit: int) -> LoadedPayload:
    """Check payload `data` for `arch` and `host`, lay it out from `base` (ending at or below `limit`), relocate it.

    Raises LivepatchError with Xen's errno (and `xen_log`, what Xen prints).
    """
    if not data or len(data) > abi.PAYLOAD_MAX_SIZE:
        raise LivepatchError(errno.EINVAL, f"{name}: size {len(data)} is not within 1..{abi.PAYLOAD_MAX_SIZE} bytes",
                             xen_log=None)
    return _Loader(name, bytes(data), arch, host).load(base=base, limit=limit)


def load_beside(name: str, data: bytes, image: Image) -> LoadedPayload:
    """`load_payload` offline: laid out where a first payload goes, from `image`'s end rounded up to a page."""
    base = -(-image.end // abi.PAGE_SIZE) * abi.PAGE_SIZE
    return load_payload(name, data, arch=image.arch, host=Host.of(image), base=base,
                        limit=base + 2 * abi.PAYLOAD_MAX_SIZE + 64 * abi.PAGE_SIZE)


class _Loader:
    """Xen's upload path (load_payload_data), step by step, in the host's upload order; each step raises
    LivepatchError on refusal. The testbed's own checks (where Xen would fault later, or accepts what the
    testbed cannot run) are kept in `deferred` and raised only once Xen's path has accepted the payload."""

    def __init__(self, name: str, data: bytes, arch: Architecture, host: Host):
        self.name = name
        self.data = data
        self.arch = arch
        self.host = host
        self.staging = host.order is UploadOrder.STAGING
        self.deferred: list[LivepatchError] = []

    def xen(self, text: str) -> str:
        """One line Xen prints for this payload (LIVEPATCH "%s: ..."), without "(XEN) "."""
        return f"livepatch: {self.name}: {text}"

    def error(self, code: int, message: str, xen: str | tuple[str, ...] | None = None) -> LivepatchError:
        """A refusal: the testbed's `message`, and `xen` the line(s) Xen prints (None: Xen prints nothing)."""
        return LivepatchError(code, f"{self.name}: {message}", xen_log=xen)

    def load(self, *, base: int, limit: int) -> LoadedPayload:
        # livepatch_elf_load
        self._check_header()
        self.sections = self._read_sections()
        self._name_sections()
        self.raw_symbols = self._read_symbols()
        xen_depends = self._check_xen_build_id() if self.staging else None
        # move_payload, livepatch_elf_resolve_symbols, livepatch_elf_perform_relocs
        regions = self._lay_out(base=base, limit=limit)
        self.values = [self._resolve_symbol(i, sym) for i, sym in enumerate(self.raw_symbols)]
        self._relocate(regions)
        self.regions = tuple(Region(start, bytes(buf), kind) for kind, (start, buf) in regions.items())
        # check_special_sections, check_patching_sections
        self._check_special_sections()
        funcs_section, layout = self._funcs_section()
        # prepare_payload
        funcs = tuple(self._funcs(funcs_section, layout)) if funcs_section and layout else ()
        hooks = {kind: self._hooks(kind) for kind in abi.HOOK_SECTIONS}
        build_id = self._note(abi.BUILD_ID_NOTE)
        for other in self.host.payloads:
            if other.build_id == build_id:
                raise self.error(errno.EEXIST, f"Already loaded as {other.name}")
        depends = self._note(abi.DEPENDS)
        if not self.staging:
            xen_depends = self._note(abi.XEN_DEPENDS)
        self._check_optional_sections()
        metadata = self._metadata()
        if not self.staging:  # xen_build_id_dep
            self._compare_xen_build_id(xen_depends)
        # build_symbol_table
        new_symbols = self._new_symbols(funcs)
        if self.deferred:
            raise self.deferred[0]
        return LoadedPayload(
            name=self.name,
            build_id=build_id,
            depends=depends,
            xen_depends=xen_depends,
            regions=self.regions,
            funcs=funcs,
            records=funcs_section.address if funcs_section else 0,
            hooks=hooks,
            symbols=self._symbols(),
            new_symbols=new_symbols,
            has_writable_data=any(
                _kind(s) is RegionKind.DATA and s.size and s is not funcs_section for s in self._loaded()
            ),
            end=self.regions[-1].end if self.regions else base,
            metadata=metadata,
        )

    # -- ELF structure (livepatch_header_check, elf_resolve_sections, ...) ---

    def _check_header(self) -> None:
        data = self.data
        if len(data) < _EHDR.size:
            raise self.error(errno.EINVAL, "not an ELF file: shorter than its header",
                             self.xen("Section header is bigger than payload"))
        (ident, e_type, machine, version, _, _, shoff, _, _, _, phnum, shentsize, shnum,
         shstrndx) = _EHDR.unpack_from(data)
        if ident[:4] != _ELF_MAGIC:
            raise self.error(errno.EINVAL, "not an ELF file", self.xen("Not an ELF payload"))
        refusals = (
            (version != _EV_CURRENT or ident[6] != _EV_CURRENT, "ELF version is not 1"),
            (ident[8] != 0, f"unsupported ABI version {ident[8]}"),
            (ident[7] not in _OSABIS, f"unsupported OS ABI {ident[7]}"),
            (e_type != _ET_REL, f"not a relocatable object (e_type {e_type})"),
            (phnum != 0, f"has {phnum} program headers"),
        )
        for refused, message in refusals:
            if refused:
                raise self.error(errno.EOPNOTSUPP, message, self.xen("Invalid ELF payload"))
        if machine != ENUM_E_MACHINE[self.arch.elf_machine] or ident[4] != _ELFCLASS64 or ident[5] != _ELFDATA2LSB:
            raise self.error(errno.EOPNOTSUPP, f"not a little-endian ELF64 {self.arch.title} object "
                                               f"(e_machine {machine})", self.xen("Unsupported ELF Machine type"))
        if shstrndx == 0:
            raise self.error(errno.EINVAL, "no section name table (e_shstrndx is 0)",
                             self.xen("Section name idx is undefined"))
        if shnum >= abi.SECTIONS_MAX:
            raise self.error(errno.EOPNOTSUPP, f"too many sections ({shnum}, at most {abi.SECTIONS_MAX - 1})",
                             self.xen(f"Too many ({shnum}) sections"))
        if shstrndx >= shnum:
            raise self.error(errno.EINVAL, f"e_shstrndx {shstrndx} is past the {shnum} sections",
                             self.xen(f"Section name idx ({shstrndx}) is past end of sections ({shnum})"))
        if shoff >= len(data):
            raise self.error(errno.EINVAL, f"section header table offset {shoff:#x} is past the file end",
                             self.xen("Bogus e_shoff"))
        if shentsize < _SHDR.size:
            raise self.error(errno.EINVAL, f"section header size {shentsize} is below {_SHDR.size}",
                             self.xen(f"Section header size is {shentsize}! Expected {_SHDR.size}."))
        if (len(data) - shoff) // shentsize < shnum:
            raise self.error(errno.EINVAL, f"section header table (offset {shoff:#x}) is outside the file",
                             self.xen("Section header size is corrupted"))
        self.shoff, self.shentsize, self.shnum, self.shstrndx = shoff, shentsize, shnum, shstrndx

    def _read_sections(self) -> list[_Section]:
        """elf_resolve_sections: every section's bounds and alignment, and the one symbol table, in index order."""
        sections = [_Section(0, "", 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, b"")]
        self.symtab_index = 0
        for index in range(1, self.shnum):
            fields = _SHDR.unpack_from(self.data, self.shoff + index * self.shentsize)
            name_offset, sh_type, flags, addr, offset, size, link, info, align, entsize = fields
            nobits = sh_type == _SHT_NOBITS
            end = (offset + size) % _ADDRESS_SPACE  # Xen's sum wraps
            if offset < _EHDR.size or (not nobits and (offset > len(self.data) or end > len(self.data))):
                where = "at ELF header" if offset < _EHDR.size else "is past end"
                raise self.error(errno.EINVAL, f"section {index} data ({offset:#x}+{size:#x}) is outside the file",
                                 self.xen(f"Section [{index}] data {where} of payload"))
            if align & (align - 1):
                raise self.error(errno.EOPNOTSUPP, f"Section [{index}] alignment ({align:#x}) is not supported",
                                 self.xen(f"Section [{index}] alignment ({align:#x}) is not supported"))
            if align and addr % align:
                raise self.error(errno.EINVAL, f"Section [{index}] address ({addr:#x}) is not aligned properly "
                                               f"({align:#x})",
                                 self.xen(f"Section [{index}] addr ({addr:#x}) is not aligned properly ({align:#x})"))
            if nobits and flags & (SH_FLAGS.SHF_WRITE | SH_FLAGS.SHF_ALLOC) and size > abi.PAYLOAD_MAX_SIZE:
                raise self.error(errno.EINVAL, f"section {index} NOBITS size {size:#x} is over "
                                               f"{abi.PAYLOAD_MAX_SIZE:#x}")
            section = _Section(index, "", sh_type, flags, addr, offset, size, link, info, align, entsize,
                               name_offset, b"" if nobits else self.data[offset : offset + size],
                               wraps=not nobits and offset + size >= _ADDRESS_SPACE)
            sections.append(section)
            if sh_type == _SHT_SYMTAB:
                if self.symtab_index:
                    raise self.error(errno.EOPNOTSUPP, f"second symbol table (section {index}): multiple symbol tables "
                                                          "are not supported",
                                     self.xen("Unsupported multiple symbol tables"))
                self.symtab_index = index
                if link >= self.shnum:
                    raise self.error(errno.EINVAL, f"symbol table links to string table {link}, past the end",
                                     self.xen(f"Symbol table idx ({link}) to strtab past end ({self.shnum})"))
        if not self.symtab_index:
            raise self.error(errno.EINVAL, "no symbol table", self.xen("No symbol table found"))
        symtab = sections[self.symtab_index]
        if not symtab.size or symtab.entsize < _SYM.size or symtab.size % symtab.entsize:
            raise self.error(errno.EINVAL, f"symbol table (index {symtab.index}) header is corrupted",
                             self.xen("Symbol table header is corrupted"))
        self._read_whole(symtab)
        if symtab.link == 0:
            raise self.error(errno.EINVAL, f"symbol table links to string table 0 {_FAULT}")
        self.strtab = sections[symtab.link]
        if not self._is_strtab(self.strtab):
            raise self.error(errno.EINVAL, f"string table (section {self.strtab.index}) is corrupted",
                             self.xen("String table section is corrupted"))
        return sections

    def _read_whole(self, section: _Section) -> None:
        """A section Xen reads end to end must lie in the file: one whose end wraps has it read past the end."""
        if section.wraps:
            raise self.error(errno.EINVAL, f"{section} data ({section.offset:#x}+"
                                           f"{section.size:#x}) ends past 2^64 {_FAULT}")

    def _is_strtab(self, section: _Section) -> bool:
        """elf_verify_strtab: SHT_STRTAB, not empty, NUL first and last."""
        if section.index == 0 or section.type != _SHT_STRTAB or not section.size:
            return False
        self._read_whole(section)
        return not section.data[0] and not section.data[-1]

    def _name_sections(self) -> None:
        shstrtab = self.sections[self.shstrndx]
        if not self._is_strtab(shstrtab):
            raise self.error(errno.EINVAL, f"section name table (section {shstrtab.index}) is corrupted",
                             self.xen("Section string table is corrupted"))
        for section in self.sections[1:]:
            if section.name_offset >= shstrtab.size:
                raise self.error(errno.EINVAL, f"section {section.index} name is outside the section name table",
                                 self.xen(f"Section {section.index} name is not within .shstrtab"))
            section.name = _cstring(shstrtab.data, section.name_offset)

    def _read_symbols(self) -> list[_Symbol]:
        symtab = self.sections[self.symtab_index]
        symbols = [_Symbol("", 0, False, _SHN_UNDEF, 0)]
        for index in range(1, symtab.size // symtab.entsize):
            st_name, info, _, shndx, value, _ = _SYM.unpack_from(symtab.data, index * symtab.entsize)
            if st_name >= self.strtab.size:
                raise self.error(errno.EINVAL, f"symbol {index} name is outside the string table",
                                 self.xen(f"Symbol [{index}] name is not within .strtab"))
            symbols.append(_Symbol(_cstring(self.strtab.data, st_name), info & 0xF, info >> 4 != _STB_LOCAL,
                                   shndx, value))
        return symbols

    # -- layout (move_payload) -----------------------------------------------

    def _loaded(self) -> list[_Section]:
        return [s for s in self.sections[1:] if s.allocated]

    def _lay_out(self, *, base: int, limit: int) -> dict[RegionKind, tuple[int, bytearray]]:
        """Text, then rodata, then data, each region page aligned; sections at their alignment."""
        loaded = self._loaded()
        for section in loaded:
            if section.flags & SH_FLAGS.SHF_EXECINSTR and section.flags & SH_FLAGS.SHF_WRITE:
                raise self.error(errno.EOPNOTSUPP, f"{section} is writable and executable")
            self._read_whole(section)
        regions = {}
        cursor = base
        for kind in RegionKind:
            members = [s for s in loaded if _kind(s) is kind]
            if not members:
                continue
            start = _align(cursor, abi.PAGE_SIZE)
            size = 0
            for section in members:
                offset = _align(size, section.addralign)
                section.address = start + offset
                size = offset + section.size
            if start + size > limit:
                raise self.error(errno.ENOMEM, f"needs memory up to {start + size:#x}, past the limit {limit:#x}",
                                 self.xen("Could not allocate memory for payload"))
            buf = bytearray(size)
            for section in members:
                at = section.address - start
                buf[at : at + len(section.data)] = section.data
            regions[kind] = (start, buf)
            cursor = start + size
        return regions

    # -- symbols (livepatch_elf_resolve_symbols, build_symbol_table) ---------

    def _symbols(self, *, only_global: bool = False) -> dict[str, int]:
        """Xen's payload symbols: named, in a loaded section, not a `.L` label of a mergeable one."""
        found: dict[str, int] = {}
        for sym, value in zip(self.raw_symbols, self.values, strict=True):
            if not (sym.name and 0 < sym.shndx < len(self.sections)):
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
                raise self.error(errno.EEXIST, f"duplicate new symbol: {name}",
                                 self.xen(f"duplicate new symbol: {name}"))
        return new

    def _resolve_symbol(self, index: int, sym: _Symbol) -> int:
        if index == _STN_UNDEF or sym.shndx == _SHN_ABS:
            return sym.value
        if sym.shndx == _SHN_COMMON:
            raise self.error(errno.EINVAL, f"symbol {sym.name} is a common symbol",
                             self.xen(f"Unexpected common symbol: {sym.name}"))
        if sym.shndx == _SHN_UNDEF:
            address = self.host.resolve(sym.name)
            if address is None:
                raise self.error(errno.ENOENT, f"unknown symbol {sym.name}", self.xen(f"Unknown symbol: {sym.name}"))
            return address
        if sym.shndx >= _SHN_LORESERVE or sym.shndx >= len(self.sections):
            code, what = (errno.EOPNOTSUPP, "reserved") if sym.shndx >= _SHN_LORESERVE else (errno.EINVAL, "past-end")
            raise self.error(code, f"symbol {sym.name or index} has {what} section index {sym.shndx:#x}",
                             self.xen(f"Out of bounds symbol section {sym.shndx:#x}"))
        section = self.sections[sym.shndx]
        if not section.allocated:
            self.raw_symbols[index] = _Symbol(sym.name, sym.kind, sym.is_global, sym.shndx, sym.value, ignored=True)
            return sym.value
        return (section.address + sym.value) % _ADDRESS_SPACE

    # -- relocations (livepatch_elf_perform_relocs) --------------------------

    def _relocate(self, regions: dict[RegionKind, tuple[int, bytearray]]) -> None:
        for rel in self.sections[1:]:
            if rel.type not in (_SHT_REL, _SHT_RELA) or rel.info >= len(self.sections):
                continue
            if rel.info == 0:
                raise self.error(errno.EINVAL, f"{rel} applies to section 0 {_FAULT}")
            target = self.sections[rel.info]
            if not target.allocated:
                continue  # e.g. .rela.debug_info
            if rel.link != self.symtab_index:
                raise self.error(errno.EINVAL, f"{rel} does not use the symbol table",
                                 self.xen(f"Relative link of {rel.name} is incorrect ({rel.link}, "
                                          f"expected={self.symtab_index})"))
            if not rel.size:
                continue
            if rel.entsize < (_RELA.size if rel.type == _SHT_RELA else _REL_SIZE) or rel.size % rel.entsize:
                raise self.error(errno.EINVAL, f"{rel} has a corrupted entry size",
                                 self.xen("Section relative header is corrupted"))
            if rel.type == _SHT_REL:
                raise self.error(errno.EOPNOTSUPP, f"{rel} is SHT_REL; only SHT_RELA is supported",
                                 self.xen("SHT_REL relocation unsupported"))
            self._read_whole(rel)
            start, buf = regions[_kind(target)]
            at = target.address - start
            self._apply(rel, target, memoryview(buf)[at : at + target.size])

    def _apply(self, rel: _Section, target: _Section, contents: memoryview) -> None:
        for i in range(rel.size // rel.entsize):
            offset, info, addend = _RELA.unpack_from(rel.data, i * rel.entsize)
            sym_index, reloc_type = info >> 32, info & 0xFFFFFFFF
            where = f"{self.name}: {rel.name} entry {i}"
            if sym_index == _STN_UNDEF:
                raise LivepatchError(errno.EOPNOTSUPP, f"{where} has no symbol (STN_UNDEF)",
                                     xen_log=self.xen("Encountered STN_UNDEF"))
            if sym_index >= len(self.values):
                raise LivepatchError(errno.EINVAL, f"{where} uses symbol {sym_index}, past the symbol table end",
                                     xen_log=self.xen(f"Relative relocation wants symbol@{sym_index} which is "
                                                      "past end"))
            if self.raw_symbols[sym_index].ignored:
                raise LivepatchError(errno.EINVAL, f"{where} is against {self._describe(sym_index)}, in a section "
                                                   "that is not loaded",
                                     xen_log=self.xen(f"Relocation against ignored symbol "
                                                      f"{self.raw_symbols[sym_index].name} cannot be resolved"))
            kind = self.arch.relocations.get(reloc_type)
            if kind is None:
                raise LivepatchError(errno.EOPNOTSUPP, f"{where}: unsupported relocation type "
                                                       f"{self.arch.relocation_name(reloc_type)}",
                                     xen_log=self.xen(f"Unhandled relocation {reloc_type}"))
            try:
                kind.apply(contents, offset, symbol=self.values[sym_index], addend=addend,
                           place=target.address + offset,
                           where=f"{where} ({kind.name} against {self._describe(sym_index)} at "
                                 f"{target.name}+{offset:#x})")
            except LivepatchError as exc:
                raise LivepatchError(exc.errno, exc.reason, xen_log=self.xen(
                    f"Overflow in relocation {i} in {rel.name} for {target.name}" if exc.errno == errno.EOVERFLOW
                    else f"Relative relocation offset is past {target.name} section")) from None

    def _describe(self, sym_index: int) -> str:
        sym = self.raw_symbols[sym_index]
        if sym.kind == _STT_SECTION and 0 < sym.shndx < len(self.sections):
            return self.sections[sym.shndx].name
        return sym.name or f"symbol {sym_index}"

    # -- special sections (check_special_sections, check_patching_sections) --

    def _section(self, name: str) -> _Section | None:
        """The first section called `name`, as Xen finds it."""
        return next((s for s in self.sections[1:] if s.name == name), None)

    def _mandatory(self, name: str) -> _Section:
        section = self._section(name)
        if section is None:
            raise self.error(errno.EINVAL, f"{name} is missing", self.xen(f"{name} is missing"))
        if not section.size:
            raise self.error(errno.EINVAL, f"{name} is empty", self.xen(f"{name} is empty"))
        return section

    def _check_special_sections(self) -> None:
        for name in abi.NOTE_SECTIONS:
            if self.staging and name == abi.XEN_DEPENDS:
                continue  # checked first, by check_xen_buildid
            self._mandatory(name)

    def _check_xen_build_id(self) -> bytes:
        """Staging's check_xen_buildid, right after reading the ELF: .livepatch.xen_depends (read from the
        file) names the hypervisor's build-id."""
        section = self._section(abi.XEN_DEPENDS)
        if section is None:
            raise self.error(errno.EINVAL, f"{abi.XEN_DEPENDS} is missing",
                             self.xen(f"section {abi.XEN_DEPENDS} is missing"))
        build_id = _parse_note(section.data) if section.size > abi.NOTE_HEADER.size else -errno.EINVAL
        if isinstance(build_id, int) or not build_id:
            rc = build_id if isinstance(build_id, int) else -errno.EINVAL
            raise self.error(errno.EINVAL, f"failed to parse section {abi.XEN_DEPENDS} as build-id: {rc}",
                             self.xen(f"failed to parse section {abi.XEN_DEPENDS} as build-id: {rc}"))
        if build_id != self.host.build_id:
            raise self.error(errno.EINVAL, f"{abi.XEN_DEPENDS} {build_id.hex()} is not the hypervisor's "
                                           f"build-id {self.host.build_id.hex()}",
                             (self.xen("build-id mismatch:"), f"  livepatch: {build_id.hex()}",
                              f"        xen: {self.host.build_id.hex()}"))
        return build_id

    def _compare_xen_build_id(self, xen_depends: bytes | None) -> None:
        """Xen 4.17's xen_build_id_dep, after prepare_payload."""
        if xen_depends != self.host.build_id:
            raise self.error(errno.EINVAL, f"{abi.XEN_DEPENDS} {(xen_depends or b'').hex()} is not the "
                                           f"hypervisor's build-id {self.host.build_id.hex()}",
                             self.xen("check against hypervisor build-id failed"))

    def _note(self, name: str) -> bytes:
        """The build-id in a GNU build-id note (prepare_payload; Xen 4.17: EINVAL for every fault of it, staging:
        the parser's errno, ENODATA for a note of another type or name)."""
        section = self._mandatory(name)
        if section.size <= abi.NOTE_HEADER.size:
            raise self.error(errno.EINVAL, f"{section} is too small for a note")
        build_id = _parse_note(self._contents(section))
        if isinstance(build_id, int):
            raise self.error(-build_id if self.staging else errno.EINVAL, f"{section} is not a GNU build-id note")
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
            raise self.error(errno.EINVAL, "Nothing to patch. Aborting...", self.xen("Nothing to patch. Aborting..."))
        found = [(s, layout) for layout in abi.FUNC_LAYOUTS if (s := self._section(layout.section))]
        if not found:
            return None, None
        if len(found) > 1:
            names = " and ".join(layout.section for layout in abi.FUNC_LAYOUTS)
            raise self.error(errno.EINVAL, f"has both of the function record sections {names}")
        section, layout = found[0]
        self._section_ok(section, layout.record.size)
        return section, layout

    def _section_ok(self, section: _Section, size: int) -> None:
        """Xen's section_ok: the section holds whole entries of `size` bytes."""
        if section.size % size:
            raise self.error(errno.EINVAL, f"{section} size {section.size} is not a multiple of {size} bytes",
                             self.xen(f"Wrong size {section.size} of {section.name} (must be multiple of {size})"))

    # -- function records (prepare_payload) ----------------------------------

    def _funcs(self, section: _Section, layout: abi.FuncLayout) -> Iterator[FuncRecord]:
        records = self._contents(section)
        for i, fields in enumerate(layout.record.iter_unpack(records)):
            name_ptr, new_addr, old_addr, new_size, old_size, version = fields[:6]
            where = f"function record {i} in {section.name}"
            if version != layout.version:
                raise self.error(errno.EOPNOTSUPP, f"{where} has version {version}, expected {layout.version}",
                                 self.xen(f"Wrong version ({version}). Expected {layout.version}"))
            if old_size == 0:
                raise self.error(errno.EINVAL, f"{where} has old_size 0", self.xen("Address or size fields are zero"))
            name = self._name(name_ptr, where, needed=old_addr == 0)
            where = f"function record {i} ({name})"
            if old_addr == 0:
                resolved = self.host.resolve(name)
                if resolved is None:
                    raise self.error(errno.ENOENT, f"{where}: cannot resolve the old address of {name}",
                                     self.xen(f"Could not resolve old address of {name}"))
                old_addr = resolved
            offset = self.arch.patch_offset(self.host.code(old_addr, 4) or b"")
            self._verify_func(where, old_addr, old_size, new_addr, new_size, offset)
            if new_addr and not self.arch.jump_reaches(old_addr, new_addr):
                raise self.error(errno.EOVERFLOW, f"{where}: {new_addr:#x} is out of jump range from {old_addr:#x}")
            self._check_bounds(where, old_addr, old_size, new_addr)
            patch_size = new_size - offset if new_addr == 0 else self.arch.jump_size
            if patch_size < 0:
                self.deferred.append(self.error(
                    errno.EINVAL, f"{where} NOPs {new_size} bytes of a function whose first {offset} must stay: "
                                  f"Xen's length new_size - {offset} wraps, it would write past the function at "
                                  "apply (Xen would fault there)"))
            expect = self._expectation(fields[6:], old_size, where) if layout.has_expectation else None
            yield FuncRecord(name, new_addr, old_addr, new_size, old_size, version, expect, offset, max(patch_size, 0))

    def _verify_func(self, where: str, old_addr: int, old_size: int, new_addr: int, new_size: int,
                     offset: int) -> None:
        """arch_livepatch_verify_func (Xen prints nothing): room for the NOPs, or for the jump past `offset`."""
        if new_addr == 0:
            if new_size > abi.NOP_MAX:
                raise self.error(errno.EOPNOTSUPP, f"{where} NOPs {new_size} bytes, at most {abi.NOP_MAX}")
            if old_size < new_size:
                raise self.error(errno.EINVAL, f"{where} NOPs {new_size} bytes of a {old_size}-byte function")
        elif old_size < self.arch.jump_size + offset:
            past = f" past the {offset}-byte ENDBR64 it starts with" if offset else ""
            raise self.error(errno.EINVAL, f"{where} old_size {old_size} is below {self.arch.jump_size + offset}: "
                                           f"no room for the jump{past}")

    def _name(self, address: int, where: str, *, needed: bool) -> str:
        """The record's name: in the payload, else in the hypervisor. Xen reads it only to resolve a zero
        old_addr (`needed`); otherwise an unreadable one is just not shown."""
        for read in (lambda at, n: _read_regions(self.regions, at, n), self.host.code):
            # the longest readable run, up to a name's room
            tail = next((found for length in range(abi.NAME_MAX, 0, -1) if (found := read(address, length))), None)
            if tail is not None and b"\0" in tail:
                return tail[: tail.index(b"\0")].decode("utf-8", errors="replace")
        if needed:
            raise self.error(errno.EINVAL, f"{where} name at {address:#x} is not a string in the payload or the "
                                           f"hypervisor {_FAULT}")
        return f"(name at {address:#x})"

    def _check_bounds(self, where: str, old_addr: int, old_size: int, new_addr: int) -> None:
        """The old function lies in the host's text, the new one in this payload's own text (testbed checks,
        raised after Xen's)."""
        if not self.host.in_text(old_addr, old_addr + old_size):
            self.deferred.append(self.error(
                errno.EINVAL, f"{where} patches {old_addr:#x}+{old_size:#x}, outside the text of the hypervisor "
                              "and of the loaded payloads (Xen would fault here reading it if unmapped)"))
        text = [r for r in self.regions if r.kind is RegionKind.TEXT]
        if new_addr and not any(r.address <= new_addr < r.end for r in text):
            self.deferred.append(self.error(
                errno.EINVAL, f"{where} new function {new_addr:#x} is outside the payload's text"))

    def _expectation(self, fields: tuple, old_size: int, where: str) -> bytes | None:
        """A v2 expectation; its reserved bits and length Xen checks at apply, the testbed at upload (after
        Xen's upload checks)."""
        flags, data = fields
        if not flags & abi.EXPECT_ENABLED:
            return None
        length = (flags >> abi.EXPECT_LEN_SHIFT) & abi.EXPECT_LEN_MASK
        if flags & abi.EXPECT_RSV_MASK:
            self.deferred.append(self.error(errno.EINVAL, f"{where} expectation has reserved bits set"))
        elif length > old_size:
            self.deferred.append(self.error(errno.ERANGE, f"{where} expects {length} bytes of a {old_size}-byte "
                                                          "function"))
        return data[:length]

    def _hooks(self, kind: str) -> tuple[int, ...]:
        """The hook pointers; a single hook Xen sees as NULL (not loaded, or 0) is no hook."""
        section = self._section(abi.HOOK_SECTIONS[kind])
        if section is None:
            return ()
        self._section_ok(section, abi.HOOK_POINTER.size)
        if kind not in abi.MULTI_HOOKS and section.size != abi.HOOK_POINTER.size:
            raise self.error(errno.EINVAL, f"{section} must hold exactly one hook, not "
                                           f"{section.size // abi.HOOK_POINTER.size}")
        if not section.allocated:
            if kind in abi.MULTI_HOOKS:
                raise self.error(errno.EINVAL, f"{section} is not loaded {_FAULT}")
            return ()
        pointers = tuple(ptr for (ptr,) in abi.HOOK_POINTER.iter_unpack(self._contents(section)))
        return pointers if kind in abi.MULTI_HOOKS or pointers != (0,) else ()

    # -- optional sections (prepare_payload) ---------------------------------

    def _check_optional_sections(self) -> None:
        """.bug_frames.N and .ex_table hold whole entries; .altinstructions is checked entry by entry."""
        for name in BUGFRAME_SECTIONS:
            if section := self._section(name):
                self._section_ok(section, BUG_FRAME_SIZE)
        if section := self._section(".altinstructions"):
            self._check_alternatives(section)
        if section := self._section(".ex_table"):
            self._section_ok(section, EX_TABLE_ENTRY_SIZE)

    def _check_alternatives(self, section: _Section) -> None:
        """Each alternative's original code lies in the payload's text, its replacement in .altinstr_replacement."""
        self._section_ok(section, ALT_INSTR.size)
        if not section.size:
            return
        text = next((r for r in self.regions if r.kind is RegionKind.TEXT), None)
        if text is None:
            raise self.error(errno.EINVAL, "has .altinstructions but no text",
                             f"livepatch: {self.name} Alternatives provided, but no .text")
        replacements = self._section(".altinstr_replacement")
        if replacements is None:
            raise self.error(errno.EINVAL, "has .altinstructions but no .altinstr_replacement",
                             f"livepatch: {self.name} .altinstructions provided, but no .altinstr_replacement")
        entries = self._contents(section)
        for i, (orig_offset, repl_offset, _, orig_len, repl_len, _, _) in enumerate(ALT_INSTR.iter_unpack(entries)):
            at = section.address + i * ALT_INSTR.size
            orig, repl = at + orig_offset, at + 4 + repl_offset
            text_size = text.end - text.address
            if orig < text.address or orig_len > text_size or orig + orig_len > text.end:
                raise self.error(errno.EINVAL, f"alternative {i} patches {orig:#x}+{orig_len:#x}, outside the "
                                               "payload's text",
                                 f"livepatch: {self.name} Alternative orig {orig:016x}+{orig_len:#x} outside "
                                 f"payload text {text.address:016x}+{text_size:#x}")
            end = replacements.address + replacements.size
            if repl < replacements.address or repl_len > replacements.size or repl + repl_len > end:
                raise self.error(errno.EINVAL, f"alternative {i} replacement {repl:#x}+{repl_len:#x} is outside "
                                               ".altinstr_replacement",
                                 f"livepatch: {self.name} Alternative repl {repl:016x}+{repl_len:#x} outside "
                                 f".altinstr_replacement {replacements.address:016x}+{replacements.size:#x}")

    def _metadata(self) -> bytes:
        """.modinfo: NUL-terminated strings Xen keeps for `list`."""
        section = self._section(".modinfo")
        if section is None:
            return b""
        contents = self._contents(section)
        if not contents or contents[-1]:
            raise self.error(errno.EINVAL, f"{section} does not end with a NUL",
                             f"livepatch: {self.name}: Incorrect metadata format detected")
        return contents

    # -- reading the relocated image -----------------------------------------

    def _contents(self, section: _Section) -> bytes:
        """A section's bytes as Xen reads them in prepare_payload: loaded, after relocation; not loaded, Xen
        4.17 reads its NULL load address (a fault), staging the file's bytes."""
        if not section.allocated:
            if self.staging:
                return section.data
            raise self.error(errno.EINVAL, f"{section} is not loaded {_FAULT}")
        region = next(r for r in self.regions if r.kind is _kind(section))
        at = section.address - region.address
        return region.data[at : at + section.size]


def metadata_strings(metadata: bytes) -> tuple[str, ...]:
    """The NUL-terminated strings of a payload's .modinfo, as Xen prints them one a line (an empty one too)."""
    return tuple(text.decode(errors="surrogateescape") for text in metadata.split(b"\0")[:-1])


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
    end = table.find(b"\0", offset)
    return table[offset : end if end >= 0 else len(table)].decode("utf-8", errors="replace")
