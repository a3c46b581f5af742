"""Fuzz axis "socket sessions": seeded interleavings of concurrent clients sending valid requests in random pieces,
cut-off requests, disconnects before a reply, garbage and oversized headers, against one served machine. After
every case the server answers LIST, nothing refused changed the machine, and hello world still goes through."""

from __future__ import annotations

import errno
import random
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from helpers import Served

from xsplice_emu.control.session import Session
from xsplice_emu.livepatch import Action, PayloadState
from xsplice_emu.server import Client, Op, Request
from xsplice_emu.server.wire import DATA_MAX, REPLY, REQUEST, REQUEST_MAGIC, VERSION, decode_reply

# Requests the machine refuses without changing anything, and the rc each gets.
REFUSED = [
    (Request(Op.GET, "nobody"), -errno.ENOENT),
    (Request(Op.LIST), 0),
    (Request(Op.ACTION, "nobody", cmd=Action.APPLY, timeout=1000), -errno.ENOENT),
    (Request(Op.ACTION, "nobody", cmd=9), -errno.EOPNOTSUPP),
    (Request(Op.UPLOAD, "nobody", data=b"\x7fELF" + bytes(60)), -errno.EOPNOTSUPP),  # ELFCLASSNONE
    (Request(Op.UPLOAD, "x\n\x1b[2J", data=b"not an ELF"), -errno.EINVAL),
]
MEMORY_EVERY = 20
"""Cases between two hashes of guest memory (a change stays, so the last hash sees any)."""


@dataclass
class _Session:
    """One client's bytes to send, in pieces, and what it expects back."""

    sock: socket.socket
    pieces: list[bytes]
    expected: list[int] = field(default_factory=list)
    """rc of each whole valid request sent (read back in order); empty: the client does not read."""
    hangs_up: bool = False
    """It closes without reading (a cut-off request, a vanished client)."""


def _session(rng: random.Random, path: str) -> _Session:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(path)
    kind = rng.randrange(5)
    chosen = [rng.choice(REFUSED) for _ in range(rng.randrange(1, 4))]
    data = b"".join(request.encode() for request, _ in chosen)
    if kind == 0:  # valid requests, pipelined, read back
        return _Session(sock, _split(rng, data), expected=[rc for _, rc in chosen])
    if kind == 1:  # cut off mid-request
        return _Session(sock, _split(rng, data[:rng.randrange(1, len(data))]), hangs_up=True)
    if kind == 2:  # whole requests, gone before the replies
        return _Session(sock, _split(rng, data), hangs_up=True)
    if kind == 3:  # garbage, or a valid request with one bit flipped in its header
        garbage = bytearray(data)
        garbage[rng.randrange(min(len(garbage), REQUEST.size))] ^= 1 << rng.randrange(8)
        return _Session(sock, _split(rng, rng.choice([bytes(garbage), rng.randbytes(rng.randrange(1, 100))])))
    oversized = REQUEST.pack(REQUEST_MAGIC, Op.UPLOAD, VERSION, 1, 0, 0, 0, DATA_MAX + rng.randrange(1, 1 << 20)) + b"u"
    return _Session(sock, _split(rng, oversized))


def _split(rng: random.Random, data: bytes) -> list[bytes]:
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randrange(4)))) if len(data) > 1 else []
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


def _replies(sock: socket.socket, count: int) -> Iterator[int]:
    stream = sock.makefile("rb")
    for _ in range(count):
        header = stream.read(REPLY.size)
        yield decode_reply(header, stream.read(REPLY.unpack(header)[-1])).rc


def _finish(session: _Session) -> None:
    """Read what it expects (its rcs must match); hang up; or, for garbage, see the server close it."""
    with session.sock:
        if session.expected:
            assert list(_replies(session.sock, len(session.expected))) == session.expected
        elif not session.hangs_up:
            session.sock.shutdown(socket.SHUT_WR)
            try:
                while session.sock.recv(4096):  # the server closes a connection that sent no request
                    pass
            except ConnectionResetError:  # closed with bytes of ours unread
                pass


def _run_case(rng: random.Random, path: str) -> None:
    sessions = [_session(rng, path) for _ in range(rng.randrange(1, 5))]
    while any(s.pieces for s in sessions):
        session = rng.choice([s for s in sessions if s.pieces])
        try:
            session.sock.sendall(session.pieces.pop(0))
        except OSError:  # closed by the server (garbage): nothing more to send
            session.pieces.clear()
    for session in sessions:
        _finish(session)


@pytest.fixture
def cases(request) -> int:
    return request.config.getoption("fuzz_axis_cases")


def test_socket_sessions_change_nothing_and_the_server_keeps_serving(payloads, cases, request):
    """Seeded cases of concurrent hostile and honest clients: after each the server answers LIST with no payload
    and guest memory and virtual time are untouched; then hello world uploads, applies and reverts."""
    one = Served(Session(vcpus=2, seed=1, boot_ms=1, base=payloads))
    machine = one.session.machine
    memory, now_ps = machine.memory.digest(), machine.now_ps
    try:
        for case in range(cases):
            rng = random.Random(f"{request.config.getoption('fuzz_seed')}:{case}")
            _run_case(rng, str(one.path))
            with Client(one.path) as client:
                assert client.call(Request(Op.LIST)).entries == (), f"case {case}"
            assert one.failure is None and one.thread.is_alive() and machine.now_ps == now_ps, f"case {case}"
            if case % MEMORY_EVERY == MEMORY_EVERY - 1 or case == cases - 1:  # hashing memory takes ~80 ms
                assert machine.memory.digest() == memory, f"by case {case}"
        data = (payloads / "xen_hello_world.livepatch").read_bytes()
        with Client(one.path) as client:
            assert client.call(Request(Op.UPLOAD, "hello", data=data)).rc == 0
            for action, state in ((Action.APPLY, PayloadState.APPLIED), (Action.REVERT, PayloadState.CHECKED)):
                assert client.call(Request(Op.ACTION, "hello", cmd=action)).rc == 0
                status = client.call(Request(Op.GET, "hello"))
                assert (status.state, status.status_rc) == (state.value, 0)
    finally:
        one.stop()
