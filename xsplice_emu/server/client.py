"""`Client`: the sysctl of a `serve`d machine from Python, as the C library speaks it."""

from __future__ import annotations

import socket
from pathlib import Path

from ..errors import WireError
from .wire import REPLY, Reply, Request, decode_reply


class Client:
    """One connection to `xsplice-emu serve`; `call` sends a request and gives its reply."""

    def __init__(self, path: str | Path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(path))

    def call(self, request: Request) -> Reply:
        self.sock.sendall(request.encode())
        header = self._read(REPLY.size)
        return decode_reply(header, self._read(REPLY.unpack(header)[-1]))

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_) -> None:
        self.close()

    def _read(self, size: int) -> bytes:
        data = bytearray()
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                raise WireError(f"the server closed the connection after {len(data)} of {size} bytes")
            data += chunk
        return bytes(data)
