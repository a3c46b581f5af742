"""Where things are for Xen's own code: the physical memory map of the xen engine and the structure offsets of
one Xen build.

Structure offsets are what the platform writes into Xen's objects (its `cpu_info`, vCPUs, domains, per-CPU time);
Debian's xen-syms has no debug information, so they come from a table keyed by build-id, read once from the
disassembly of that build (the functions named beside each field); any other build's come from its DWARF
(`dwarf.py`: a self-built xen-syms has it).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from ...image import Image
from ...provision.cache import cached, digest
from .dwarf import SIZE, struct_layouts

# -- the physical memory map ---------------------------------------------------------------------------------
RAM_SIZE = 256 << 20
PAGE_TABLES = 0x100000
"""Page tables the platform makes beside Xen's own (L1 of the image's first 2 MiB, directmap, low identity)."""
PAGE_TABLES_END = 0x180000
HOST_PAGE = 0x180000
"""A page of `ret` instructions the host answers (stand-ins Xen calls through pointers, the return sentinel)."""
DOM0_BUFFERS = 0x200000
"""Dom0's memory the hypercall bridge hands Xen: the sysctl, names and lists (identity-mapped, low)."""
DOM0_PAYLOAD = 0x400000
"""Where the bridge puts a payload's ELF for UPLOAD (2 MiB, Xen's LIVEPATCH_MAX_SIZE)."""
XEN_PHYSICAL = 0x1000000
"""Where Xen's image (from its lowest 2 MiB boundary) lies in RAM; its payload area follows."""
PAYLOAD_AREA_SIZE = 16 << 20
PAYLOAD_DATA = RAM_SIZE
"""A second physical mapping of the payload area, past RAM, where stores come to no write-protection hook: the
pages Xen maps as data, and those fresh from `vmalloc_xen` that no code has run from yet, point there."""
DIRECTMAP = 0xFFFF830000000000
"""Xen's direct map of all RAM (DIRECTMAP_VIRT_START): `__va()` of a physical address."""
XEN_VIRT_START = 0xFFFF82D040000000

# -- x86 facts Xen relies on -----------------------------------------------------------------------------------
STACK_SIZE = 0x8000
"""Xen's STACK_SIZE: stacks are 32 KiB and 32 KiB-aligned, `cpu_info` at the top."""
SYS_STATE_ACTIVE = 3
LIVEPATCH_VA_RX, LIVEPATCH_VA_RW = 0, 1
"""`arch_livepatch_secure`'s types of a payload's pages (xen/livepatch.h; the third, LIVEPATCH_VA_RO, is 2)."""
IDLE_DOMAIN_ID = 0x7FFF
X2APIC_ICR = 0x830
X2APIC_ID = 0x802
X2APIC_ISR = 0x810
"""The first of the eight in-service registers (32 vectors each)."""
CR0 = 0x80010033  # PG | WP | NE | ET | MP | PE: Xen runs with write protection on
CR4 = 0x6A0 | 0x80  # OSXMMEXCPT | OSFXSR | PAE | PGE


@dataclass(frozen=True, kw_only=True)
class StructOffsets:
    """Byte offsets of the fields the platform fills, for one Xen build."""

    cpu_info_size: int  # from the stack top down to struct cpu_info (get_cpu_info)
    cpu_info_processor_id: int  # from the stack top (negative)
    cpu_info_current_vcpu: int
    cpu_info_per_cpu_offset: int
    cpu_info_cr4: int
    vcpu_id: int
    vcpu_processor: int
    vcpu_info: int  # the shared vcpu_info pointer: hypercall_preempt_check reads evtchn_upcall_pending there
    vcpu_domain: int
    vcpu_sched_unit: int  # check_for_livepatch_work: current->sched_unit->domain->domain_id
    sched_unit_domain: int
    domain_id: int
    cpu_time_scale_shift: int  # per_cpu(cpu_time).tsc_scale (get_s_time)
    cpu_time_scale_mul_frac: int


XEN_4_17_X86 = StructOffsets(
    cpu_info_size=0x108, cpu_info_processor_id=-0x40, cpu_info_current_vcpu=-0x38, cpu_info_per_cpu_offset=-0x30,
    cpu_info_cr4=-0x28, vcpu_id=0x0, vcpu_processor=0x4, vcpu_info=0x8, vcpu_domain=0x10, vcpu_sched_unit=0xC8,
    sched_unit_domain=0x0, domain_id=0x0, cpu_time_scale_shift=0x18, cpu_time_scale_mul_frac=0x1C)
"""Debian's 4.17.7 build (read from check_for_livepatch_work, livepatch_op's hypercall_preempt_check, users of
get_cpu_info and get_s_time)."""

OFFSETS_BY_BUILD_ID = {
    "151b373fd64b321593bf987fd923cd10dabadac4": XEN_4_17_X86,  # Debian 4.17.7+13-g2445b30a44-0+deb12u1
}


def struct_offsets(image: Image) -> StructOffsets:
    """The offsets for `image`'s build: the table's, else its DWARF's (ConfigError, one line, when it has none)."""
    found = OFFSETS_BY_BUILD_ID.get(image.build_id.hex())
    if found is not None:
        return found
    def read(work: Path) -> None:
        (work / OFFSETS_FILE).write_text(json.dumps(asdict(_dwarf_offsets(image.path))))

    entry = cached("xen-offsets", digest(image.build_id.hex(), image.path), read)
    return StructOffsets(**json.loads((entry / OFFSETS_FILE).read_text()))


OFFSETS_FILE = "offsets.json"
"""A build's offsets read from its DWARF, cached by its build-id and contents (reading takes seconds)."""


def _dwarf_offsets(path: Path) -> StructOffsets:
    """The offsets the DWARF of the xen-syms at `path` gives."""
    layouts = struct_layouts(path)
    cpu_info, vcpu, cpu_time, time_scale = (layouts[name] for name in ("cpu_info", "vcpu", "cpu_time", "time_scale"))
    top = cpu_info[SIZE]  # cpu_info sits at the very top of the stack: offsets below the top are negative
    return StructOffsets(
        cpu_info_size=top, cpu_info_processor_id=cpu_info["processor_id"] - top,
        cpu_info_current_vcpu=cpu_info["current_vcpu"] - top, cpu_info_per_cpu_offset=cpu_info["per_cpu_offset"] - top,
        cpu_info_cr4=cpu_info["cr4"] - top, vcpu_id=vcpu["vcpu_id"], vcpu_processor=vcpu["processor"],
        vcpu_info=vcpu["vcpu_info"], vcpu_domain=vcpu["domain"], vcpu_sched_unit=vcpu["sched_unit"],
        sched_unit_domain=layouts["sched_unit"]["domain"], domain_id=layouts["domain"]["domain_id"],
        cpu_time_scale_shift=cpu_time["tsc_scale"] + time_scale["shift"],
        cpu_time_scale_mul_frac=cpu_time["tsc_scale"] + time_scale["mul_frac"])
