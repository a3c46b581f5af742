"""`xsplice-emu serve` and libxenctrl.so.4.17: Xen's own xen-livepatch drives the testbed (issue 11, parts 3-4)."""

from __future__ import annotations

import errno
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import Served, debian_file

from xsplice_emu.cli import main
from xsplice_emu.control.operator import ERR, OUT
from xsplice_emu.control.session import Session
from xsplice_emu.control.verbs import parse
from xsplice_emu.livepatch import Action, PayloadState
from xsplice_emu.provision.debian import xen_livepatch
from xsplice_emu.provision.xenctrl import xenctrl_dir
from xsplice_emu.server import Client, Op, Reply, Request

# Xen's maintainers' sequence (reference section 6), one xen-livepatch command a line.
SEQUENCE = """
list
revert xen_hello_world
load xen_hello_world.livepatch
load xen_hello_world.livepatch
list
revert xen_hello_world
unload xen_hello_world
unload xen_hello_world
load xen_hello_world.livepatch
load xen_bye_world.livepatch
upload xen_replace xen_replace_world.livepatch
replace xen_replace
list
apply xen_hello_world
apply xen_bye_world
apply xen_replace
revert xen_replace
unload xen_replace
unload xen_hello_world
unload xen_bye_world
list
load xen_nop.livepatch
revert xen_nop
apply xen_nop
unload xen_nop
revert xen_nop
unload xen_nop
list
""".strip().splitlines()


@pytest.fixture
def served(payloads):
    """Make a 4-vCPU machine (seed 1) served from a thread; stopped at the end of the test."""
    made: list[Served] = []

    def make(**options) -> Served:
        made.append(Served(Session(vcpus=4, seed=1, boot_ms=1, base=payloads), **options))
        return made[-1]
    yield make
    for one in made:
        one.stop()


@pytest.fixture(scope="session")
def real_tool():
    """Debian's xen-livepatch 4.17 of the pinned build."""
    return debian_file(xen_livepatch)


def _run_real(tool: Path, command: str, socket_path: Path, cwd: Path) -> tuple[str, str, int]:
    env = dict(os.environ, LD_LIBRARY_PATH=str(xenctrl_dir()), XSPLICE_EMU_SOCKET=str(socket_path))
    result = subprocess.run([str(tool), *command.split()], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=30)
    return result.stdout, result.stderr, result.returncode


def _run_emulated(session: Session, command: str) -> tuple[str, str, int]:
    outcome = session.command(parse(command))
    text = {stream: "".join(t for s, t in outcome.chunks if s == stream) for stream in (OUT, ERR)}
    return text[OUT], text[ERR], outcome.exit_code


@pytest.mark.slow
def test_real_xen_livepatch_and_the_emulated_tool_agree_on_xens_sequence(served, payloads, real_tool):
    """Xen's maintainers' sequence: the real tool on a served machine and `xsplice-emu livepatch`'s tool on an
    identical one print the same stdout and stderr, exit alike, and leave every vCPU with the same versions."""
    one = served()
    emulated = Session(vcpus=4, seed=1, boot_ms=1, base=payloads)
    for command in SEQUENCE:
        real = _run_real(real_tool, command, one.path, payloads)
        assert real == _run_emulated(emulated, command), command
        if command.startswith(("load", "replace", "revert", "apply")):
            assert one.session.versions() == emulated.versions(), command
    assert one.session.text_unchanged() and one.failure is None


def test_the_real_tool_patches_every_vcpu(served, payloads, real_tool):
    """`xen-livepatch load xen_hello_world.livepatch` through the library: every vCPU says "Hello World"."""
    one = served()
    assert _run_real(real_tool, "load xen_hello_world.livepatch", one.path, payloads)[2] == 0
    assert {v.extra for v in one.session.versions()} == {"Hello World"}


def test_a_polling_client_sees_eagain_then_the_result(served, payloads):
    """ACTION only schedules; each GET lets a little virtual time pass: -EAGAIN first, then APPLIED with rc 0."""
    one = served(poll_ns=1_000)
    with Client(one.path) as client:
        data = (payloads / "xen_hello_world.livepatch").read_bytes()
        assert client.call(Request(Op.UPLOAD, "hello", data=data)).rc == 0
        assert client.call(Request(Op.ACTION, "hello", cmd=Action.APPLY)).rc == 0
        statuses = [client.call(Request(Op.GET, "hello")) for _ in range(200)]
    rcs = [status.status_rc for status in statuses]
    assert rcs[0] == -errno.EAGAIN and 0 in rcs
    done = rcs.index(0)
    assert set(rcs[:done]) == {-errno.EAGAIN} and statuses[done].state == PayloadState.APPLIED
    assert {v.extra for v in one.session.versions()} == {"Hello World"}


