"""What payload code prints with the hypervisor's printk, as the lines of Xen's log.

A payload's hooks call the patched hypervisor's printk. A real Xen image's
writes into its console ring (`conring`, every line prefixed "(XEN) "); the
built-in firmware's goes out on the debug console port, every line prefixed
"cpuN: ". `PrintkTap.mark` notes where the output stands before a hook runs;
`PrintkTap.since` gives the whole lines printed after it, prefixes dropped, as
Xen's log shows them.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...machine import Machine

XEN_PREFIX = "(XEN) "


@dataclass(frozen=True)
class Mark:
    """Where printk's output stood: the console's line count, or the ring's producer index."""

    position: int


class PrintkTap:
    """Reads what the hypervisor's printk printed on one machine."""

    def __init__(self, machine: Machine):
        self.machine = machine
        hypervisor = machine.hypervisor
        ring = hypervisor.resolve("conring") if hypervisor is not machine.image else None
        self._ring = None if ring is None else (ring, hypervisor.address("conringp"),
                                                hypervisor.address("conring_size"))

    def mark(self) -> Mark:
        if self._ring is None:
            return Mark(len(self.machine.console.lines))
        return Mark(self.machine.memory.read_u32(self._ring[1]))

    def since(self, mark: Mark, vcpu: int) -> list[str]:
        """The lines printed after `mark` (the firmware's: by `vCPU` only; Xen's ring holds every CPU's)."""
        if self._ring is None:
            prefix = f"cpu{vcpu}: "
            return [line.text.removeprefix(prefix) for line in self.machine.console.lines[mark.position:]
                    if line.vcpu == vcpu]
        return [line.removeprefix(XEN_PREFIX) for line in self._ring_text(mark).split("\n")[:-1]]

    def _ring_text(self, mark: Mark) -> str:
        """The ring's bytes from `mark` to its producer index (the last `conring_size`, if it wrapped)."""
        assert self._ring is not None
        memory = self.machine.memory
        ring_pointer, producer_at, size_at = self._ring
        ring, size, producer = memory.read_u64(ring_pointer), memory.read_u32(size_at), memory.read_u32(producer_at)
        count = min((producer - mark.position) & 0xFFFFFFFF, size)
        first = (producer - count) & (size - 1)
        head = min(count, size - first)
        return (memory.read(ring + first, head) + memory.read(ring, count - head)).decode("latin-1")
