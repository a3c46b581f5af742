"""The debug console on port 0xE9: one line buffer per vCPU."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ConsoleLine:
    """A complete line printed by a vCPU at a virtual time."""

    time_ns: int
    vcpu: int
    text: str


class Console:
    """Collects the bytes each vCPU writes into whole lines."""

    def __init__(self, vcpus: int):
        self._partial = [bytearray() for _ in range(vcpus)]
        self.lines: list[ConsoleLine] = []

    def write(self, vcpu: int, data: bytes, time_ns: int) -> list[ConsoleLine]:
        """Take `data`; return the lines it completed."""
        *ends, rest = data.split(b"\n")
        lines = []
        for end in ends:
            self._partial[vcpu] += end
            lines.append(self._complete(vcpu, time_ns))
        self._partial[vcpu] += rest
        return lines

    def _complete(self, vcpu: int, time_ns: int) -> ConsoleLine:
        line = ConsoleLine(time_ns, vcpu, self._partial[vcpu].decode("latin-1"))
        self._partial[vcpu].clear()
        self.lines.append(line)
        return line

    def last_line(self, vcpu: int | None = None) -> str:
        """The last complete line (of one vCPU, or of any), else its unfinished text."""
        for line in reversed(self.lines):
            if vcpu is None or line.vcpu == vcpu:
                return line.text
        return self._partial[vcpu].decode("latin-1") if vcpu is not None else ""

    def text(self) -> str:
        return "".join(line.text + "\n" for line in self.lines)
