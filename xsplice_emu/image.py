"""The firmware ELF: loadable segments, symbols and build-id (pyelftools)."""

from __future__ import annotations

import bisect
import hashlib
import io
import struct
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

from elftools.common.exceptions import ELFError
from elftools.construct import ConstructError
from elftools.elf.constants import P_FLAGS
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import NoteSection, SymbolTableSection

from .arch import Architecture, for_elf
from .errors import ImageError
from .files import read_file

IMAGE_LIMIT = 256 * 1024 * 1024
"""Largest firmware ELF read (bytes)."""
LOADED_LIMIT = 4
"""Images `load_image` keeps, to give back when the same file is read again with the same bytes."""

T = TypeVar("T")
MALFORMED = (ConstructError, OverflowError)
"""What pyelftools raises on a malformed file besides ELFError: a structure it cannot parse, an offset past any
file."""
STT_NOTYPE, STT_OBJECT, STT_FUNC, STT_FILE = 0, 1, 2, 4
STB_LOCAL = 0
SHN_UNDEF = 0


CodeReader = Callable[[int, int], bytes | None]
"""Code bytes at (address, length): guest memory now, or an image as built (None: not there)."""


@dataclass(frozen=True)
class Segment:
    """One PT_LOAD segment: where it goes, what it holds, how it may be used."""

    address: int
    data: bytes
    memory_size: int
    readable: bool
    writable: bool
    executable: bool


@dataclass(frozen=True)
class Symbol:
    """A named address of the image; `file` is set for local (static) symbols."""

    name: str
    address: int
    size: int
    kind: str  # "func", "object", "notype"
    is_local: bool
    file: str | None

    @property
    def qualified_name(self) -> str:
        """`file#name` for static symbols (Xen's convention), else the name."""
        return f"{self.file}#{self.name}" if self.is_local and self.file else self.name


