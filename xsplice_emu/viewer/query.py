"""What the `/` prompt filters on: event kinds and vCPUs, parsed from a line of text."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..tracing import EventKind
from ..tracing.kinds import BY_NAME

_VCPUS = re.compile(r"(?:v?cpu)?(\d+)(?:-(\d+))?")


class QueryError(ValueError):
    """A search text that names neither a known event kind nor a vCPU."""


@dataclass(frozen=True)
class Query:
    """Events of `kinds` on `vcpus`; an empty set means any."""

    kinds: frozenset[EventKind] = frozenset()
    vcpus: frozenset[int] = frozenset()

    @classmethod
    def parse(cls, text: str, *, vcpus: int) -> Query:
        """`cpu3 patch`, `vcpu 2-5 ipi nmi`, `7`: vCPUs (below `vcpus`; single or ranges) and kind names."""
        found_kinds: set[EventKind] = set()
        found_vcpus: set[int] = set()
        for word in re.sub(r"\b(v?cpu)\s+(?=\d)", r"\1", text.lower()).replace(",", " ").split():
            if word in BY_NAME:
                found_kinds.add(BY_NAME[word])
            elif match := _VCPUS.fullmatch(word):
                first, last = int(match[1]), int(match[2] or match[1])
                if not first <= last < vcpus:
                    raise QueryError(f"{word!r}: the trace has vCPUs 0 to {vcpus - 1}")
                found_vcpus.update(range(first, last + 1))
            else:
                raise QueryError(f"{word!r} is neither an event kind nor a vCPU "
                                 "(e.g. patch, ipi, nmi, abort, cpu3, 2-5)")
        return cls(frozenset(found_kinds), frozenset(found_vcpus))

    @property
    def empty(self) -> bool:
        return not self.kinds and not self.vcpus

    def __str__(self) -> str:
        parts = sorted(self.kinds) + [f"cpu{v}" for v in sorted(self.vcpus)]
        return " ".join(parts) or "everything"
