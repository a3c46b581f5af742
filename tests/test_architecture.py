"""The architecture object: the only place that names an ISA, and its encodings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from xsplice_emu.arch import ARCHITECTURES, DEFAULT_ARCH, for_elf

PACKAGE = Path(__file__).resolve().parent.parent / "xsplice_emu"
ISA_NAMES = re.compile(r"x86_const|capstone\.x86|CS_ARCH_|UC_ARCH_|KS_ARCH_|EM_X86_64|UC_X86_")


def test_no_module_outside_arch_names_an_isa():
    """Engine modes, ISA register ids and ELF machine names appear only under xsplice_emu/arch/."""
    offenders = [f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}"
                 for path in PACKAGE.rglob("*.py") if "arch" not in path.relative_to(PACKAGE).parts[:1]
                 for number, line in enumerate(path.read_text().splitlines(), 1) if ISA_NAMES.search(line)]
    assert offenders == []


def test_the_firmware_image_names_its_architecture(image):
    """The built-in firmware is x86-64; its ELF machine picks the registered architecture."""
    assert image.arch is ARCHITECTURES["EM_X86_64"] is DEFAULT_ARCH
    assert for_elf("EM_X86_64", 32) is None
    assert for_elf("EM_AARCH64", 64) is None


@pytest.mark.parametrize("distance", [0, 5, -5, 1 << 20, -(1 << 20), (1 << 31) - 1 + 5, -(1 << 31) + 5])
def test_jump_patch_decodes_to_a_jump_to_its_target(distance):
    """A jump patch written at OLD disassembles as `jmp NEW`, within the rel32 reach."""
    arch = DEFAULT_ARCH
    old = 0x1_0000_0000
    new = old + distance
    patch = arch.jump(old, new)
    assert len(patch) == arch.jump_size
    assert arch.jump_reaches(old, new)
    assert list(arch.instructions(patch, old)) == [(old, arch.jump_size, f"jmp {new:#x}")]


@pytest.mark.parametrize("distance", [(1 << 31) + 5, -(1 << 31) + 4])
def test_jump_reach_ends_at_rel32(distance):
    """One byte past the signed 32-bit displacement is out of reach."""
    assert not DEFAULT_ARCH.jump_reaches(0x1_0000_0000, 0x1_0000_0000 + distance)


@pytest.mark.parametrize("size", range(1, 32))
def test_nops_are_exactly_that_many_bytes_of_nops(size):
    """`nops(n)` is n bytes that decode, whole, into NOP instructions."""
    code = DEFAULT_ARCH.nops(size)
    decoded = list(DEFAULT_ARCH.instructions(code, 0x1000))
    assert len(code) == size == sum(length for _, length, _ in decoded)
    assert all(text.startswith("nop") for _, _, text in decoded)
