"""Guest RAM: one host mapping shared by every vCPU's Unicorn instance."""

from __future__ import annotations

import ctypes
import hashlib
import mmap
import struct

from ..errors import MachineError
from ..platform import RAM_BASE


class GuestMemory:
    """Identity-mapped guest RAM `[RAM_BASE, size)`; host offset == guest address."""

    def __init__(self, size: int):
        if size < 4 << 20 or size % mmap.PAGESIZE:
            raise MachineError(f"RAM size {size:#x} must be page aligned and at least 4 MiB")
        self.size = size
        self._map = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self._view = memoryview(self._map)
        self.host_address = ctypes.addressof(ctypes.c_char.from_buffer(self._map))

    def _check(self, address: int, length: int) -> None:
        if address < RAM_BASE or address + length > self.size or length < 0:
            raise MachineError(f"guest range {address:#x}+{length:#x} is outside RAM")

    def read(self, address: int, length: int) -> bytes:
        self._check(address, length)
        return bytes(self._view[address:address + length])

    def write(self, address: int, data: bytes) -> None:
        self._check(address, len(data))
        self._view[address:address + len(data)] = data

    def read_u8(self, address: int) -> int:
        self._check(address, 1)
        return self._map[address]

    def write_u8(self, address: int, value: int) -> None:
        self._check(address, 1)
        self._map[address] = value

    def read_u32(self, address: int) -> int:
        self._check(address, 4)
        return struct.unpack_from("<I", self._map, address)[0]

    def read_u64(self, address: int) -> int:
        self._check(address, 8)
        return struct.unpack_from("<Q", self._map, address)[0]

    def write_u32(self, address: int, value: int) -> None:
        self._check(address, 4)
        struct.pack_into("<I", self._map, address, value)

    def write_u64(self, address: int, value: int) -> None:
        self._check(address, 8)
        struct.pack_into("<Q", self._map, address, value)

    def read_cstring(self, address: int, limit: int = 256) -> str:
        """A NUL-terminated string at `address` (at most `limit` bytes)."""
        data = self.read(address, min(limit, self.size - address))
        return data.split(b"\0", 1)[0].decode("latin-1")

    def digest(self, begin: int = RAM_BASE, end: int | None = None) -> str:
        """SHA-256 of `[begin, end)`, the whole RAM by default."""
        end = self.size if end is None else end
        self._check(begin, end - begin)
        return hashlib.sha256(self._view[begin:end]).hexdigest()
