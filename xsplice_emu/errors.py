"""Every error xsplice-emu raises.

    XspliceEmuError
     ├── ConfigError        bad options or input files, before anything runs
     │    ├── TraceFormatError  a trace file that is not valid (names file and line)
     │    └── FileError     a file that cannot be read or written (names file and reason)
     ├── ImageError         a firmware ELF that cannot be loaded
     ├── ToolchainError     gcc / ld missing or failing
     ├── GuestFault         the guest faulted or gave up; the run stopped
     ├── MachineError       the machine was asked for something it cannot do
     ├── WireError          bytes on the `serve` socket that are not a request or reply
     └── LivepatchError     a payload or action refused, with Xen's errno
"""

import errno as _errno
import os as _os

from .text import printable

_ERRNO_NAMES = {**_errno.errorcode, _errno.EOPNOTSUPP: "EOPNOTSUPP"}  # Linux lists it as ENOTSUP
ERRNO_BY_NAME = {name: number for number, name in _errno.errorcode.items()} | {"EOPNOTSUPP": _errno.EOPNOTSUPP}


def errno_name(code: int) -> str:
    """`EINVAL` for 22, ...; "0" for success."""
    return _ERRNO_NAMES.get(code, str(code)) if code else "0"


class XspliceEmuError(Exception):
    """Base of every error raised by xsplice-emu."""


class ConfigError(XspliceEmuError):
    """Bad options or input, caught before anything runs."""


class TraceFormatError(ConfigError):
    """A trace file that does not follow docs/trace-format.md; the message is
    one line, `FILE:LINE: what is wrong`."""


class FileError(ConfigError):
    """A file that cannot be read or written; the message names it and the reason, `errno` the OS's."""

    def __init__(self, message: str, *, errno: int = _errno.EINVAL):
        super().__init__(message)
        self.errno = errno


class ImageError(XspliceEmuError):
    """A firmware ELF that cannot be loaded."""


class ToolchainError(XspliceEmuError):
    """A program of the build toolchain is missing or failed."""


class MachineError(XspliceEmuError):
    """The machine was asked for something it cannot do."""


class WireError(XspliceEmuError):
    """Bytes on the `serve` socket that are not a request or reply of its wire format."""


class GuestFault(XspliceEmuError):
    """The guest faulted or gave up on vCPU `vcpu` at program counter `pc`; the run stopped at that point.
    `xen_log`: the report a real Xen printed about it (its panic's lines, without the "(XEN) " prefix), if any."""

    def __init__(self, message: str, *, vcpu: int, pc: int, xen_log: tuple[str, ...] = ()):
        super().__init__(message)
        self.vcpu = vcpu
        self.pc = pc
        self.xen_log = xen_log


class LivepatchError(XspliceEmuError):
    """A payload or livepatch action refused; `errno` is Xen's (positive) value. The message is one printable
    line: a payload name in it may hold any bytes (`text.printable`).

    `xen_log` is what Xen itself prints for this refusal, without the "(XEN) " prefix (one line per element,
    as printable text); None where Xen prints nothing (or where no Xen text is known)."""

    def __init__(self, errno: int, message: str, *, xen_log: str | tuple[str, ...] | None = None):
        message = printable(message)
        super().__init__(f"{message} ({errno_name(errno)})")
        self.errno = errno
        self.reason = message
        lines = (xen_log,) if isinstance(xen_log, str) else xen_log
        self.xen_log = None if lines is None else tuple(printable(line) for line in lines)

    @property
    def errno_name(self) -> str:
        """`EINVAL`, `EBUSY`, ..."""
        return errno_name(self.errno)

    @property
    def strerror(self) -> str:
        return _os.strerror(self.errno)
