"""Code coherence: stores into code, the stale translations they leave, and when each vCPU drops them.

A vCPU that writes code runs the new bytes from its next block; the others run what they translated before
until they serialise (firmware/ABI.md). The guest writes code through the alias (TEXT_ALIAS_OFFSET), read-only
over code: such a store faults, and is retried in a slice of one block with the alias opened for that vCPU
alone, after which the changed runs are the code writes. The host's writes drop translations at once
(`invalidate`), or not at all (`write_unsynchronised`: a naive text_poke).
"""

from __future__ import annotations

from collections.abc import Callable

from ..platform import TEXT_ALIAS_OFFSET
from ..tracing.kinds import EventKind
from ..tracing.trace import Trace
from . import native
from .instances import Instances
from .memory import GuestMemory
from .paging import PagePermissions
from .spec import PAGE_SIZE
from .subscribers import CODE_WRITE, UNSEEN_CODE, Subscribers
from .vcpu import StopReason, Vcpu

Emit = Callable[..., None]
"""A machine's `emit(vcpu, kind, **fields)`: a trace event on a vCPU at its current time."""


class CodeCoherence:
    """What each vCPU of one machine has translated, and what it must drop when."""

    def __init__(self, *, memory: GuestMemory, paging: PagePermissions, table: native.BlockTable,
                 instances: Instances, trace: Trace, emit: Emit, subscribers: Subscribers):
        self.memory = memory
        self.paging = paging
        self.table = table
        self.instances = instances
        self.trace = trace
        self.emit = emit
        self._subscribers = subscribers

    # -- the guest's stores into code ---------------------------------------------------------------------------
    def alias_write_fault(self, vcpu: Vcpu, alias_address: int, size: int) -> bool:
        """`vcpu` stores into code through the alias, which is read-only over code: only such stores cost
        anything. The store faults (False); the slice ends there, and `open_code_pages` retries it."""
        vcpu.alias_fault = (alias_address - TEXT_ALIAS_OFFSET, size)
        return False

    def open_code_pages(self, vcpu: Vcpu, address: int, size: int) -> None:
        """Between slices: let `vcpu` write the code pages under `[address, address + size)` through the alias
        for one block (the one retrying the store); `after_slice` closes them and sees what changed."""
        for page in range(address & ~(PAGE_SIZE - 1), address + size, PAGE_SIZE):
            if page not in vcpu.open_code_pages:
                vcpu.open_code_pages[page] = self.memory.read(page, PAGE_SIZE)

    def open_alias(self, vcpu: Vcpu, *, writable: bool) -> None:
        """Open (or close) the alias of `vcpu`'s open code pages, for this slice of `vcpu` alone: the page tables
        are shared, and no other vCPU runs before they are closed."""
        if vcpu.open_code_pages:
            for page in vcpu.open_code_pages:
                self.paging.open_alias(page, writable=writable)
            vcpu.flush_tlb()

    def after_slice(self, vcpu: Vcpu) -> None:
        """Close the code pages `vcpu` wrote (each changed run is a code write), then drop stale translations."""
        self.open_alias(vcpu, writable=False)
        for page, before in vcpu.open_code_pages.items():
            for start, end in changed_runs(before, self.memory.read(page, PAGE_SIZE)):
                self._code_written(vcpu, page + start, before[start:end])
        vcpu.open_code_pages.clear()
        if vcpu.to_flush:
            vcpu.flush_pending()

    def _code_written(self, vcpu: Vcpu, address: int, old: bytes) -> None:
        """`vcpu` wrote over `old` at `address` in code: it runs the new bytes from now, the other vCPUs once
        they serialise (firmware/ABI.md)."""
        end = address + len(old)
        self._subscribers.notify(CODE_WRITE, vcpu, address, old)
        self.emit(vcpu, EventKind.CODE_WRITE, address=address, size=len(old))
        vcpu.to_flush.append((address, end))
        self._unseen_by_others(vcpu, address, end)

    def serialise(self, vcpu: Vcpu) -> bool:
        """A serialising instruction: from the next one, `vcpu` runs what others wrote into code. Whether that
        stopped the vCPU before the instruction (to drop its stale translations first)."""
        if vcpu.unseen_code:
            self.emit(vcpu, EventKind.CODE_SYNC, ranges=len(vcpu.unseen_code))
            vcpu.to_flush += vcpu.unseen_code
            vcpu.unseen_code = []
            self._subscribers.notify(UNSEEN_CODE, vcpu)
            vcpu.stop(StopReason.HOOK)
            return True
        return False

    # -- the host's writes into code ----------------------------------------------------------------------------
    def write_unsynchronised(self, address: int, data: bytes, *, now_ns: int) -> None:
        """The host writes `data` into code at `address` as a naive text_poke would, with no rendezvous and no
        flush: every vCPU runs it once it serialises and may run what it translated before until then."""
        self.memory.write(address, data)
        self.trace.emit(now_ns, None, EventKind.CODE_WRITE, address=address, size=len(data))
        self._unseen_by_others(None, address, address + len(data))

    def _unseen_by_others(self, writer: Vcpu | None, begin: int, end: int) -> None:
        self.table.forget(begin, end)
        for other in self.instances.vcpus:
            if other is not writer:
                other.unseen_code.append((begin, end))
                self._subscribers.notify(UNSEEN_CODE, other)

    def invalidate(self, begin: int, end: int, *, keep: frozenset[int] = frozenset()) -> None:
        """Drop translated code overlapping `[begin, end)` on every vCPU (but those in `keep`: a fault that
        models a missing serialisation)."""
        for vcpu in self.instances.all():
            if vcpu.index not in keep:
                vcpu.flush(begin, end)
        self.table.forget(begin, end)


LINE = 64
"""Bytes `changed_runs` compares at once before looking at each."""


def changed_runs(before: bytes, after: bytes) -> list[tuple[int, int]]:
    """The [start, end) runs where `after` differs from `before` (of the same length)."""
    if len(before) != len(after):
        raise ValueError(f"comparing {len(before)} bytes with {len(after)}")
    runs: list[tuple[int, int]] = []
    if before == after:
        return runs
    for line in range(0, len(before), LINE):
        if before[line:line + LINE] == after[line:line + LINE]:
            continue
        for index in range(line, min(line + LINE, len(before))):
            if before[index] != after[index]:
                if runs and runs[-1][1] == index:
                    runs[-1] = (runs[-1][0], index + 1)
                else:
                    runs.append((index, index + 1))
    return runs
