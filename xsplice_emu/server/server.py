"""`SysctlServer`: one live machine answering Xen's livepatch sysctl on a Unix socket.

Requests come in the wire format of `wire`. Like Xen, ACTION only schedules
(the payload's rc is -EAGAIN meanwhile); virtual time passes while a client
polls with GET: each GET made while an action is pending lets the machine
run until the action completes or for `poll_ns` (default: twice the action's
timeout, as long as xen-livepatch waits), so a client sees -EAGAIN, then
the result. An ACTION's timeout is bounded by xen-livepatch's own
(`ACTION_TIMEOUT_MAX_NS`), so one request runs the machine for a bounded time.

Clients are untrusted and served fairly from one non-blocking loop: each
round answers at most one request per connection; a connection's next
request is read only once its previous reply has been taken, so a client
that does not read its replies waits alone and holds one reply at most; a
partial request holds at most one request's bytes (`wire.request_size`), all
connections together at most `BUFFERED_MAX`; a partial request or an untaken
reply left without progress for `stall_s` wall seconds closes its connection
(wall time: clients live in it, and the machine never sees them); beyond
`max_connections` the connection idle longest is closed. Bytes that are not a
request, and clients that go away, cost one log line and that connection;
the machine does not see them. A request that raises is answered with an
errno and why (the reply's reason) and logged, a refusal as a warning; the
server keeps serving. Log lines escape what is not
printable, so a payload name cannot forge lines or drive the terminal.
"""

from __future__ import annotations

import errno
import logging
import os
import resource
import selectors
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..control.session import Session
from ..errors import ConfigError, GuestFault, LivepatchError, WireError
from ..files import file_errors
from ..livepatch import Action
from ..text import printable
from .wire import NODEPS, REQUEST, Entry, Op, Reply, Request, decode_request, request_size

log = logging.getLogger(__name__)


class _Escaped(logging.Filter):
    """Escapes what is not printable in a log line (a payload name with a newline or a terminal escape)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = printable(record.getMessage()), None
        return True


log.addFilter(_Escaped())

ACTION_TIMEOUT_MAX_NS = 30_000_000
"""The longest ACTION timeout used: xen-livepatch's HYPERVISOR_TIMEOUT_NS (it then waits twice that)."""
CONNECTIONS_MAX = 256
"""Connections served at once (fewer when the file-descriptor limit is lower; see `_connection_cap`)."""
FDS_RESERVED = 32
"""File descriptors kept for everything but connections (the listener, the trace, the toolchain, Python)."""
BUFFERED_MAX = 32 * 1024 * 1024
"""Bytes of partial requests held for all connections together."""
STALL_S = 30.0
"""Wall seconds a partial request or an untaken reply may sit without progress."""
RECEIVE_MAX = 1 << 16
SELECT_S = 0.2


@dataclass(eq=False)
class _Connection:
    """One client: the bytes of its next request so far, and its reply not yet taken."""

    sock: socket.socket
    number: int
    active: float
    """When it last sent or took bytes (monotonic seconds)."""
    inbox: bytearray = field(default_factory=bytearray)
    outbox: bytearray = field(default_factory=bytearray)

    @property
    def busy(self) -> bool:
        """Whether it holds a partial request or an untaken reply."""
        return bool(self.inbox or self.outbox)