def test_xen_errors_come_back_as_rc(served):
    """Refused requests answer Xen's -errno: unknown payload, bad action, bad flags, oversized name."""
    one = served()
    with Client(one.path) as client:
        assert client.call(Request(Op.GET, "nobody")).rc == -errno.ENOENT
        assert client.call(Request(Op.ACTION, "nobody", cmd=Action.APPLY)).rc == -errno.ENOENT
        assert client.call(Request(Op.ACTION, "nobody", cmd=9)).rc == -errno.EOPNOTSUPP
        assert client.call(Request(Op.ACTION, "nobody", cmd=Action.APPLY, flags=2)).rc == -errno.EINVAL
        assert client.call(Request(Op.UPLOAD, "x", data=b"not an ELF")).rc == -errno.EINVAL
        assert client.call(Request(Op.LIST)).entries == ()


def _garbage(rng: random.Random, path: Path, valid: list[bytes]) -> None:
    """One hostile client: random bytes, a cut-off request, or a request whose reply it never reads."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(path))
        kind = rng.randrange(4)
        frame = rng.choice(valid)
        if kind == 0:
            data = rng.randbytes(rng.randrange(1, 200))
        elif kind == 1:
            data = frame[:rng.randrange(1, len(frame))]
        elif kind == 2:
            data = bytearray(frame)
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            data = bytes(data)
        else:
            sock.sendall(frame)
            return  # gone before the reply
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            while sock.recv(4096):
                pass
        except OSError:
            pass


def test_garbage_on_the_socket_changes_nothing_and_the_server_keeps_serving(served, payloads):
    """1,000 hostile clients (seeded): the server stays up, memory, time and payloads are untouched, and a valid
    request still works afterwards."""
    one = served()
    machine = one.session.machine
    before = (machine.memory.digest(), machine.now_ps)
    valid = [Request(Op.GET, "nobody").encode(), Request(Op.LIST).encode(),
             Request(Op.ACTION, "nobody", cmd=Action.APPLY, timeout=1000).encode(),
             Request(Op.UPLOAD, "nobody", data=b"\x7fELF" + bytes(60)).encode()]
    rng = random.Random(11)
    for _ in range(1000):
        _garbage(rng, one.path, valid)
    with Client(one.path) as client:
        assert client.call(Request(Op.LIST)).entries == ()
    one.server.stop()
    one.thread.join(timeout=10)
    assert one.failure is None
    assert (machine.memory.digest(), machine.now_ps) == before and one.session.livepatch.list() == []
    again = served()
    with Client(again.path) as client:
        data = (payloads / "xen_hello_world.livepatch").read_bytes()
        assert client.call(Request(Op.UPLOAD, "hello", data=data)).rc == 0


@pytest.mark.slow
def test_serve_command_answers_and_writes_its_trace_on_sigterm(payloads, real_tool, tmp_path):
    """`xsplice-emu serve --trace FILE`: the real tool lists nothing; SIGTERM ends it with exit 0 and the trace."""
    with tempfile.TemporaryDirectory(prefix="xs") as directory:
        path = Path(directory) / "sock"
        trace = tmp_path / "serve.jsonl"
        server = subprocess.Popen([str(Path(sys.executable).parent / "xsplice-emu"), "serve", "--socket", str(path),
                                   "--vcpus", "2", "--trace", str(trace), "-q"], stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not path.exists() and time.monotonic() < deadline and server.poll() is None:
            time.sleep(0.05)
        assert _run_real(real_tool, "list", path, payloads) == ("Nothing to list\n", "", 0)
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
        assert trace.stat().st_size > 0 and not path.exists()


def test_serve_refuses_a_socket_path_that_is_an_existing_file(tmp_path):
    """--socket naming an existing regular file is refused (exit 2, one line) and the file is left as it was."""
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me")
    result = CliRunner().invoke(main, ["serve", "--socket", str(precious), "--boot-ms", "0"])
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {precious}: exists and is not a socket (refusing to replace it)"
    assert precious.read_text() == "keep me"


def test_serve_refuses_a_poll_longer_than_any_duration_the_cli_takes(tmp_path):
    """--poll-ns past 60 virtual s (a GET that could run the machine for ever while Xen's own hook never returns):
    exit 2 and the range, no socket made."""
    socket = tmp_path / "s.sock"
    result = CliRunner().invoke(main, ["serve", "--socket", str(socket), "--boot-ms", "0",
                                       "--poll-ns", "60000000001"])
    assert result.exit_code == 2
    assert "'--poll-ns': 60000000001 is not in the range 1..60000000000" in result.output
    assert not socket.exists()


def _records(caplog, op: str) -> list[tuple[str, str]]:
    """(level name, message) of the server's log lines about `op` requests."""
    return [(r.levelname, r.getMessage()) for r in caplog.records
            if r.name == "xsplice_emu.server.server" and r.getMessage().startswith(f"{op} ")]


def test_a_refused_upload_says_why_to_the_client_and_in_the_log(served, caplog):
    """An upload that is not an ELF file: the reply carries Xen's -EINVAL and the reason, the log a warning with
    that reason; the connection then answers LIST as before."""
    caplog.set_level(logging.INFO)
    one = served()
    with Client(one.path) as client:
        reply = client.call(Request(Op.UPLOAD, "junk", data=b"not an ELF"))
        assert reply.rc == -errno.EINVAL and reply.entries == ()
        assert reply.reason == "junk: not an ELF file: shorter than its header (EINVAL)"
        assert client.call(Request(Op.LIST)) == Reply(state=0)
    assert _records(caplog, "UPLOAD") == [("WARNING", "UPLOAD junk refused: not an ELF file: shorter than its "
                                                      "header (EINVAL)")]


def test_an_actions_unknown_flags_are_refused_with_a_reason(served, caplog):
    """ACTION with a flag Xen does not define: -EINVAL, and the reply and the log name the flags."""
    caplog.set_level(logging.INFO)
    one = served()
    with Client(one.path) as client:
        reply = client.call(Request(Op.ACTION, "nobody", cmd=Action.APPLY, flags=6))
    assert reply.rc == -errno.EINVAL and reply.reason == "nobody: flags 0x6: only NODEPS (0x1) is defined (EINVAL)"
    assert _records(caplog, "ACTION") == [("WARNING", "ACTION nobody refused: flags 0x6: only NODEPS (0x1) is "
                                                      "defined (EINVAL)")]


def test_the_get_after_an_unload_is_an_answer_not_a_refusal(served, payloads, caplog):
    """xen-livepatch's unload: ACTION UNLOAD, then GET until ENOENT. That GET is logged as information (no such
    payload), and nothing in the unload is logged as a warning or an error."""
    caplog.set_level(logging.INFO)
    one = served()
    with Client(one.path) as client:
        data = (payloads / "xen_hello_world.livepatch").read_bytes()
        assert client.call(Request(Op.UPLOAD, "hello", data=data)).rc == 0
        caplog.clear()
        assert client.call(Request(Op.ACTION, "hello", cmd=Action.UNLOAD)).rc == 0
        assert client.call(Request(Op.GET, "hello")).rc == -errno.ENOENT
    assert _records(caplog, "GET") == [("INFO", "GET hello: no such payload (ENOENT)")]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_the_real_tool_ignores_a_refusals_reason_and_the_log_gives_it(served, payloads, real_tool, tmp_path,
                                                                      caplog):
    """xen-livepatch uploading a file that is not a payload prints Xen's strerror alone, as before (the library
    ignores the reason sent with it); the server's log says why it was refused."""
    caplog.set_level(logging.INFO)
    one = served()
    junk = tmp_path / "junk.livepatch"
    junk.write_bytes(b"not an ELF")
    assert _run_real(real_tool, f"upload junk {junk}", one.path, payloads) == (
        f"Uploading {junk}... failed\n", "Error 22: Invalid argument\n", 1)
    assert _records(caplog, "UPLOAD") == [("WARNING", "UPLOAD junk refused: not an ELF file: shorter than its "
                                                      "header (EINVAL)")]
