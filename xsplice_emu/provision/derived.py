"""What follows from an image as built (the instruction sites the xen engine hooks, its spin loops, its NMI path),
kept in the build cache across processes: `derived(image, compute)` is `image.derived(compute)` with the cache
behind it.

Each takes a disassembly of the whole image: Xen's cost about half a second in every process that ran it. An entry
is keyed by the image's bytes, the analysis's name and the code it could depend on (the package's Python sources,
capstone's version, Python's), so a change to any of them makes a new entry. Where the cache cannot be read or
written the result is computed as before.
"""

from __future__ import annotations

import hashlib
import pickle
import sys
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import capstone

from ..errors import FileError
from ..image import Image
from .cache import cached, entry_path
from .sources import PACKAGE

T = TypeVar("T")
NAME = "derived"
VALUE = "value.pickle"


def derived(image: Image, compute: Callable[[Image], T]) -> T:
    """`compute(image)`, once per image in this process, and from the cache when an earlier process computed it for
    the same bytes and code."""
    return image.derived(compute, keep=_kept)


def _kept(image: Image, compute: Callable[[Image], T]) -> T:
    if not image.sha256:  # not read from a file
        return compute(image)
    analysis = f"{compute.__module__}.{compute.__qualname__}".encode()
    key = hashlib.sha256(b"\0".join((image.sha256, analysis, _code_version()))).hexdigest()[:16]
    try:
        return pickle.loads((entry_path(NAME, key) / VALUE).read_bytes())
    except Exception:  # missing, unreadable or damaged: computed again (a damaged pickle raises anything)
        pass
    value = compute(image)
    try:
        cached(NAME, key, lambda work: _store(work, value))
    except (OSError, FileError):  # a read-only or full cache keeps nothing
        pass
    return value


def _store(work: Path, value: Any) -> None:
    (work / VALUE).write_bytes(pickle.dumps(value))


@cache
def _code_version() -> bytes:
    """A hash of what an analysis's result may depend on besides the image."""
    sha = hashlib.sha256(f"{capstone.__version__} {sys.version_info[:2]}".encode())
    for path in sorted(PACKAGE.rglob("*.py")):
        sha.update(path.relative_to(PACKAGE).as_posix().encode() + b"\0" + path.read_bytes())
    return sha.digest()