class SysctlServer:
    """Serves `session`'s livepatch controller on the Unix socket at `path` until `stop()` or SHUTDOWN."""

    def __init__(self, session: Session, path: str | Path, *, poll_ns: int | None = None,
                 trace_path: str | Path | None = None, max_connections: int | None = None, stall_s: float = STALL_S):
        self.session = session
        self.path = Path(path)
        self.trace_path = trace_path
        self.poll_ns = poll_ns
        self.max_connections = max_connections or _connection_cap()
        self.stall_s = stall_s
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
        self._listener.setblocking(False)
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._connections: dict[int, _Connection] = {}
        self._stopping = False
        self._accepted = 0
        self._log_seen = len(session.livepatch.rendezvous.log)
        if trace_path is None:
            session.machine.trace.discard()
        else:
            session.machine.trace.spool()

    @property
    def buffered(self) -> int:
        """Bytes held for all connections: partial requests and untaken replies."""
        return sum(len(c.inbox) + len(c.outbox) for c in self._connections.values())

    def serve(self) -> None:
        """Answer requests until stopped, then close every connection, remove the socket and write the trace to
        `trace_path` (whatever ended it). Without `trace_path` the machine keeps no trace events; with it, they
        are spooled to a temporary file meanwhile, so memory stays bounded either way."""
        try:
            while not self._stopping:
                waiting = [c for c in self._connections.values() if _complete(c)]
                for key, events in self._selector.select(timeout=0 if waiting else SELECT_S):
                    if key.fileobj is self._listener:
                        self._accept()
                    elif key.data.number in self._connections:
                        self._exchange(key.data, events)
                for connection in [c for c in self._connections.values() if _complete(c)]:
                    if self._stopping:
                        break
                    self._answer_next(connection)
                self._close_stalled()
        finally:
            for connection in list(self._connections.values()):
                self._drop(connection, None)
            self._selector.close()
            self._listener.close()
            self.path.unlink(missing_ok=True)
            if self.trace_path is not None:
                self.session.machine.trace.write(self.trace_path)

    def stop(self) -> None:
        """Make `serve` return (safe from a signal handler or another thread)."""
        self._stopping = True

    # -- connections ---------------------------------------------------------
    def _accept(self) -> None:
        try:
            sock, _ = self._listener.accept()
        except BlockingIOError:
            return
        except OSError as exc:  # out of file descriptors: make room, the client is taken next round
            log.warning("cannot accept a connection: %s", exc.strerror or exc)
            if self._connections:
                self._drop(self._idlest(), "closed to make room")
            return
        if len(self._connections) >= self.max_connections:
            self._drop(self._idlest(), f"closed to make room ({self.max_connections} connections at most)")
        sock.setblocking(False)
        self._accepted += 1
        connection = _Connection(sock, self._accepted, time.monotonic())
        self._connections[connection.number] = connection
        self._selector.register(sock, selectors.EVENT_READ, connection)

    def _idlest(self) -> _Connection:
        return min(self._connections.values(), key=lambda c: c.active)

    def _exchange(self, connection: _Connection, events: int) -> None:
        if events & selectors.EVENT_WRITE:
            self._send(connection)
        if events & selectors.EVENT_READ and connection.number in self._connections:
            self._receive(connection)

    def _receive(self, connection: _Connection) -> None:
        """Read up to the end of the connection's next request, never beyond it."""
        wanted = min(_missing(connection), RECEIVE_MAX)
        if not wanted:
            return
        if self.buffered + wanted > BUFFERED_MAX:
            return self._drop(connection, f"partial requests fill the server's {BUFFERED_MAX:,} bytes")
        try:
            chunk = connection.sock.recv(wanted)
        except BlockingIOError:
            return
        except OSError as exc:
            return self._drop(connection, f"receive failed: {exc.strerror or exc}")
        if not chunk:
            partial = len(connection.inbox)
            return self._drop(connection, f"disconnected mid-request ({partial} bytes)" if partial else None)
        connection.inbox += chunk
        connection.active = time.monotonic()
        try:
            _missing(connection)
        except WireError as exc:
            self._drop(connection, f"not a request: {exc}")

    def _answer_next(self, connection: _Connection) -> None:
        frame = bytes(connection.inbox)
        connection.inbox.clear()
        connection.outbox += self.answer(decode_request(frame)).encode()
        self._send(connection)

    def _send(self, connection: _Connection) -> None:
        try:
            sent = connection.sock.send(connection.outbox)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            return self._drop(connection, f"gone before its reply: {exc.strerror or exc}")
        if sent:
            del connection.outbox[:sent]
            connection.active = time.monotonic()
        self._watch(connection)

    def _watch(self, connection: _Connection) -> None:
        """Wait to send while its reply is untaken, else to read its next request."""
        events = selectors.EVENT_WRITE if connection.outbox else selectors.EVENT_READ
        self._selector.modify(connection.sock, events, connection)

    def _close_stalled(self) -> None:
        now = time.monotonic()
        for connection in [c for c in self._connections.values() if c.busy and now - c.active > self.stall_s]:
            what = "an untaken reply" if connection.outbox else f"a partial request ({len(connection.inbox)} bytes)"
            self._drop(connection, f"{what} without progress for {self.stall_s:g} s")

    def _drop(self, connection: _Connection, why: str | None) -> None:
        if why:
            log.warning("client %d: %s; connection closed", connection.number, why)
        del self._connections[connection.number]
        self._selector.unregister(connection.sock)
        connection.sock.close()

    # -- the sysctl ----------------------------------------------------------
    def answer(self, request: Request) -> Reply:
        """What the hypervisor answers to `request`; whatever it raises is logged and answered with an errno."""
        try:
            return self._logged(self._sysctl(request))
        except LivepatchError as exc:
            _log_refusal(request, exc)
            return self._logged(Reply(rc=-exc.errno, reason=str(exc)))
        except GuestFault as exc:
            log.warning("%s: %s (EFAULT)", _subject(request), exc)
            return self._logged(Reply(rc=-errno.EFAULT, reason=f"{exc} (EFAULT)"))
        except Exception as exc:  # one bad request must not end the server
            log.error("%s: internal error: %s: %s (EIO)", _subject(request), type(exc).__name__, exc)
            return self._logged(Reply(rc=-errno.EIO, reason="internal error of the server, in its log (EIO)"))

    def _sysctl(self, request: Request) -> Reply:
        livepatch = self.session.livepatch
        if request.op is Op.UPLOAD:
            livepatch.upload(request.name, request.data)
            return Reply()
        if request.op is Op.GET:
            livepatch.poll(self.poll_ns)
            payload = livepatch.get(request.name)
            return Reply(state=payload.state.value, status_rc=payload.rc)
        if request.op is Op.LIST:
            entries = tuple(Entry(p.name, p.state.value, p.rc, p.metadata) for p in livepatch.list())
            return Reply(state=len(entries), entries=entries)
        if request.op is Op.ACTION:
            return self._action(request)
        self.stop()
        return Reply()

    def _action(self, request: Request) -> Reply:
        if request.flags & ~NODEPS:
            raise LivepatchError(errno.EINVAL, f"{request.name}: flags {request.flags:#x}: only NODEPS ({NODEPS:#x}) "
                                               "is defined")
        try:
            action = Action(request.cmd)
        except ValueError:
            raise LivepatchError(errno.EOPNOTSUPP, f"{request.name}: unknown action {request.cmd}") from None
        timeout_ns = request.timeout
        if timeout_ns > ACTION_TIMEOUT_MAX_NS:
            log.info("ACTION %s: timeout %d ns bounded to %d ns (xen-livepatch's)", request.name, timeout_ns,
                     ACTION_TIMEOUT_MAX_NS)
            timeout_ns = ACTION_TIMEOUT_MAX_NS
        self.session.livepatch.action(request.name, action, timeout_ns=timeout_ns,
                                      nodeps=bool(request.flags & NODEPS))
        return Reply()

    def _logged(self, reply: Reply) -> Reply:
        """The hypervisor's new log lines go to the server's log, as its console would show them."""
        lines = self.session.livepatch.rendezvous.log
        for line in lines[self._log_seen:]:
            log.info("(XEN) %s", line)
        self._log_seen = len(lines)
        return reply


