"""The reference run: real Xen and its dom0 under `qemu-system-x86_64 -accel tcg`, and what its serial console
said, step by step.

KVM cannot run Xen here (no VMX for a nested hypervisor), so QEMU emulates
(TCG). Above the host's core count the emulated CPUs run so unevenly that Xen's
30 ms rendezvous deadline fires ("Timed out on semaphore in CPU quiesce phase",
Error 16): -smp defaults to the host's cores.
"""

from __future__ import annotations

import base64
import os
import re
import select
import subprocess
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ToolchainError
from .dom0 import MARK, VERSION_FILES
from .packages import ReferenceFiles, qemu_binary

XEN_OPTIONS = ("console=com1 com1=115200,8n1 loglvl=all guest_loglvl=all console_timestamps=boot "
               "dom0_mem=512M,max:512M noreboot")
DOM0_OPTIONS = "console=hvc0 earlyprintk=xen rdinit=/init quiet"
MEMORY_MB = 2048
DEFAULT_TIMEOUT_S = 600
XEN_LINE = re.compile(r"^\(XEN\) (?:\[\s*[0-9.]+\] )?")
"""A line of Xen's log: its prefix and console timestamp, which the comparison leaves out."""


def default_smp() -> int:
    """The host's cores: more emulated CPUs than that make Xen's rendezvous deadline fire under TCG."""
    return os.cpu_count() or 1


@dataclass(frozen=True)
class StepRecord:
    """What one step showed on the reference: the tool's output and exit status, Xen's log lines meanwhile
    (normalised), the version files read, and the host's wall time from its start marker to its status."""

    stdout: str = ""
    stderr: str = ""
    status: int | None = None
    xen: tuple[str, ...] = ()
    versions: dict[str, str] = field(default_factory=dict)
    seconds: float | None = None


@dataclass(frozen=True)
class ReferenceRun:
    """A whole reference run: each step's record by number, and the boot's figures (host wall seconds)."""

    steps: dict[int, StepRecord]
    smp: int
    ready_s: float
    total_s: float
    console: tuple[str, ...]


def run_reference(files: ReferenceFiles, kernel: Path, initrd: bytes, *, smp: int,
                  timeout_s: float = DEFAULT_TIMEOUT_S) -> ReferenceRun:
    """Boot Xen with dom0 on `kernel` and `initrd` under QEMU and collect its console until dom0 is done;
    ToolchainError, one line, when QEMU is missing or the run does not finish."""
    qemu = qemu_binary()
    with tempfile.TemporaryDirectory(prefix="xsplice-emu-reference-") as work:
        initrd_path = Path(work) / "initrd.cpio"
        initrd_path.write_bytes(initrd)
        command = [str(qemu), "-accel", "tcg", "-cpu", "qemu64", "-m", str(MEMORY_MB), "-smp", str(smp),
                   "-display", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot", "-nodefaults",
                   "-kernel", str(files.xen), "-append", XEN_OPTIONS,
                   "-initrd", f"{kernel} {DOM0_OPTIONS},{initrd_path}"]
        lines = _console(command, timeout_s, Path(work) / "qemu.stderr")
    return _parse(lines, smp)


def _console(command: list[str], timeout_s: float, errors_path: Path) -> list[tuple[float, str]]:
    """Each console line with the host's seconds since QEMU started, until QEMU exits (its stderr kept in
    `errors_path`)."""
    started = time.monotonic()
    try:
        with errors_path.open("wb") as errors_file:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors_file)
    except OSError as exc:
        raise ToolchainError(f"cannot start {command[0]}: {exc.strerror}") from None
    assert process.stdout is not None
    lines: list[tuple[float, str]] = []
    pending = b""
    try:
        while True:
            left = started + timeout_s - time.monotonic()
            if left <= 0:
                raise ToolchainError(f"the reference run did not finish in {timeout_s:g} s "
                                     f"(last console line: {_last(lines)!r})")
            ready, _, _ = select.select([process.stdout], [], [], left)
            if not ready:
                continue
            chunk = os.read(process.stdout.fileno(), 65536)
            if not chunk:
                break
            now = time.monotonic() - started
            pending += chunk
            *whole, pending = pending.split(b"\n")
            lines += [(now, line.decode(errors="replace").rstrip("\r")) for line in whole]
        status = process.wait(timeout=max(1.0, started + timeout_s - time.monotonic()))
    except subprocess.TimeoutExpired:
        raise ToolchainError(f"{command[0]} did not exit in {timeout_s:g} s after its console closed") from None
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    errors = errors_path.read_text(errors="replace").strip().splitlines()
    if status:
        why = errors[0] if errors else f"console: {_last(lines)!r}"
        raise ToolchainError(f"{command[0]} exited with status {status}: {why}")
    return lines


def _last(lines: list[tuple[float, str]]) -> str:
    return next((text for _, text in reversed(lines) if text.strip()), "")


def _parse(lines: list[tuple[float, str]], smp: int) -> ReferenceRun:
    """The console's lines as step records: markers open steps, Xen's lines go to the open step."""
    printed: dict[tuple[int, str], list[str]] = defaultdict(list)
    xen: dict[int, list[str]] = defaultdict(list)
    begun: dict[int, float] = {}
    status: dict[int, tuple[int, float]] = {}
    ready: float | None = None
    done: float | None = None
    current: int | None = None
    for at, line in lines:
        if line.startswith(MARK + " "):
            step, what, value = (line.split(" ", 3)[1:] + [""])[:3]
            if step == "-":
                ready, done = (at, done) if what == "ready" else (ready, at)
                current = None
            elif what == "begin":
                current = int(step)
                begun[current] = at
            elif what == "status":
                status[int(step)] = (int(value), at)
            else:
                printed[(int(step), what)].append(value)
        elif current is not None and XEN_LINE.match(line):
            xen[current].append(XEN_LINE.sub("", line, count=1))
    if ready is None or done is None:
        raise ToolchainError(f"dom0 did not {'start' if ready is None else 'finish'} its steps "
                             f"(last console line: {_last(lines)!r})")

    def decoded(step: int, what: str) -> str:
        return base64.b64decode("".join(printed.get((step, what), []))).decode(errors="replace")

    steps = {}
    for number, at in begun.items():
        code, ended = status.get(number, (None, None))
        steps[number] = StepRecord(
            stdout=decoded(number, "out"), stderr=decoded(number, "err"), status=code, xen=tuple(xen[number]),
            versions={name: decoded(number, name).removesuffix("\n") for name in VERSION_FILES
                      if (number, name) in printed},
            seconds=None if ended is None else ended - at)
    return ReferenceRun(steps, smp, ready, lines[-1][0] if lines else 0.0, tuple(line for _, line in lines))
