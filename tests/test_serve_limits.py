"""`xsplice-emu serve` against untrusted clients (issue 18, defects 7, 8, 12, 13, 18): connections, memory and time
are bounded, clients are served fairly, a guest fault costs one errno, the trace is written on every exit and log
lines are escaped."""

from __future__ import annotations

import errno
import logging
import random
import resource
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import Served

from xsplice_emu import builtin_firmware
from xsplice_emu.authoring.build import build_payload
from xsplice_emu.control.session import Session
from xsplice_emu.livepatch import Action
from xsplice_emu.server import Client, Op, Request
from xsplice_emu.server.wire import DATA_MAX, REQUEST, REQUEST_MAGIC, VERSION
from xsplice_emu.tracing import EventKind
from xsplice_emu.tracing.trace import Trace

# xen_extra_version's replacement stores to the NULL page: a guest fault once a vCPU calls it.
FAULTING = """
#include <xsplice_payload.h>
static const char extra[] = "xen_extra_version";
const char *faulting_extra(void) { *(volatile int *)8 = 0; return "never"; }
LIVEPATCH_FUNC(faulting_funcs[]) = { {
    .version = LIVEPATCH_PAYLOAD_VERSION, .name = extra, .new_addr = faulting_extra, .old_addr = xen_extra_version,
    .new_size = XSPLICE_NEW_SIZE(faulting_extra), .old_size = XSPLICE_OLD_SIZE(xen_extra_version),
} };
"""

# An apply hook that never comes back.
LOOPING = """
#include <xsplice_payload.h>
static const char extra[] = "xen_extra_version";
const char *looping_extra(void) { return "Looping"; }
static int apply_hook(livepatch_payload_t *payload) { for (;;) ; return 0; }
LIVEPATCH_APPLY_HOOK(apply_hook);
LIVEPATCH_FUNC(looping_funcs[]) = { {
    .version = LIVEPATCH_PAYLOAD_VERSION, .name = extra, .new_addr = looping_extra, .old_addr = xen_extra_version,
    .new_size = XSPLICE_NEW_SIZE(looping_extra), .old_size = XSPLICE_OLD_SIZE(xen_extra_version),
} };
"""


def _built(tmp_path: Path, name: str, source: str) -> bytes:
    """The payload `name` built from `source`, as bytes."""
    (tmp_path / f"{name}.c").write_text(source)
    built = build_payload(tmp_path / f"{name}.c", tmp_path / f"{name}.livepatch", firmware=builtin_firmware())
    return built.read_bytes()


