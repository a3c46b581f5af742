"""Payload names, as Xen has them: bytes.

Xen takes a name of 1..XEN_LIVEPATCH_NAME_SIZE (128) bytes including its
terminating NUL, any bytes but NUL before it (verify_name). The testbed
carries a name as a str: its bytes decoded as UTF-8, each byte that is not
UTF-8 kept as a surrogate escape (what Python does with argv, and what the
`serve` wire does), so any bytes survive exactly; limits count the bytes.
"""

from __future__ import annotations

import errno

from ..errors import LivepatchError
from ..text import printable
from .abi import NAME_MAX

ENCODING, ERRORS = "utf-8", "surrogateescape"


def name_bytes(name: str) -> bytes:
    """The bytes `name` stands for; EINVAL when a character stands for none (a lone surrogate not from bytes)."""
    try:
        return name.encode(ENCODING, ERRORS)
    except UnicodeEncodeError as exc:
        raise LivepatchError(errno.EINVAL, f"payload name {printable(name)}: character {exc.start} is not a byte "
                                           "(a lone surrogate)") from None


def checked_name(name: str) -> str:
    """`name` checked as Xen's verify_name checks it (EINVAL), in the one form its bytes decode to."""
    data = name_bytes(name)
    if not 0 < len(data) < NAME_MAX:
        raise LivepatchError(errno.EINVAL, f"payload name of {len(data)} bytes: it must be 1..{NAME_MAX - 1} "
                                           f"(XEN_LIVEPATCH_NAME_SIZE {NAME_MAX} with its NUL)")
    if b"\0" in data:
        raise LivepatchError(errno.EINVAL, f"payload name of {len(data)} bytes has a NUL at byte {data.index(0)}")
    return data.decode(ENCODING, ERRORS)
