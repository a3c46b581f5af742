"""RELA relocation kinds by meaning (S+A, S+A-P), each with its overflow check.

An architecture names its supported types in a table of these (see
`x86_64.RELOCATIONS`); anything outside its table is refused.
"""

from __future__ import annotations

import enum
import errno
from dataclasses import dataclass

from ..errors import LivepatchError


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
        if self.overflow is Overflow.SIGNED:
            value = _signed64(value)
        if self.overflow is Overflow.SIGNED and not -(1 << (bits - 1)) <= value < 1 << (bits - 1):
            raise LivepatchError(errno.EOVERFLOW, f"{where}: {value:#x} does not fit in signed {bits} bits")
        if self.overflow is Overflow.UNSIGNED and not 0 <= value < 1 << bits:
            raise LivepatchError(errno.EOVERFLOW, f"{where}: {value:#x} does not fit in unsigned {bits} bits")
        section[offset : offset + self.width] = (value & ((1 << bits) - 1)).to_bytes(self.width, "little")


def _signed64(value: int) -> int:
    """`value` computed as a 64-bit machine does (modulo 2^64), read as signed: S + A - P wraps, as in Xen."""
    return (value + (1 << 63)) % (1 << 64) - (1 << 63)


@dataclass(frozen=True)
class Ignored(Relocation):
    """A no-op relocation (R_X86_64_NONE, ...)."""

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
