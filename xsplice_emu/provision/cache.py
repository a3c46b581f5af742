"""The per-user build cache: `$XDG_CACHE_HOME/xsplice-emu` (else `~/.cache/xsplice-emu`).

An entry is a directory named by what it holds and a hash of what it was
built from, so changed inputs build a new entry. Each build fills a
temporary directory beside the entry and renames it into place: concurrent
first uses each build, the first rename wins and the others are dropped.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from ..files import file_errors
from .sources import source_files


def cache_dir() -> Path:
    """Where xsplice-emu keeps what it builds."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "xsplice-emu"


def digest(*inputs: Path | str) -> str:
    """16 hex digits of SHA-256 over strings, files and directory trees (names and contents)."""
    sha = hashlib.sha256()
    for item in inputs:
        if isinstance(item, str):
            sha.update(b"s" + item.encode() + b"\0")
            continue
        for file in source_files(item) if item.is_dir() else [item]:
            name = file.relative_to(item).as_posix() if item.is_dir() else file.name
            sha.update(b"f" + name.encode() + b"\0" + hashlib.sha256(file.read_bytes()).digest())
    return sha.hexdigest()[:16]


def entry_path(name: str, key: str) -> Path:
    """Where the entry `NAME-KEY` is (or would be)."""
    return cache_dir() / f"{name}-{key}"


def cached(name: str, key: str, build: Callable[[Path], None]) -> Path:
    """The entry `NAME-KEY`, made by `build(directory)` when missing; FileError when the cache's folder cannot be
    made or written."""
    entry = entry_path(name, key)
    if entry.is_dir():
        return entry
    with file_errors(entry.parent, "make the build cache there ($XDG_CACHE_HOME/xsplice-emu, else "
                                   "~/.cache/xsplice-emu)"):
        entry.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=entry.parent))
    try:
        build(work)
        try:
            os.rename(work, entry)
        except OSError:
            if not entry.is_dir():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return entry


def built(name: str, file: Path | str) -> list[Path]:
    """`file` in every entry `NAME-*` the cache already holds, newest first (nothing is built)."""
    found = [entry / file for entry in cache_dir().glob(f"{name}-*") if (entry / file).is_file()]
    return sorted(found, key=lambda path: path.stat().st_mtime, reverse=True)
