"""`SysctlServer`: one live machine answering Xen's livepatch sysctl on a Unix socket.

Requests come in the wire format of `wire`. Like Xen, ACTION only schedules
(the payload's rc is -EAGAIN meanwhile); virtual time passes while a client
polls with GET: each GET made while an action is pending lets the machine
run until the action completes or for `poll_ns` (default: twice the action's
timeout, as long as xen-livepatch waits), so a client sees -EAGAIN, then
the result. Bytes that are not a request, and clients that go away, cost one
log line and that connection; the machine does not see them.
"""

from __future__ import annotations

import errno
import logging
import os
import selectors
import socket
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError, LivepatchError, WireError
from ..files import file_errors
from ..livepatch import Action
from ..session import Session
from ..text import printable
from .wire import NODEPS, REQUEST, Entry, Op, Reply, Request, decode_request, request_size

log = logging.getLogger(__name__)
SEND_TIMEOUT_S = 5.0


@dataclass
class _Client:
    """One connection and the bytes of its next request so far."""

    sock: socket.socket
    number: int
    buffer: bytearray = field(default_factory=bytearray)


class SysctlServer:
    """Serves `session`'s livepatch controller on the Unix socket at `path` until `stop()` or SHUTDOWN."""

    def __init__(self, session: Session, path: str | Path, *, poll_ns: int | None = None):
        self.session = session
        self.path = Path(path)
        self.poll_ns = poll_ns
        if self.path.exists() and not self.path.is_socket():
            raise ConfigError(f"{self.path}: exists and is not a socket (refusing to replace it)")
        if _answering(self.path):
            raise ConfigError(f"{self.path}: another server answers there")
        self.path.unlink(missing_ok=True)  # a stale socket of a server that is gone
        self._selector = selectors.DefaultSelector()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with file_errors(self.path, "listen on"):
            self._listener.bind(str(self.path))
            self._listener.listen()
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._stopping = False
        self._accepted = 0
        self._log_seen = len(session.livepatch.rendezvous.log)

    def serve(self) -> None:
        """Answer requests until stopped, then close every connection and remove the socket."""
        try:
            while not self._stopping:
                for key, _ in self._selector.select(timeout=0.2):
                    if key.fileobj is self._listener:
                        self._accept()
                    else:
                        self._receive(key.data)
        finally:
            for key in list(self._selector.get_map().values()):
                key.fileobj.close()  # type: ignore[union-attr]
            self._selector.close()
            self.path.unlink(missing_ok=True)

    def stop(self) -> None:
        """Make `serve` return (safe from a signal handler or another thread)."""
        self._stopping = True

    # -- connections ---------------------------------------------------------
    def _accept(self) -> None:
        sock, _ = self._listener.accept()
        sock.settimeout(SEND_TIMEOUT_S)
        self._accepted += 1
        self._selector.register(sock, selectors.EVENT_READ, _Client(sock, self._accepted))

    def _receive(self, client: _Client) -> None:
        try:
            chunk = client.sock.recv(1 << 16)
        except OSError as exc:
            return self._drop(client, f"receive failed: {exc}")
        if not chunk:
            why = f"disconnected mid-request ({len(client.buffer)} bytes)" if client.buffer else None
            return self._drop(client, why)
        client.buffer += chunk
        while len(client.buffer) >= REQUEST.size and not self._stopping:
            try:
                size = request_size(bytes(client.buffer[:REQUEST.size]))
            except WireError as exc:
                return self._drop(client, f"not a request: {exc}")
            if len(client.buffer) < size:
                return
            request = decode_request(bytes(client.buffer[:size]))
            del client.buffer[:size]
            try:
                client.sock.sendall(self.answer(request).encode())
            except OSError as exc:
                return self._drop(client, f"gone before its {request.op.name} reply: {exc}")

    def _drop(self, client: _Client, why: str | None) -> None:
        if why:
            log.warning("client %d: %s; connection closed", client.number, why)
        self._selector.unregister(client.sock)
        client.sock.close()

    # -- the sysctl ----------------------------------------------------------
    def answer(self, request: Request) -> Reply:
        """What the hypervisor answers to `request`."""
        livepatch = self.session.livepatch
        try:
            if request.op is Op.UPLOAD:
                livepatch.upload(request.name, request.data)
                return self._logged(Reply())
            if request.op is Op.GET:
                livepatch.poll(self.poll_ns)
                payload = livepatch.get(request.name)
                return self._logged(Reply(state=payload.state.value, status_rc=payload.rc))
            if request.op is Op.LIST:
                entries = tuple(Entry(p.name, p.state.value, p.rc) for p in livepatch.list())
                return Reply(state=len(entries), entries=entries)
            if request.op is Op.ACTION:
                return self._action(request)
            self.stop()
            return Reply()
        except LivepatchError as exc:
            log.info("%s %s: %s", request.op.name, printable(request.name), exc)
            return self._logged(Reply(rc=-exc.errno))

    def _action(self, request: Request) -> Reply:
        if request.flags & ~NODEPS:
            return Reply(rc=-errno.EINVAL)
        try:
            action = Action(request.cmd)
        except ValueError:
            return Reply(rc=-errno.EOPNOTSUPP)
        self.session.livepatch.action(request.name, action, timeout_ns=request.timeout,
                                      nodeps=bool(request.flags & NODEPS))
        return self._logged(Reply())

    def _logged(self, reply: Reply) -> Reply:
        """The hypervisor's new log lines go to the server's log, as its console would show them."""
        lines = self.session.livepatch.rendezvous.log
        for line in lines[self._log_seen:]:
            log.info("(XEN) %s", line)
        self._log_seen = len(lines)
        return reply


def _answering(path: Path) -> bool:
    """Whether a server already answers at `path`."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(os.fspath(path))
        except OSError:
            return False
    return True
