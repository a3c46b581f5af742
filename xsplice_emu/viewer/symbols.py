"""Names for guest addresses, from the image a trace was recorded with (the firmware, or a real Xen)."""

from __future__ import annotations

from dataclasses import dataclass

from ..arch import Architecture
from ..errors import XspliceEmuError
from ..image import Image, image_build_id, load_image
from ..provision.images import cached_images


@dataclass(frozen=True)
class Symbols:
    """Function names when the trace's image is in the build cache; else bare addresses and a `note` saying why.
    `arch`: the trace's architecture (what its code disassembles as)."""

    arch: Architecture
    image: Image | None
    note: str = ""

    @classmethod
    def for_header(cls, header: dict[str, object], *, arch: Architecture) -> Symbols:
        """Symbols of the image the trace patched (a real Xen's, else the firmware's), found among the images the
        build cache already holds; the viewer never builds one."""
        build_id = header.get("hypervisor_build_id") or header.get("firmware_build_id")
        if not isinstance(build_id, str):
            return cls(arch, None, "the trace names no image: addresses without names")
        for path in cached_images():
            if image_build_id(path).hex() == build_id:
                try:
                    return cls(arch, load_image(path))
                except XspliceEmuError as exc:
                    return cls(arch, None, f"{exc}: addresses without names")
        return cls(arch, None, f"no image with build-id {build_id[:12]} in the build cache: addresses without names")

    def name(self, address: int) -> str | None:
        """`function+0xoff` for an address inside a known function, else None."""
        if self.image is None or self.image.function_at(address) is None:
            return None
        return self.image.describe(address)

    def describe(self, address: int) -> str:
        """`0xaddr <function+0xoff>`, or the bare address."""
        name = self.name(address)
        return f"{address:#x} <{name}>" if name else f"{address:#x}"
