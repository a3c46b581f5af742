"""Where Xen's code holds the instructions the platform answers by address.

Unicorn 2.1.4 refuses instruction hooks for rdtsc, rdmsr and wrmsr and ignores a write to the x2APIC ICR, so
the platform hooks each such instruction where it is: every function of the image is disassembled once.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

from ...image import Image
from ...provision.derived import derived

X2APIC_MSRS = range(0x800, 0x900)
"""The x2APIC's registers: a rdmsr of one is answered by the platform."""
HEX_NUMBER = re.compile(r"0x([0-9a-f]+)")
SERIALISING = ("cpuid", "wbinvd", "invd", "lgdt", "lidt", "ltr")
"""Instructions after which a vCPU runs what other vCPUs wrote into code (Intel SDM 9.1.3); `mov` to a control
register is found apart (its mnemonic is `mov`), `iretq` too (it also returns from an interrupt). A write to an
x2APIC MSR is not serialising."""
Span = tuple[int, int, str | None]
"""`[begin, end)` of a function (name None) or of the assembly code after a label (its name)."""


@dataclass(frozen=True)
class InstructionSites:
    """Addresses of the instructions the platform answers, by kind."""

    rdtsc: tuple[int, ...]
    rdtscp: tuple[int, ...]
    rdmsr: tuple[int, ...]  # in code that names an x2APIC MSR
    wrmsr: tuple[int, ...]
    hlt: tuple[int, ...]
    iretq: tuple[int, ...]
    serialising: tuple[int, ...]  # the above but iretq, and mov to CR0/CR3/CR4

    @classmethod
    def of(cls, image: Image) -> InstructionSites:
        """Every site in `image`'s code between `_stext` and `_etext` (its `code_spans`)."""
        found: dict[str, list[int]] = {"rdtsc": [], "rdtscp": [], "rdmsr": [], "wrmsr": [], "hlt": [], "iretq": [],
                                           "serialising": []}
        disassembler = image.arch.disassembler
        for begin, end, _ in derived(image, code_spans):
            code = image.read(begin, end - begin)
            if code is None:
                continue
            instructions = list(disassembler.disasm_lite(code, begin))
            reads_x2apic = any(mnemonic == "rdmsr" for _, _, mnemonic, _ in instructions) and any(
                _names_x2apic_msr(operands) for _, _, _, operands in instructions)
            for address, _, mnemonic, operands in instructions:
                if mnemonic in found and (mnemonic != "rdmsr" or reads_x2apic):
                    found[mnemonic].append(address)
                if mnemonic in SERIALISING or mnemonic == "mov" and operands.startswith("cr"):
                    found["serialising"].append(address)
        return cls(**{kind: tuple(sorted(set(addresses))) for kind, addresses in found.items()})


def _names_x2apic_msr(operands: str) -> bool:
    """Whether an instruction's operands hold a number in the x2APIC's MSR range (a constant MSR, or the base
    an MSR number is computed from): the code around may read the x2APIC."""
    return "0x8" in operands and any(int(number, 16) in X2APIC_MSRS for number in HEX_NUMBER.findall(operands))


@dataclass(frozen=True)
class AssemblyLabels:
    """The labels of Xen's assembly code (entry.S: no size, so `Image.describe` cannot name what follows them)."""

    starts: tuple[int, ...]
    ends: tuple[int, ...]
    names: tuple[str, ...]

    @classmethod
    def of(cls, image: Image) -> AssemblyLabels:
        """The labels among `image`'s `code_spans`."""
        labels = [(begin, end, name) for begin, end, name in derived(image, code_spans) if name is not None]
        return cls(*(tuple(column) for column in zip(*labels, strict=True)))

    def describe(self, address: int) -> str | None:
        """`label+0xoff` for an address in assembly code, else None."""
        k = bisect.bisect_right(self.starts, address) - 1
        if k < 0 or address >= self.ends[k]:
            return None
        offset = address - self.starts[k]
        return f"{self.names[k]}+{offset:#x}" if offset else self.names[k]


def code_spans(image: Image) -> list[Span]:
    """`[begin, end)` of each function in `_stext.._etext` (name None), and of the assembly code (entry.S: its
    labels have no size) from each such label to the next symbol (with the label's name)."""
    text_begin, text_end = image.address("_stext"), image.address("_etext")
    in_text = sorted((sym.address, sym.size, sym.kind, sym.qualified_name) for sym in image.symbols
                     if text_begin <= sym.address < text_end)
    starts = sorted({address for address, _, _, _ in in_text} | {text_end})
    spans: list[Span] = []
    for address, size, kind, name in in_text:
        if kind == "func" and size:
            spans.append((address, address + size, None))
        elif kind == "notype" and not size:
            spans.append((address, starts[bisect.bisect_right(starts, address)], name))
    return spans
