"""Which pages of some host mappings were written since last asked, from the kernel (Linux 6.7 and later).

A userfaultfd registered in write-protect mode with asynchronous faults
(UFFD_FEATURE_WP_ASYNC) lets every store go ahead and only marks the page
written; the PAGEMAP_SCAN ioctl on /proc/self/pagemap then lists the written
pages and write-protects them again in one call (about 40 us for 64 MiB, and
a minor fault per page on its first store after that). Stores by Unicorn's
translated code and by the host are seen alike. Unprivileged processes get a
userfaultfd with UFFD_USER_MODE_ONLY, which is all this needs: the stores
are all made in user mode.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import struct

from ..errors import MachineError

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
SYS_USERFAULTFD = 323  # x86-64
UFFD_USER_MODE_ONLY = 1
UFFD_API = 0xAA
UFFD_FEATURE_WP_UNPOPULATED = 1 << 13
UFFD_FEATURE_WP_ASYNC = 1 << 15
UFFDIO_API = 0xC018AA3F
UFFDIO_REGISTER = 0xC020AA00
UFFDIO_REGISTER_MODE_WP = 1 << 1
UFFDIO_WRITEPROTECT = 0xC018AA06
UFFDIO_WRITEPROTECT_MODE_WP = 1 << 0
PAGEMAP_SCAN = 0xC0606610
PM_SCAN_WP_MATCHING = 1 << 0
PM_SCAN_CHECK_WPASYNC = 1 << 1
PAGE_IS_WRITTEN = 1 << 1
SCAN_REGIONS = 512
"""Runs of written pages one PAGEMAP_SCAN call returns at most (it is called again for the rest)."""


class WrittenPages:
    """The pages of the registered host ranges written since `track` or the last `take`."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self._fd = libc.syscall(SYS_USERFAULTFD, os.O_CLOEXEC | os.O_NONBLOCK | UFFD_USER_MODE_ONLY)
        if self._fd < 0:
            raise MachineError(f"userfaultfd: {os.strerror(ctypes.get_errno())}")
        self._pagemap = -1
        try:
            api = bytearray(struct.pack("QQQ", UFFD_API, UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED, 0))
            fcntl.ioctl(self._fd, UFFDIO_API, api)
            self._pagemap = os.open("/proc/self/pagemap", os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            self.close()
            raise MachineError(f"userfaultfd write-protect tracking: {exc.strerror}") from None
        self._ranges: list[tuple[int, int]] = []
        self._regions = (ctypes.c_uint64 * (3 * SCAN_REGIONS))()

    def track(self, address: int, size: int) -> None:
        """Watch the page-aligned host range `[address, address + size)` from now (all of it counts as clean)."""
        try:
            fcntl.ioctl(self._fd, UFFDIO_REGISTER, bytearray(struct.pack("QQQQ", address, size,
                                                                         UFFDIO_REGISTER_MODE_WP, 0)))
            fcntl.ioctl(self._fd, UFFDIO_WRITEPROTECT, bytearray(struct.pack("QQQ", address, size,
                                                                             UFFDIO_WRITEPROTECT_MODE_WP)))
        except OSError as exc:
            raise MachineError(f"userfaultfd write-protect of {size:#x} bytes at {address:#x}: "
                               f"{exc.strerror}") from None
        self._ranges.append((address, address + size))

    def take(self) -> list[tuple[int, int]]:
        """The host ranges `[begin, end)` written since the last call (runs of whole pages), clean again."""
        written: list[tuple[int, int]] = []
        regions = self._regions
        for begin, end in self._ranges:
            while begin < end:
                arg = struct.pack("12Q", 96, PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC, begin, end, 0,
                                  ctypes.addressof(regions), SCAN_REGIONS, 0, 0, PAGE_IS_WRITTEN, 0, PAGE_IS_WRITTEN)
                buffer = bytearray(arg)
                try:
                    count = fcntl.ioctl(self._pagemap, PAGEMAP_SCAN, buffer)
                except OSError as exc:
                    raise MachineError(f"PAGEMAP_SCAN: {exc.strerror}") from None
                written += [(regions[3 * i], regions[3 * i + 1]) for i in range(count)]
                begin = struct.unpack_from("Q", buffer, 32)[0]  # walk_end: where the scan stopped
        return written

    def close(self) -> None:
        for fd in (self._fd, self._pagemap):
            if fd >= 0:
                os.close(fd)
        self._fd = self._pagemap = -1
