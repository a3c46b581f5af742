"""The host's stand-ins for Xen's allocators, whose own setup (the heap, vmap) never ran.

`xmalloc` and `vmalloc` memory comes from RAM past the image through the directmap, as Xen's heap's does;
`vmalloc_xen` (payload sections) from the payload area past the image, where Xen 4.17 puts them. Nothing is
given back: a run is short, and an address is never reused (a payload loaded after another never runs the
translations of the one before).
"""

from __future__ import annotations

from ...errors import MachineError
from ...machine import GuestMemory
from .layout import DIRECTMAP

PAGE = 4096


class BumpAllocator:
    """Addresses from `[begin, end)`, in order; `base` is added to each (the directmap, or nothing)."""

    def __init__(self, memory: GuestMemory, begin: int, end: int, *, what: str):
        self.memory = memory
        self.next = begin
        self.end = end
        self.what = what

    def take(self, size: int, align: int = 16) -> int:
        """`size` zeroed bytes aligned to `align`; MachineError when the area is full."""
        address = -(-self.next // align) * align
        if address + size > self.end:
            raise MachineError(f"the {self.what} is full ({size} bytes asked for)")
        self.next = address + size
        self.memory.write(address, bytes(size))
        return address


class HostHeap:
    """Xen's xmalloc/vmalloc family, answered by the host."""

    def __init__(self, memory: GuestMemory, *, heap: tuple[int, int], payload_area: tuple[int, int]):
        self.heap = BumpAllocator(memory, DIRECTMAP + heap[0], DIRECTMAP + heap[1], what="heap")
        self.payload_area = BumpAllocator(memory, *payload_area, what="payload area")

    def xmalloc(self, size: int, align: int) -> int:
        return self.heap.take(max(size, 1), max(align, 16))

    def vmalloc(self, size: int) -> int:
        return self.heap.take(max(size, 1), PAGE)

    def vmalloc_xen(self, size: int) -> int:
        return self.payload_area.take(-(-max(size, 1) // PAGE) * PAGE, PAGE)