@dataclass(frozen=True)
class Image:
    """A loaded firmware image."""

    path: Path
    arch: Architecture
    entry: int
    segments: tuple[Segment, ...]
    symbols: tuple[Symbol, ...]
    build_id: bytes
    sha256: bytes = b""
    """Of the file's bytes (empty: not from a file; what is derived is then kept in this process only)."""

    def symbol(self, name: str) -> Symbol:
        """The symbol called `name` (global, or `file#name` for a static)."""
        found = self.lookup(name)
        if found is None:
            raise ImageError(f"{self.path}: no symbol {name!r}")
        return found

    def lookup(self, name: str) -> Symbol | None:
        """The symbol called `name`, or None; globals win over statics."""
        return self._by_name.get(name)

    def resolve(self, name: str) -> int | None:
        """Address of `name` (or `file#name`), None when the image has no such symbol."""
        found = self.lookup(name)
        return found.address if found else None

    def address(self, name: str) -> int:
        return self.symbol(name).address

    def function_at(self, address: int) -> tuple[Symbol, int] | None:
        """The function containing `address` and the offset into it."""
        starts, funcs = self._functions
        i = bisect.bisect_right(starts, address) - 1
        if i < 0:
            return None
        func = funcs[i]
        if address < func.address + max(func.size, 1):
            return func, address - func.address
        return None

    def describe(self, address: int) -> str:
        """`name+0xoff` for an address inside a function, else hex."""
        found = self.function_at(address)
        if found is None:
            return f"{address:#x}"
        func, offset = found
        return f"{func.qualified_name}+{offset:#x}" if offset else func.qualified_name

    def read(self, address: int, length: int) -> bytes | None:
        """The image's bytes at `[address, address + length)` as built (None unless all are in its file data)."""
        for seg in self.segments:
            if seg.address <= address and address + length <= seg.address + len(seg.data):
                return seg.data[address - seg.address:address - seg.address + length]
        return None

    def code_ranges(self) -> list[tuple[int, int]]:
        """Where its code is, `[begin, end)`: `_stext` to `_etext` when it has both (Xen's one segment also
        holds its data), else its executable segments."""
        begin, end = self.resolve("_stext"), self.resolve("_etext")
        if begin is not None and end is not None and begin < end:
            return [(begin, end)]
        return [(seg.address, seg.address + seg.memory_size) for seg in self.segments if seg.executable]

    @property
    def end(self) -> int:
        """First address past the image."""
        return max(s.address + s.memory_size for s in self.segments)

    def functions(self) -> list[Symbol]:
        """Every function symbol, by address."""
        return self._functions[1]

    def derived(self, compute: Callable[[Image], T], *,
                keep: Callable[[Image, Callable[[Image], T]], T] | None = None) -> T:
        """`compute(self)`, computed once per image and shared by every machine of it (for what follows from the code
        as built: the instruction sites an engine hooks, the functions an NMI reaches; never changed by its users).
        `compute` is a module-level function or a classmethod, the key it is kept under; `keep(self, compute)`,
        when given, gives it in its place (`provision.derived`: from the build cache)."""
        if compute not in self._derived:
            self._derived[compute] = keep(self, compute) if keep is not None else compute(self)
        return self._derived[compute]

    @cached_property
    def _derived(self) -> dict[Callable[[Image], Any], Any]:
        return {}

    @cached_property
    def decoded(self) -> tuple[tuple[int, str], ...]:
        """(address, text) of each instruction of its functions as built, decoded once per image."""
        found = []
        for func in self.functions():
            code = self.read(func.address, func.size) if func.size else None
            if code is not None:
                found += [(address, text) for address, _, text in self.arch.instructions(code, func.address)]
        return tuple(found)

    @cached_property
    def _by_name(self) -> dict[str, Symbol]:
        index: dict[str, Symbol] = {}
        for sym in self.symbols:
            if sym.is_local:
                index.setdefault(sym.qualified_name, sym)
        for sym in self.symbols:
            if not sym.is_local:
                index[sym.name] = sym
        for sym in self.symbols:
            index.setdefault(sym.name, sym)
        return index

    @cached_property
    def function_span(self) -> tuple[int, int]:
        """`[begin, end)` from the first function's start to the last one's end: `function_at` finds nothing
        outside it (a quick no for the data words on a stack)."""
        funcs = [s for s in self.symbols if s.kind == "func"]
        if not funcs:
            return 0, 0
        return min(f.address for f in funcs), max(f.address + max(f.size, 1) for f in funcs)

    @cached_property
    def _functions(self) -> tuple[list[int], list[Symbol]]:
        funcs = sorted((s for s in self.symbols if s.kind == "func"), key=lambda s: (s.address, s.is_local))
        return [f.address for f in funcs], funcs


_loaded: dict[tuple[Path, bytes], Image] = {}
"""The images read last, least recent first, by path and sha256 of their bytes (parsing Xen's symbols takes a
quarter of a second, and a test or a campaign loads the same image over and over)."""


def load_image(path: str | Path, *, what: str = "firmware") -> Image:
    """Read a hypervisor ELF (`what` it is, for errors); raise ImageError naming the file when it is not one. A file
    read again with the same bytes gives the same Image, with what was derived from it."""
    path = Path(path)
    data = read_file(path, limit=IMAGE_LIMIT, what=what)
    key = (path, hashlib.sha256(data).digest())
    image = _loaded.pop(key, None) or _parse(path, data, key[1])
    _loaded[key] = image
    while len(_loaded) > LOADED_LIMIT:
        del _loaded[next(iter(_loaded))]
    return image


