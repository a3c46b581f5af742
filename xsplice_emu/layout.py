"""A C struct of the guest ABI as a `struct.Struct` with named fields."""

from __future__ import annotations

import struct


class Layout:
    """Little-endian C struct: `fields` are (name, struct format char) in memory order."""

    def __init__(self, name: str, fields: tuple[tuple[str, str], ...]):
        self.name = name
        self.names = tuple(field for field, _ in fields)
        self.struct = struct.Struct("<" + "".join(code for _, code in fields))
        self.size = self.struct.size
        self._offsets: dict[str, int] = {}
        for index, field in enumerate(self.names):
            self._offsets[field] = struct.calcsize("<" + "".join(code for _, code in fields[:index]))

    def offset(self, field: str) -> int:
        """Byte offset of `field` in the struct."""
        return self._offsets[field]

    def pack(self, **values: int) -> bytes:
        """The struct's bytes; fields not given are zero."""
        return self.struct.pack(*(values.get(field, 0) for field in self.names))

    def unpack(self, data: bytes) -> dict[str, int]:
        """Field name -> value."""
        return dict(zip(self.names, self.struct.unpack(data), strict=True))
