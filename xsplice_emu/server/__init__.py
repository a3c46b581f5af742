"""`xsplice-emu serve`: Xen's livepatch sysctl for a live machine, on a Unix socket."""

from .client import Client
from .server import SysctlServer
from .wire import Entry, Op, Reply, Request

__all__ = ["Client", "Entry", "Op", "Reply", "Request", "SysctlServer"]
