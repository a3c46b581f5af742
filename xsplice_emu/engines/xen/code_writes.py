"""Which of Xen's code each vCPU has yet to retranslate: the ranges other vCPUs stored into since it last
serialised.

Each Unicorn instance keeps its own translations, and only its own stores make it drop them. x86 asks code that
another CPU modified to be run only after a serialising instruction, which Xen's patching code executes; a vCPU
that serialises drops its translations of exactly the ranges written meanwhile (`ctl_remove_cache`), not its
whole cache: it retranslates what changed, not everything it runs next.
"""

from __future__ import annotations


class CodeWrites:
    """Stores into code, in order, and how far each vCPU has serialised past them."""

    def __init__(self, vcpus: int):
        self._writes: list[tuple[int, int, int]] = []  # (begin, end, writer)
        self._serialised = [0] * vcpus  # index into _writes each vCPU has serialised up to
        self._consumed = 0  # the highest such index: entries from there on may still grow
        self.kept: frozenset[int] = frozenset()
        """vCPUs whose serialisations drop nothing for now (the drop_flush fault)."""

    def stored(self, writer: int, begin: int, end: int) -> None:
        """vCPU `writer` stored into `[begin, end)`: its own translations Unicorn keeps right, the others' go
        stale (a store next to the last one, no vCPU has serialised past, extends it: a copy is one range)."""
        writes = self._writes
        if self._consumed < len(writes):
            last_begin, last_end, last_writer = writes[-1]
            if last_writer == writer and begin <= last_end and last_begin <= end:
                writes[-1] = (min(begin, last_begin), max(end, last_end), writer)
                return
        writes.append((begin, end, writer))

    def serialise(self, index: int) -> list[tuple[int, int]]:
        """vCPU `index` serialises: the ranges others wrote since it last did, merged (empty: it runs nothing
        stale, or it is kept)."""
        if index in self.kept:
            return []
        pending = self._writes[self._serialised[index]:]
        self._catch_up(index)
        return _merged(sorted((begin, end) for begin, end, writer in pending if writer != index))

    def keep(self, vcpus: frozenset[int]) -> None:
        """From now until `keep` again, `vcpus` drop nothing when they serialise; those no longer kept never
        drop what was written meanwhile (the flushes an action owed them are lost)."""
        for index in self.kept - vcpus:
            self._catch_up(index)
        self.kept = vcpus

    def _catch_up(self, index: int) -> None:
        self._serialised[index] = self._consumed = len(self._writes)
        if self._serialised.count(self._consumed) == len(self._serialised):  # (in C: once per serialisation)
            self._writes.clear()
            self._serialised = [0] * len(self._serialised)
            self._consumed = 0


def _merged(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted `[begin, end)` ranges with the overlapping and adjacent ones joined."""
    joined: list[tuple[int, int]] = []
    for begin, end in ranges:
        if joined and begin <= joined[-1][1]:
            joined[-1] = (joined[-1][0], max(joined[-1][1], end))
        else:
            joined.append((begin, end))
    return joined
