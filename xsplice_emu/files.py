"""The files the tool reads and writes: the one place where `OSError` becomes a `FileError`.

Inputs are regular files read up to a limit (never a device or a FIFO read
without end); destinations are checked before a long run, so a run's result
is never lost to a missing directory.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import FileError

TEXT_LIMIT = 16 * 1024 * 1024
"""Largest scenario or other text input read (bytes)."""


@contextmanager
def file_errors(path: str | Path, doing: str) -> Iterator[None]:
    """Turn an `OSError` inside the block into `FileError("PATH: cannot DOING: reason")`."""
    try:
        yield
    except OSError as exc:
        raise FileError(f"{path}: cannot {doing}: {exc.strerror or exc}", errno=exc.errno or errno.EIO) from None


def read_file(path: str | Path, *, limit: int, what: str = "file") -> bytes:
    """The bytes of regular file `path`; FileError when it is not one, cannot be read or holds over `limit` bytes."""
    with file_errors(path, f"read the {what}"):
        with open(path, "rb") as stream:
            if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
                raise FileError(f"{path}: not a regular file", errno=errno.EINVAL)
            data = stream.read(limit + 1)
    if len(data) > limit:
        raise FileError(f"{path}: the {what} is larger than {limit:,} bytes", errno=errno.EFBIG)
    return data


def check_destination(path: str | Path) -> Path:
    """`path` if a file can be written there (its folder exists and is writable, it is not a folder)."""
    path = Path(path)
    parent = path.parent
    if path.is_dir():
        raise FileError(f"{path}: cannot write there: it is a directory")
    if not parent.is_dir():
        raise FileError(f"{path}: cannot write there: no directory {parent}")
    if not os.access(parent, os.W_OK) or path.exists() and not os.access(path, os.W_OK):
        raise FileError(f"{path}: cannot write there: permission denied")
    return path


def check_new_directory(path: str | Path) -> Path:
    """`path` if it is a directory, or can be made one (its parent exists)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FileError(f"{path}: not a directory")
    if not path.parent.is_dir():
        raise FileError(f"{path}: cannot make it: no directory {path.parent}")
    return path


def write_file(path: str | Path, data: bytes | str) -> None:
    """Write `data` to `path`; FileError naming it when that fails."""
    with file_errors(path, "write"):
        if isinstance(data, str):
            Path(path).write_text(data)
        else:
            Path(path).write_bytes(data)
