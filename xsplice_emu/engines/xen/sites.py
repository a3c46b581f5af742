"""Where Xen's code holds the instructions the platform answers by address.

Unicorn 2.1.4 refuses instruction hooks for rdtsc, rdmsr and wrmsr and ignores a write to the x2APIC ICR, so
the platform hooks each such instruction where it is: every function of the image is disassembled once.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...image import Image

SERIALISING = ("cpuid", "wbinvd", "invd", "lgdt", "lidt", "ltr")
"""Instructions after which a vCPU runs what other vCPUs wrote into code (Intel SDM 9.1.3); `mov` to a control
register is found apart (its mnemonic is `mov`), `iretq` too (it also returns from an interrupt). A write to an
x2APIC MSR is not serialising."""


@dataclass(frozen=True)
class InstructionSites:
    """Addresses of the instructions the platform answers, by kind."""

    rdtsc: tuple[int, ...]
    rdtscp: tuple[int, ...]
    rdmsr: tuple[int, ...]
    wrmsr: tuple[int, ...]
    hlt: tuple[int, ...]
    iretq: tuple[int, ...]
    serialising: tuple[int, ...]  # the above but iretq, and mov to CR0/CR3/CR4

    @classmethod
    def of(cls, image: Image) -> InstructionSites:
        """Every site in `image`'s code between `_stext` and `_etext`."""
        found: dict[str, list[int]] = {"rdtsc": [], "rdtscp": [], "rdmsr": [], "wrmsr": [], "hlt": [], "iretq": [],
                                           "serialising": []}
        disassembler = image.arch.disassembler
        for begin, end in _code_spans(image):
            code = image.read(begin, end - begin)
            if code is None:
                continue
            for address, _, mnemonic, operands in disassembler.disasm_lite(code, begin):
                if mnemonic in found:
                    found[mnemonic].append(address)
                if mnemonic in SERIALISING or mnemonic == "mov" and operands.startswith("cr"):
                    found["serialising"].append(address)
        return cls(**{kind: tuple(sorted(set(addresses))) for kind, addresses in found.items()})


def _code_spans(image: Image) -> list[tuple[int, int]]:
    """`[begin, end)` of each function in `_stext.._etext`, and of the assembly code (entry.S: its labels have
    no size) from each such label to the next symbol."""
    text_begin, text_end = image.address("_stext"), image.address("_etext")
    in_text = sorted({(sym.address, sym.size, sym.kind) for sym in image.symbols
                      if text_begin <= sym.address < text_end})
    starts = sorted({address for address, _, _ in in_text} | {text_end})
    spans = []
    for address, size, kind in in_text:
        if kind == "func" and size:
            spans.append((address, address + size))
        elif kind == "notype" and not size:
            spans.append((address, starts[starts.index(address) + 1]))
    return spans
