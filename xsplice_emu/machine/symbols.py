"""Names for guest addresses and addresses for names, over the images a machine runs.

A machine runs its firmware and, when it has one, a real Xen's image beside it (`Machine`'s `hypervisor`);
a name is looked up in the hypervisor first, an address in the firmware's functions first.
"""

from __future__ import annotations

from ..image import Image


class Symbols:
    """The symbol lookups of a firmware image and the hypervisor image it may run beside."""

    def __init__(self, image: Image, hypervisor: Image):
        self.image = image
        self.hypervisor = hypervisor

    @property
    def images(self) -> tuple[Image, ...]:
        """The firmware, and the hypervisor image when it is another (a real Xen's)."""
        return (self.image,) if self.hypervisor is self.image else (self.image, self.hypervisor)

    def describe(self, address: int) -> str:
        """`name+0xoff` for an address in the firmware's or the hypervisor's functions, else hex."""
        return self._image_at(address).describe(address)

    def address(self, name: str) -> int:
        """Where symbol `name` is: in the hypervisor (a real Xen's image, when the machine has one), else in the
        firmware; ImageError naming the firmware when neither has it."""
        found = self.hypervisor.resolve(name)
        return self.image.address(name) if found is None else found

    def describe_function(self, address: int) -> tuple[int, int] | None:
        """(start, offset) of the firmware's or the hypervisor's function holding `address`, or None."""
        found = self._image_at(address).function_at(address)
        return None if found is None else (found[0].address, found[1])

    def entry(self, function: str | int) -> int:
        """Where a call of `function` (a name, or an address already) goes."""
        return self.address(function) if isinstance(function, str) else function

    def _image_at(self, address: int) -> Image:
        """The image whose function holds `address`: the firmware's first (the hypervisor when neither does)."""
        return self.hypervisor if self.image.function_at(address) is None else self.image
