"""Where a machine's images go in RAM: the hypervisor's window, their bytes, and page permissions from their
segments' flags."""

from __future__ import annotations

from unicorn import UC_PROT_EXEC, UC_PROT_READ, UC_PROT_WRITE

from ..errors import ConfigError, MachineError
from ..image import Image, Segment
from ..platform import RAM_BASE, TEXT_ALIAS_OFFSET
from .memory import GuestMemory, Window
from .spec import PAGE_SIZE

HYPERVISOR_PAYLOAD_SPACE = 16 << 20
"""Bytes for payloads past a hypervisor image's end rounded up to a large page (2 MiB), inside its window: where
Xen 4.17 puts them (x86 arch_livepatch_init gives payloads the vmap range from xen_virt_end, its image's end
rounded up to 2 MiB, on to XEN_VIRT_END), within rel32 reach of its text, which jump patches need."""


def hypervisor_window(hypervisor: Image, *, ram_mib: int) -> Window:
    """The hypervisor's link addresses (from a large page below its lowest segment) and payload space past
    its end, onto physical RAM past the firmware's `ram_mib`."""
    large = hypervisor.arch.large_page_size
    lowest = min(seg.address for seg in hypervisor.segments)
    begin = lowest & ~(large - 1)
    end = round_up(hypervisor.end, large) + HYPERVISOR_PAYLOAD_SPACE
    physical = round_up(ram_mib << 20, large)
    if begin < TEXT_ALIAS_OFFSET + physical + (end - begin):
        raise ConfigError(f"{hypervisor.path}: linked at {lowest:#x}, over the firmware's RAM: "
                          "a hypervisor image beside the firmware must be linked in the high half")
    return Window(begin, physical, end - begin)


def load(memory: GuestMemory, image: Image, *, ram_mib: int) -> None:
    """Copy the image's file bytes into fresh RAM. RAM reads zero until written, so a segment's zero tail
    (.bss: every CPU's stack) is left alone: its pages cost nothing until a vCPU uses them (boot, and each
    fork of the machine, copy only what is used)."""
    for seg in image.segments:
        try:
            memory.physical(seg.address, seg.memory_size)
        except MachineError:
            raise ConfigError(f"{image.path}: segment at {seg.address:#x} does not fit in "
                              f"{ram_mib} MiB of RAM") from None
        memory.write(seg.address, seg.data)


def page_permissions(memory: GuestMemory, images: tuple[Image, ...]) -> list[tuple[int, int, int]]:
    """RAM `[RAM_BASE, memory.size)` as page-aligned (begin, end, Unicorn permissions): the images' segments
    (where they are in physical RAM) as their flags say, everything else read+write and not executable."""
    pieces = []
    cursor = RAM_BASE
    for physical_begin, physical_end, seg in _physical_segments(memory, images):
        begin, end = physical_begin & ~(PAGE_SIZE - 1), round_up(physical_end, PAGE_SIZE)
        if cursor < begin:
            pieces.append((cursor, begin, UC_PROT_READ | UC_PROT_WRITE))
        pieces.append((max(begin, cursor), end, (UC_PROT_READ if seg.readable else 0)
                       | (UC_PROT_WRITE if seg.writable else 0) | (UC_PROT_EXEC if seg.executable else 0)))
        cursor = end
    if cursor < memory.size:
        pieces.append((cursor, memory.size, UC_PROT_READ | UC_PROT_WRITE))
    return pieces


def read_only_code(images: tuple[Image, ...]) -> list[tuple[int, int]]:
    """The `[begin, end)` (guest addresses) of the images' segments that are executable and not writable: never
    written through their own addresses (their code is rewritten through the alias), nor are their pages ever
    given other permissions."""
    return [(seg.address, seg.address + seg.memory_size) for image in images for seg in image.segments
            if seg.executable and not seg.writable and seg.memory_size]


def _physical_segments(memory: GuestMemory, images: tuple[Image, ...]) -> list[tuple[int, int, Segment]]:
    """Every loaded segment as (physical begin, physical end, segment), by address."""
    found = []
    for image in images:
        for seg in image.segments:
            begin = memory.physical(seg.address, seg.memory_size)
            found.append((begin, begin + seg.memory_size, seg))
    return sorted(found, key=lambda entry: entry[:2])


def round_up(value: int, alignment: int) -> int:
    return -(-value // alignment) * alignment
