"""The wire format of `xsplice-emu serve`: Xen's livepatch sysctl over a Unix socket.

A request is a 24-byte little-endian header, then the name, then the data:

    magic "XSLP" | op u8 | version u8 (2) | name_len u16 | cmd u32 |
    timeout u32 | flags u32 | data_len u32 | name[name_len] | data[data_len]

`op` is Xen's sub-op (UPLOAD 0, GET 1, LIST 2, ACTION 3) or SHUTDOWN 0x80.
Only UPLOAD carries data; ACTION uses cmd (Xen's LIVEPATCH_ACTION_*),
timeout (ns, 0 for the default) and flags (LIVEPATCH_ACTION_APPLY_NODEPS). A name of
any length a u16 holds is taken: the hypervisor refuses a wrong one (EINVAL), as Xen does.
A reply is a 20-byte header, then its data:

    magic "XSLR" | rc i32 (0 or -errno) | state u32 | status_rc i32 | data_len u32

GET fills state and status_rc (Xen's `xen_livepatch_status`); LIST gives the
number of payloads in `state` and, as data, one `state u32 | rc i32 |
name_len u16 | metadata_len u32 | name | metadata` entry per payload in
upload order (metadata: its `.modinfo`, NUL-terminated strings, as Xen's
LIST gives them). A refused request (rc < 0) carries, as data, why: one
printable UTF-8 line of at most REASON_MAX bytes, for the clients that can
show it (Xen's own answer is the errno alone: the C library in
xenctrl/xenctrl.c, which speaks the same format, reads and drops it, so
xen-livepatch prints strerror as with Xen).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from ..errors import WireError
from ..livepatch.abi import PAYLOAD_MAX_SIZE

REQUEST = struct.Struct("<4sBBHIIII")
REPLY = struct.Struct("<4siIiI")
ENTRY = struct.Struct("<IiHI")
REQUEST_MAGIC, REPLY_MAGIC, VERSION = b"XSLP", b"XSLR", 2
NODEPS = 1 << 0
DATA_MAX = 2 * PAYLOAD_MAX_SIZE
"""Larger uploads are refused on the wire; up to this, the hypervisor gives its own verdict."""
REASON_MAX = 1024
"""Bytes of a refusal's reason sent; the rest is cut."""


class Op(enum.IntEnum):
    UPLOAD = 0
    GET = 1
    LIST = 2
    ACTION = 3
    SHUTDOWN = 0x80


@dataclass(frozen=True)
class Request:
    """One request, decoded."""

    op: Op
    name: str = ""
    cmd: int = 0
    timeout: int = 0
    flags: int = 0
    data: bytes = b""

    def encode(self) -> bytes:
        name = self.name.encode(errors="surrogateescape")
        return REQUEST.pack(REQUEST_MAGIC, self.op, VERSION, len(name), self.cmd, self.timeout, self.flags,
                            len(self.data)) + name + self.data


@dataclass(frozen=True)
class Entry:
    """One payload as LIST gives it."""

    name: str
    state: int
    rc: int
    metadata: bytes = b""
    """Its `.modinfo`: NUL-terminated strings (Xen's `metadata`), or nothing."""


@dataclass(frozen=True)
class Reply:
    """One reply: Xen's rc, and the status or list it carries, or why it was refused."""

    rc: int = 0
    state: int = 0
    status_rc: int = 0
    entries: tuple[Entry, ...] = ()
    reason: str = ""
    """Why the request was refused (rc < 0), or nothing."""

    def encode(self) -> bytes:
        if self.rc < 0:
            data = self.reason.encode(errors="backslashreplace")[:REASON_MAX]
        else:
            data = b"".join(ENTRY.pack(e.state, e.rc, len(name), len(e.metadata)) + name + e.metadata
                            for e in self.entries for name in [e.name.encode(errors="surrogateescape")])
        return REPLY.pack(REPLY_MAGIC, self.rc, self.state, self.status_rc, len(data)) + data


def request_size(header: bytes) -> int:
    """The whole size of the request that starts with this header (WireError: not a request)."""
    magic, op, version, name_len, _, _, _, data_len = REQUEST.unpack(header)
    if magic != REQUEST_MAGIC:
        raise WireError(f"bad magic {magic!r}")
    if version != VERSION:
        raise WireError(f"wire version {version}, expected {VERSION}")
    if op not in Op.__members__.values():
        raise WireError(f"unknown op {op}")
    if data_len > (DATA_MAX if op == Op.UPLOAD else 0):
        raise WireError(f"{Op(op).name} with {data_len} bytes of data")
    return REQUEST.size + name_len + data_len


def decode_request(frame: bytes) -> Request:
    """A whole request (its size checked by `request_size`)."""
    _, op, _, name_len, cmd, timeout, flags, _ = REQUEST.unpack_from(frame)
    name = frame[REQUEST.size:REQUEST.size + name_len].decode(errors="surrogateescape")
    return Request(Op(op), name, cmd, timeout, flags, frame[REQUEST.size + name_len:])


def decode_reply(header: bytes, data: bytes) -> Reply:
    """A reply from its header and data (a client's side)."""
    magic, rc, state, status_rc, _ = REPLY.unpack(header)
    if magic != REPLY_MAGIC:
        raise WireError(f"bad reply magic {magic!r}")
    if rc < 0:
        return Reply(rc, state, status_rc, reason=data.decode(errors="replace"))
    entries, offset = [], 0
    while offset < len(data):
        entry_state, entry_rc, name_len, metadata_len = ENTRY.unpack_from(data, offset)
        offset += ENTRY.size
        name = data[offset:offset + name_len].decode(errors="surrogateescape")
        offset += name_len
        entries.append(Entry(name, entry_state, entry_rc, data[offset:offset + metadata_len]))
        offset += metadata_len
    return Reply(rc, state, status_rc, tuple(entries))