def _subject(request: Request) -> str:
    """`UPLOAD hello` (`LIST` alone) as the log names a request."""
    return f"{request.op.name} {request.name}" if request.name else request.op.name


def _log_refusal(request: Request, refusal: LivepatchError) -> None:
    """A warning with the reason, what xen-livepatch cannot show (it prints strerror); but GET's ENOENT is an
    answer, not a refusal (xen-livepatch asks it after each unload): information."""
    reason = str(refusal).removeprefix(f"{printable(request.name)}: ")
    if request.op is Op.GET and refusal.errno == errno.ENOENT:
        log.info("%s: %s", _subject(request), reason)
    else:
        log.warning("%s refused: %s", _subject(request), reason)


def _missing(connection: _Connection) -> int:
    """Bytes still to read for the connection's next request (WireError: the header in is not a request's)."""
    have = len(connection.inbox)
    if have < REQUEST.size:
        return REQUEST.size - have
    return request_size(bytes(connection.inbox[:REQUEST.size])) - have


def _complete(connection: _Connection) -> bool:
    """Whether the connection's next request is all in (and its previous reply taken)."""
    return not connection.outbox and len(connection.inbox) >= REQUEST.size and _missing(connection) == 0


def _connection_cap() -> int:
    """`CONNECTIONS_MAX`, or fewer so that connections cannot exhaust the file-descriptor limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return CONNECTIONS_MAX
    return max(1, min(CONNECTIONS_MAX, soft - FDS_RESERVED))


def _answering(path: Path) -> bool:
    """Whether a server already answers at `path`."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(os.fspath(path))
        except OSError:
            return False
    return True