class Subprocess:
    """`xsplice-emu serve` in its own process (optionally with a lower file-descriptor limit)."""

    def __init__(self, directory: Path, *options: str, nofile: int | None = None):
        self.path = directory / "sock"
        self.trace = directory / "serve.jsonl"
        limit = None if nofile is None else lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
        self.process = subprocess.Popen(
            [str(Path(sys.executable).parent / "xsplice-emu"), "serve", "--socket", str(self.path), "--vcpus", "2",
             "--boot-ms", "1", "--trace", str(self.trace), *options],
            stderr=subprocess.PIPE, text=True, preexec_fn=limit)
        deadline = time.monotonic() + 60
        while not self.path.exists() and time.monotonic() < deadline and self.process.poll() is None:
            time.sleep(0.05)

    def rss_mib(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS"))) / 1024

    def terminate(self) -> tuple[int, str]:
        """SIGTERM; its exit status and log."""
        self.process.terminate()
        _, log = self.process.communicate(timeout=30)
        return self.process.returncode, log


@pytest.fixture
def serving() -> Iterator[Callable]:
    """Start `xsplice-emu serve` subprocesses in a short temporary directory; killed at the end if still there."""
    made: list[Subprocess] = []
    with tempfile.TemporaryDirectory(prefix="xs") as directory:
        def start(*options: str, nofile: int | None = None) -> Subprocess:
            made.append(Subprocess(Path(directory), *options, nofile=nofile))
            return made[-1]
        yield start
        for one in made:
            if one.process.poll() is None:
                one.process.kill()
                one.process.communicate()


@pytest.fixture
def served(payloads) -> Iterator[Callable[..., Served]]:
    """A 2-vCPU machine served from a thread."""
    made: list[Served] = []

    def make(**options) -> Served:
        made.append(Served(Session(vcpus=2, seed=1, boot_ms=1, base=payloads), **options))
        return made[-1]
    yield make
    for one in made:
        one.stop()


def _written_trace(one: Subprocess) -> bool:
    return one.trace.exists() and one.trace.read_text().startswith('{"format"')


@pytest.mark.slow
def test_idle_connections_past_the_descriptor_limit_do_not_end_the_server(serving):
    """With 96 file descriptors, 200 idle connections: the oldest are closed with a log line, a new client's LIST
    is answered, and SIGTERM still ends it with exit 0, its trace and the socket removed."""
    one = serving(nofile=96)
    idle = []
    for _ in range(200):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(str(one.path))
        idle.append(sock)
    with Client(one.path) as client:
        assert client.call(Request(Op.LIST)).entries == ()
    status, log = one.terminate()
    for sock in idle:
        sock.close()
    assert status == 0 and _written_trace(one) and not one.path.exists()
    assert "closed to make room (64 connections at most)" in log and "Traceback" not in log


@pytest.mark.slow
def test_a_guest_fault_is_answered_with_an_errno_and_the_trace_is_still_written(serving, tmp_path):
    """A payload whose new function faults, applied then reverted: the GET that runs the machine into the fault is
    answered (not a dropped connection), LIST still answers, and SIGTERM ends it with exit 0 and its trace."""
    one = serving()
    with Client(one.path) as client:
        assert client.call(Request(Op.UPLOAD, "faulting", data=_built(tmp_path, "faulting", FAULTING))).rc == 0
        assert client.call(Request(Op.ACTION, "faulting", cmd=Action.APPLY)).rc == 0
        assert client.call(Request(Op.GET, "faulting")).status_rc == 0
        assert client.call(Request(Op.ACTION, "faulting", cmd=Action.REVERT)).rc == 0
        status = client.call(Request(Op.GET, "faulting"))
        assert -errno.EFAULT in (status.rc, status.status_rc)
        assert [entry.name for entry in client.call(Request(Op.LIST)).entries] == ["faulting"]
    status, log = one.terminate()
    assert status == 0 and _written_trace(one) and "Traceback" not in log


@pytest.mark.slow
def test_partial_uploads_hold_a_bounded_amount_of_memory(serving):
    """40 connections each holding 3.5 MiB of a 4 MiB upload: the server's RSS grows by under 64 MiB (it held
    all 140 MiB before), the ones past its budget are closed with a log line, and LIST still answers."""
    one = serving()
    before = one.rss_mib()
    header = REQUEST.pack(REQUEST_MAGIC, Op.UPLOAD, VERSION, 1, 0, 0, 0, DATA_MAX) + b"u"
    held = []
    for _ in range(40):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(10)
        sock.connect(str(one.path))
        try:
            sock.sendall(header + bytes(DATA_MAX * 7 // 8))
        except OSError:
            pass  # closed by the server
        held.append(sock)
    with Client(one.path) as client:
        assert client.call(Request(Op.LIST)).entries == ()
    grown = one.rss_mib() - before
    for sock in held:
        sock.close()
    status, log = one.terminate()
    assert grown < 64, f"RSS grew by {grown:.0f} MiB"
    assert status == 0 and "partial requests fill the server's" in log


def test_a_served_machine_keeps_no_trace_events_without_trace(served, payloads):
    """`serve` without --trace keeps no events: 20 upload/apply/revert/unload cycles leave the machine's trace
    empty (it kept ~40 KiB a cycle before)."""
    one = served()
    data = (payloads / "xen_hello_world.livepatch").read_bytes()
    with Client(one.path) as client:
        for _ in range(20):
            assert client.call(Request(Op.UPLOAD, "hello", data=data)).rc == 0
            for action in (Action.APPLY, Action.REVERT):
                client.call(Request(Op.ACTION, "hello", cmd=action))
                assert client.call(Request(Op.GET, "hello")).status_rc == 0
            assert client.call(Request(Op.ACTION, "hello", cmd=Action.UNLOAD)).rc == 0
    assert one.session.machine.trace.events == []


def test_a_client_that_does_not_read_does_not_delay_another(served):
    """One client pipelines LISTs without reading its replies: another client's LIST is answered within 1 s."""
    one = served()
    hog = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    hog.connect(str(one.path))
    hog.setblocking(False)
    frames = Request(Op.LIST).encode() * 50_000
    try:
        while frames:
            frames = frames[hog.send(frames):]
    except BlockingIOError:
        pass
    started = time.monotonic()
    with Client(one.path) as client:
        assert client.call(Request(Op.LIST)).entries == ()
    assert time.monotonic() - started < 1.0
    hog.close()


def test_an_actions_timeout_is_bounded_by_xen_livepatchs(served, tmp_path, caplog):
    """ACTION with timeout 0xffffffff on a payload whose apply hook never returns: the hook is abandoned after
    xen-livepatch's 30 ms (ETIMEDOUT) within a few host seconds, and the log says the timeout was bounded."""
    caplog.set_level(logging.INFO)
    one = served()
    with Client(one.path) as client:
        assert client.call(Request(Op.UPLOAD, "looping", data=_built(tmp_path, "looping", LOOPING))).rc == 0
        started = time.monotonic()
        assert client.call(Request(Op.ACTION, "looping", cmd=Action.APPLY, timeout=0xFFFFFFFF)).rc == 0
        assert client.call(Request(Op.GET, "looping")).status_rc == -errno.ETIMEDOUT
    assert time.monotonic() - started < 5
    assert "ACTION looping: timeout 4294967295 ns bounded to 30000000 ns (xen-livepatch's)" in caplog.text


def test_names_are_escaped_in_the_log(served, caplog):
    """A name with a newline and a terminal escape goes into the log escaped: no forged line, no raw ESC."""
    caplog.set_level(logging.INFO)
    one = served()
    with Client(one.path) as client:
        assert client.call(Request(Op.GET, "x\n(XEN) forged\x1b[2J")).rc == -errno.ENOENT
    assert "x\\n(XEN) forged\\x1b[2J" in caplog.text
    assert "\x1b" not in caplog.text and "\n(XEN) forged" not in caplog.text


@pytest.mark.slow
def test_a_spooled_trace_holds_few_events_in_memory_and_writes_the_same_bytes(tmp_path):
    """10,000 events out of time order: spooled every 500 its peak memory is under a quarter of the trace kept
    in memory (a tenth here), and it writes the same file with the same digest."""
    def traced(spooled: bool) -> tuple[Trace, int]:
        tracemalloc.start()
        trace = Trace({"seed": 1})
        if spooled:
            trace.spool(every=500)
        rng = random.Random(3)
        for number in range(10_000):
            trace.emit(rng.randrange(50_000), rng.choice([None, 0, 1]), EventKind.TIMER, vector=number)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return trace, peak
    (kept, kept_peak), (spooled, spooled_peak) = traced(False), traced(True)
    kept.write(tmp_path / "kept.jsonl")
    spooled.write(tmp_path / "spooled.jsonl")
    assert (tmp_path / "kept.jsonl").read_bytes() == (tmp_path / "spooled.jsonl").read_bytes()
    assert kept.digest == spooled.digest and spooled_peak < kept_peak / 4


def test_a_stalled_partial_request_is_closed(served):
    """A client that sends half a request and then nothing: its connection is closed after the stall limit, and
    others are answered meanwhile."""
    one = served(stall_s=0.3)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stalled, Client(one.path) as client:
        stalled.settimeout(5)
        stalled.connect(str(one.path))
        stalled.sendall(Request(Op.LIST).encode()[:10])
        assert client.call(Request(Op.LIST)).entries == ()
        started = time.monotonic()
        assert stalled.recv(1) == b""
        assert 0.1 < time.monotonic() - started < 2
