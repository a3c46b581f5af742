"""Guest architectures: one object per ISA, asked for everything ISA-specific.

`for_elf` picks the architecture of an ELF file by its `e_machine`; a
machine takes its architecture from its firmware image.
"""

from __future__ import annotations

from .base import Architecture, HandlerEntry, Registers
from .x86_64 import X86_64

DEFAULT_ARCH: Architecture = X86_64()
"""The architecture of what does not name one (a trace file written before its header named it)."""

ARCHITECTURES: dict[str, Architecture] = {arch.elf_machine: arch for arch in (DEFAULT_ARCH,)}
"""Every supported architecture, keyed by its ELF `e_machine` name."""


def for_elf(e_machine: str, elf_class: int) -> Architecture | None:
    """The architecture of an ELF file with this `e_machine` and class, or None."""
    arch = ARCHITECTURES.get(e_machine)
    return arch if arch is not None and arch.elf_class == elf_class else None


def for_name(name: str) -> Architecture | None:
    """The architecture called `name` (`Architecture.name`: what a trace header says), or None."""
    return next((arch for arch in ARCHITECTURES.values() if arch.name == name), None)


__all__ = ["ARCHITECTURES", "DEFAULT_ARCH", "Architecture", "HandlerEntry", "Registers", "X86_64", "for_elf",
           "for_name"]
