"""The host's stand-ins for Xen's allocators, whose own setup (the heap, vmap) never ran.

`xmalloc` and `vmalloc` memory comes from RAM past the image through the directmap, as Xen's heap's does;
`vmalloc_xen` (payload sections) from the payload area past the image, where Xen 4.17 puts them. Nothing is
given back: a run is short, and an address is never reused (a payload loaded after another never runs the
translations of the one before). A request the area has no room for gets NULL, as from Xen's own allocators:
Xen then gives up with -ENOMEM (a damaged payload's section sizes can ask for 2^63 bytes).
"""

from __future__ import annotations

from ...machine import GuestMemory
from .layout import DIRECTMAP

PAGE = 4096


class BumpAllocator:
    """Addresses from `[begin, end)`, in order (the heap's through the directmap, the payload area's as they are)."""

    def __init__(self, memory: GuestMemory, begin: int, end: int):
        self.memory = memory
        self.next = begin
        self.end = end

    def take(self, size: int, align: int = 16) -> int:
        """`size` zeroed bytes aligned to `align`; 0 (NULL) when the area has no room for them."""
        address = -(-self.next // align) * align
        if address + size > self.end:
            return 0
        self.next = address + size
        self.memory.write(address, bytes(size))
        return address


class HostHeap:
    """Xen's xmalloc/vmalloc family, answered by the host."""

    def __init__(self, memory: GuestMemory, *, heap: tuple[int, int], payload_area: tuple[int, int]):
        self.heap = BumpAllocator(memory, DIRECTMAP + heap[0], DIRECTMAP + heap[1])
        self.payload_area = BumpAllocator(memory, *payload_area)

    def xmalloc(self, size: int, align: int) -> int:
        return self.heap.take(max(size, 1), max(align, 16))

    def vmalloc(self, size: int) -> int:
        return self.heap.take(max(size, 1), PAGE)

    def vmalloc_xen(self, size: int) -> int:
        return self.payload_area.take(-(-max(size, 1) // PAGE) * PAGE, PAGE)
