"""A C struct of the guest ABI: a `struct.Struct` with the offsets of its named fields."""

from __future__ import annotations

import struct


class Layout:
    """Little-endian C struct: `fields` are (name, struct format char) in memory order.
    `struct` packs and unpacks it (fields in that order); `offset(name)` places one field."""

    def __init__(self, name: str, fields: tuple[tuple[str, str], ...]):
        self.name = name
        self.struct = struct.Struct("<" + "".join(code for _, code in fields))
        self.size = self.struct.size
        self._offsets = {field: struct.calcsize("<" + "".join(code for _, code in fields[:index]))
                         for index, (field, _) in enumerate(fields)}

    def offset(self, field: str) -> int:
        """Byte offset of `field` in the struct."""
        return self._offsets[field]
