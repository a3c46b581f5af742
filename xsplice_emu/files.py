"""The files the tool reads and writes: the one place where `OSError` becomes a `FileError`.

Inputs are regular files read up to a limit (never a device or a FIFO read
without end); destinations are checked before a long run, so a run's result
is never lost to a missing directory.
"""

from __future__ import annotations

import errno
import os
import stat
import tomllib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from .errors import ConfigError, FileError

TEXT_LIMIT = 16 * 1024 * 1024
"""Largest scenario or other text input read (bytes)."""
READ_CHUNK = 1024 * 1024


@contextmanager
def file_errors(path: str | Path, doing: str) -> Iterator[None]:
    """Turn an `OSError` inside the block into `FileError("PATH: cannot DOING: reason")`."""
    try:
        yield
    except OSError as exc:
        raise FileError(f"{path}: cannot {doing}: {exc.strerror or exc}", errno=exc.errno or errno.EIO) from None


def open_regular(path: str | Path, *, what: str = "file") -> BinaryIO:
    """`path` opened for reading, once it is known to be a regular file: a FIFO or a device is refused at once
    (the open itself never waits for a writer); FileError otherwise, naming the file."""
    with file_errors(path, f"read the {what}"):
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise FileError(f"{path}: not a regular file", errno=errno.EINVAL)
            os.set_blocking(fd, True)
            return os.fdopen(fd, "rb")
        except BaseException:
            os.close(fd)
            raise


def read_file(path: str | Path, *, limit: int, what: str = "file") -> bytes:
    """The bytes of regular file `path`; FileError when it is not one, cannot be read or holds over `limit` bytes.
    Memory follows what the file holds, never `limit` (files that report no size, as in /proc, are read in
    chunks)."""
    with open_regular(path, what=what) as stream, file_errors(path, f"read the {what}"):
        size = os.fstat(stream.fileno()).st_size
        chunks = [stream.read(min(size, limit) + 1)]
        total = len(chunks[0])
        while total <= limit and (chunk := stream.read(min(READ_CHUNK, limit + 1 - total))):
            chunks.append(chunk)
            total += len(chunk)
    if total > limit:
        raise FileError(f"{path}: the {what} is larger than {limit:,} bytes", errno=errno.EFBIG)
    return b"".join(chunks)


def read_toml(path: str | Path, *, what: str) -> dict[str, Any]:
    """The TOML document in regular file `path` (at most TEXT_LIMIT bytes); ConfigError, one line naming the
    file, when it is not valid TOML (nesting too deep for the parser included)."""
    return read_toml_and_text(path, what=what)[0]


def read_toml_and_text(path: str | Path, *, what: str) -> tuple[dict[str, Any], str]:
    """`read_toml`, and the text it was read from (for messages that give a line)."""
    data = read_file(path, limit=TEXT_LIMIT, what=what)
    try:
        text = data.decode()
        return tomllib.loads(text), text
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid TOML: nested too deeply") from None


def check_destination(path: str | Path, *, inputs: Iterable[str | Path] = ()) -> Path:
    """`path` if a file can be written there (its folder exists and is writable, it is not a folder, nor one of
    the command's `inputs`)."""
    path = Path(path)
    parent = path.parent
    if path.is_dir():
        raise FileError(f"{path}: cannot write there: it is a directory")
    if path.is_fifo():
        raise FileError(f"{path}: cannot write there: it is a FIFO (writing would wait for a reader)")
    for source in inputs:
        if path.exists() and Path(source).exists() and os.path.samefile(path, source):
            raise FileError(f"{path}: cannot write there: it is the input {source}")
    if not parent.is_dir():
        raise FileError(f"{path}: cannot write there: no directory {parent}")
    if not os.access(parent, os.W_OK) or path.exists() and not os.access(path, os.W_OK):
        raise FileError(f"{path}: cannot write there: permission denied")
    return path


def check_new_directory(path: str | Path, *, parents: bool = False) -> Path:
    """`path` if it is a directory, or can be made one (its parent exists, or with `parents` can be made too)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FileError(f"{path}: not a directory")
    if parents:
        existing = next(folder for folder in path.absolute().parents if folder.exists())
        if not existing.is_dir():
            raise FileError(f"{path}: cannot make it: {existing} is not a directory")
    elif not path.parent.is_dir():
        raise FileError(f"{path}: cannot make it: no directory {path.parent}")
    return path


def write_file(path: str | Path, data: bytes | str) -> None:
    """Write `data` to `path`; FileError naming it when that fails."""
    with file_errors(path, "write"):
        if isinstance(data, str):
            Path(path).write_text(data)
        else:
            Path(path).write_bytes(data)
