"""A machine's Unicorn instances: its vCPUs, and a spare one made on first use that never runs."""

from __future__ import annotations

from collections.abc import Callable

from .vcpu import Vcpu


class Instances:
    """The vCPUs and the spare instance. What the spare translates at an address is what a vCPU whose translated
    code there was dropped would run (`fresh_block_size`)."""

    def __init__(self, vcpus: list[Vcpu], new_spare: Callable[[], Vcpu]):
        self.vcpus = vcpus
        self._new_spare = new_spare
        self._spare: Vcpu | None = None

    def all(self) -> list[Vcpu]:
        """Every instance: the vCPUs and the spare, once made."""
        return self.vcpus if self._spare is None else [*self.vcpus, self._spare]

    def spare(self) -> Vcpu:
        """The spare instance, made on first use."""
        if self._spare is None:
            self._spare = self._new_spare()
        return self._spare

    def fresh_block_size(self, address: int) -> int:
        """Bytes of the block a vCPU whose translated code was dropped runs at `address` (the spare's)."""
        return self.spare().fresh_block_size(address)
