"""Names for guest addresses, from the firmware image a trace was recorded with."""

from __future__ import annotations

from dataclasses import dataclass

from ..arch import Architecture
from ..errors import XspliceEmuError
from ..firmware import builtin_firmware
from ..image import Image, load_image


@dataclass(frozen=True)
class Symbols:
    """Function names when the built-in firmware is the trace's; else bare addresses and a `note` saying why.
    `arch`: the trace's architecture (what its code disassembles as)."""

    arch: Architecture
    image: Image | None
    note: str = ""

    @classmethod
    def for_build_id(cls, build_id: str | None, *, arch: Architecture) -> Symbols:
        """Symbols of the built-in firmware if its build-id is `build_id` (hex)."""
        try:
            image = load_image(builtin_firmware(arch))
        except XspliceEmuError as exc:
            return cls(arch, None, f"no firmware image ({exc}): addresses without names")
        if image.build_id.hex() != build_id:
            return cls(arch, None, f"the built-in firmware (build-id {image.build_id.hex()[:12]}) is not the trace's "
                             f"({(build_id or 'none')[:12]}): addresses without names")
        return cls(arch, image)

    def name(self, address: int) -> str | None:
        """`function+0xoff` for an address inside a known function, else None."""
        if self.image is None or self.image.function_at(address) is None:
            return None
        return self.image.describe(address)

    def describe(self, address: int) -> str:
        """`0xaddr <function+0xoff>`, or the bare address."""
        name = self.name(address)
        return f"{address:#x} <{name}>" if name else f"{address:#x}"
