"""Where Xen's code holds the instructions the platform answers by address.

Unicorn 2.1.4 refuses instruction hooks for rdtsc, rdmsr and wrmsr and ignores a write to the x2APIC ICR, so
the platform hooks each such instruction where it is: every function of the image is disassembled once.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...image import Image

SERIALISING = ("cpuid", "iretq", "wbinvd", "invd", "lgdt", "lidt", "ltr")
"""Instructions after which a vCPU runs what other vCPUs wrote into code (Intel SDM 9.1.3); `mov` to a control
register is found apart (its mnemonic is `mov`). A write to an x2APIC MSR is not serialising."""


@dataclass(frozen=True)
class InstructionSites:
    """Addresses of the instructions the platform answers, by kind."""

    rdtsc: tuple[int, ...]
    rdtscp: tuple[int, ...]
    wrmsr: tuple[int, ...]
    hlt: tuple[int, ...]
    serialising: tuple[int, ...]  # the above, and mov to CR0/CR3/CR4

    @classmethod
    def of(cls, image: Image) -> InstructionSites:
        """Every site in `image`'s functions between `_stext` and `_etext`."""
        found: dict[str, list[int]] = {"rdtsc": [], "rdtscp": [], "wrmsr": [], "hlt": [], "serialising": []}
        end = image.address("_etext")
        disassembler = image.arch.disassembler
        for func in image.functions():
            if not func.size or func.address >= end:
                continue
            code = image.read(func.address, func.size)
            if code is None:
                continue
            for address, _, mnemonic, operands in disassembler.disasm_lite(code, func.address):
                if mnemonic in found:
                    found[mnemonic].append(address)
                if mnemonic in SERIALISING or mnemonic == "mov" and operands.startswith("cr"):
                    found["serialising"].append(address)
        return cls(**{kind: tuple(sorted(set(addresses))) for kind, addresses in found.items()})
