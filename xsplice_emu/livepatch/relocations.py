"""x86-64 RELA relocations a payload may carry: S+A and S+A-P, each with its overflow check."""

from __future__ import annotations

import enum
import errno
from dataclasses import dataclass

from elftools.elf.enums import ENUM_RELOC_TYPE_x64

from ..errors import LivepatchError

_TYPE_NAMES = {value: name for name, value in ENUM_RELOC_TYPE_x64.items() if isinstance(value, int)}
_TYPE_NAMES.setdefault(41, "R_X86_64_GOTPCRELX")  # missing from pyelftools' table


class Overflow(enum.Enum):
    """How a computed value must fit its field."""

    WRAP = "wrap"  # modulo 2**bits (the 64-bit field)
    SIGNED = "signed"
    UNSIGNED = "unsigned"


@dataclass(frozen=True)
class Relocation:
    """A relocation kind: its name, field width (bytes) and overflow rule."""

    name: str
    width: int
    overflow: Overflow

    def value(self, *, symbol: int, addend: int, place: int) -> int:
        raise NotImplementedError

    def apply(
        self, section: bytearray | memoryview, offset: int, *, symbol: int, addend: int, place: int, where: str
    ) -> None:
        """Write the relocated field at `offset` of `section` (loaded at `place - offset`)."""
        if offset + self.width > len(section):
            raise LivepatchError(
                errno.EINVAL, f"{where}: {self.width}-byte field is past the section end ({len(section):#x} bytes)"
            )
        value = self.value(symbol=symbol, addend=addend, place=place)
        bits = 8 * self.width
        if self.overflow is Overflow.SIGNED and not -(1 << (bits - 1)) <= value < 1 << (bits - 1):
            raise LivepatchError(errno.EOVERFLOW, f"{where}: {value:#x} does not fit in signed {bits} bits")
        if self.overflow is Overflow.UNSIGNED and not 0 <= value < 1 << bits:
            raise LivepatchError(errno.EOVERFLOW, f"{where}: {value:#x} does not fit in unsigned {bits} bits")
        section[offset : offset + self.width] = (value & ((1 << bits) - 1)).to_bytes(self.width, "little")


@dataclass(frozen=True)
class Ignored(Relocation):
    """R_X86_64_NONE: nothing to do."""

    def apply(
        self, section: bytearray | memoryview, offset: int, *, symbol: int, addend: int, place: int, where: str
    ) -> None:
        return None


@dataclass(frozen=True)
class Absolute(Relocation):
    """S + A."""

    def value(self, *, symbol: int, addend: int, place: int) -> int:
        return symbol + addend


@dataclass(frozen=True)
class PCRelative(Relocation):
    """S + A - P."""

    def value(self, *, symbol: int, addend: int, place: int) -> int:
        return symbol + addend - place


RELOCATIONS: dict[int, Relocation] = {
    ENUM_RELOC_TYPE_x64[kind.name]: kind
    for kind in (
        Ignored("R_X86_64_NONE", 0, Overflow.WRAP),
        Absolute("R_X86_64_64", 8, Overflow.WRAP),
        PCRelative("R_X86_64_PC32", 4, Overflow.SIGNED),
        PCRelative("R_X86_64_PLT32", 4, Overflow.SIGNED),  # no PLT: a direct PC32
        Absolute("R_X86_64_32", 4, Overflow.UNSIGNED),
        Absolute("R_X86_64_32S", 4, Overflow.SIGNED),
    )
}
"""Supported relocation kinds, keyed by ELF type number."""


def type_name(reloc_type: int) -> str:
    """`R_X86_64_PC32` for 2; a numbered name for a type pyelftools does not know."""
    return _TYPE_NAMES.get(reloc_type, f"R_X86_64 type {reloc_type}")


def relocation_kind(reloc_type: int, *, where: str) -> Relocation:
    """The kind for `reloc_type`; EOPNOTSUPP naming the type if it is not supported."""
    kind = RELOCATIONS.get(reloc_type)
    if kind is None:
        raise LivepatchError(errno.EOPNOTSUPP, f"{where}: unsupported relocation type {type_name(reloc_type)}")
    return kind
