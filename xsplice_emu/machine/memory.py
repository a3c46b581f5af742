"""Guest RAM: one host mapping shared by every vCPU's Unicorn instance."""

from __future__ import annotations

import ctypes
import hashlib
import mmap
import struct
import sys
from dataclasses import dataclass

from ..errors import MachineError
from ..platform import RAM_BASE


@dataclass(frozen=True)
class Window:
    """Guest virtual `[virtual, virtual + size)` is physical RAM `[physical, physical + size)` (page tables map
    it for the guest; the host translates)."""

    virtual: int
    physical: int
    size: int

    @property
    def end(self) -> int:
        return self.virtual + self.size


class GuestMemory:
    """Guest RAM `[RAM_BASE, size)`, identity-mapped (host offset == guest address), plus virtual windows onto
    parts of it. Every address the host reads or writes is a guest virtual address."""

    def __init__(self, size: int, windows: tuple[Window, ...] = ()):
        if size < 4 << 20 or size % mmap.PAGESIZE:
            raise MachineError(f"RAM size {size:#x} must be page aligned and at least 4 MiB")
        self.size = size
        self.windows = windows
        self._map = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self._view = memoryview(self._map)
        self.host_address = ctypes.addressof(ctypes.c_char.from_buffer(self._map))

    def physical(self, address: int, length: int = 0) -> int:
        """Where `[address, address + length)` lies in RAM (its host offset); outside RAM, MachineError."""
        if RAM_BASE <= address and address + length <= self.size and length >= 0:
            return address
        for window in self.windows:
            if window.virtual <= address and address + length <= window.end and length >= 0:
                return address - window.virtual + window.physical
        raise MachineError(f"guest range {address:#x}+{length:#x} is outside RAM")

    def limit(self, address: int) -> int:
        """The end of the mapped range holding `address`."""
        for window in self.windows:
            if window.virtual <= address < window.end:
                return window.end
        return self.size

    def read(self, address: int, length: int) -> bytes:
        offset = self.physical(address, length)
        return bytes(self._view[offset:offset + length])

    def write(self, address: int, data: bytes) -> None:
        offset = self.physical(address, len(data))
        self._view[offset:offset + len(data)] = data

    def write_u8(self, address: int, value: int) -> None:
        self._map[self.physical(address, 1)] = value

    def read_u32(self, address: int) -> int:
        return struct.unpack_from("<I", self._map, self.physical(address, 4))[0]

    def read_u64(self, address: int) -> int:
        return struct.unpack_from("<Q", self._map, self.physical(address, 8))[0]

    def write_u32(self, address: int, value: int) -> None:
        struct.pack_into("<I", self._map, self.physical(address, 4), value)

    def write_u64(self, address: int, value: int) -> None:
        struct.pack_into("<Q", self._map, self.physical(address, 8), value)

    def u64_array(self, address: int, count: int) -> memoryview:
        """The `count` 64-bit words at `address` as a writable array (cheaper than `write_u64` per word); the
        host's byte order, which is the guest's (little-endian) on every host Unicorn runs x86 on."""
        if sys.byteorder != "little":
            raise MachineError("a u64 array of guest memory needs a little-endian host")
        offset = self.physical(address, 8 * count)
        return self._view[offset:offset + 8 * count].cast("Q")

    def read_cstring(self, address: int, limit: int = 256) -> str:
        """A NUL-terminated string at `address` (at most `limit` bytes, and none past the end of its range)."""
        available = self.limit(address) - address
        if available <= 0:
            raise MachineError(f"guest string at {address:#x} is outside RAM")
        data = self.read(address, min(limit, available))
        return data.split(b"\0", 1)[0].decode("latin-1")

    def digest(self, begin: int = RAM_BASE, end: int | None = None) -> str:
        """SHA-256 of `[begin, end)`, the whole RAM by default."""
        end = self.size if end is None else end
        offset = self.physical(begin, end - begin)
        return hashlib.sha256(self._view[offset:offset + end - begin]).hexdigest()