def _parse(path: Path, data: bytes, sha256: bytes) -> Image:
    try:
        with io.BytesIO(data) as stream:
            elf = ELFFile(stream)
            arch = for_elf(elf["e_machine"], elf.elfclass)
            if arch is None:
                raise ImageError(f"{path}: not an image of a supported architecture "
                                 f"({elf['e_machine']}, ELF{elf.elfclass})")
            if elf["e_type"] != "ET_EXEC":
                raise ImageError(f"{path}: not an executable image (e_type {elf['e_type']})")
            segments = tuple(_segments(elf))
            symbols = tuple(_symbols(elf, path))
            build_id = elf_build_id(elf)
            entry = elf["e_entry"]
    except ELFError as exc:
        raise ImageError(f"{path}: not an ELF file ({exc})") from None
    except MALFORMED as exc:
        raise ImageError(f"{path}: not a well-formed ELF file ({_malformed(exc)})") from None
    if not segments:
        raise ImageError(f"{path}: no loadable segment")
    return Image(path=path, arch=arch, entry=entry, segments=segments, symbols=symbols, build_id=build_id,
                 sha256=sha256)


def _segments(elf: ELFFile):
    for seg in elf.iter_segments():
        if seg["p_type"] != "PT_LOAD":
            continue
        flags = seg["p_flags"]
        yield Segment(
            address=seg["p_vaddr"],  # where the code runs: its symbols are these addresses
            data=seg.data(),
            memory_size=seg["p_memsz"],
            readable=bool(flags & P_FLAGS.PF_R),
            writable=bool(flags & P_FLAGS.PF_W),
            executable=bool(flags & P_FLAGS.PF_X),
        )


_KINDS = {STT_FUNC: "func", STT_OBJECT: "object", STT_NOTYPE: "notype"}
ELF64_SYM = "IBBHQQ"
"""Elf64_Sym: st_name, st_info, st_other, st_shndx, st_value, st_size (every supported image is ELF64)."""


def _symbols(elf: ELFFile, path: Path):
    """The named function, object and no-type symbols of `.symtab`, each static one with the STT_FILE before it.
    Read with `struct` (pyelftools' own reading took ~0.15 s for Xen's 7,000 symbols)."""
    symtab = elf.get_section_by_name(".symtab")
    if not isinstance(symtab, SymbolTableSection):
        raise ImageError(f"{path}: no symbol table")
    strings, table = symtab.stringtable.data(), symtab.data()
    entry = struct.Struct(("<" if elf.little_endian else ">") + ELF64_SYM)
    current_file = None
    for name_offset, info, _, shndx, value, size in entry.iter_unpack(table[:len(table) // entry.size * entry.size]):
        kind = info & 0xF
        end = strings.find(b"\0", name_offset)
        name = strings[name_offset:end].decode("utf-8", "replace") if end >= 0 else ""
        if kind == STT_FILE:
            current_file = name
            continue
        if kind not in _KINDS or not name or shndx == SHN_UNDEF:
            continue
        is_local = info >> 4 == STB_LOCAL
        yield Symbol(
            name=name,
            address=value,
            size=size,
            kind=_KINDS[kind],
            is_local=is_local,
            file=current_file if is_local else None,
        )


def image_build_id(path: Path) -> bytes:
    """The GNU build-id of the ELF at `path`, read without its symbols (empty when it has none or is no ELF)."""
    try:
        with path.open("rb") as stream:
            return elf_build_id(ELFFile(stream))
    except (OSError, ELFError, *MALFORMED):
        return b""


def elf_build_id(elf: ELFFile) -> bytes:
    """The ELF's GNU build-id (empty when it has none)."""
    for section in elf.iter_sections():
        if not isinstance(section, NoteSection):
            continue
        for note in section.iter_notes():
            if note["n_type"] == "NT_GNU_BUILD_ID":  # pyelftools gives it in hex when the note's name is "GNU"
                desc = note["n_desc"]
                return bytes.fromhex(desc) if isinstance(desc, str) else bytes(desc)
    return b""


def _malformed(error: BaseException) -> str:
    """What pyelftools tripped on, in a few words."""
    if isinstance(error, OverflowError):
        return "an offset or size beyond any file"
    return f"a structure cut short or out of range: {error}"
