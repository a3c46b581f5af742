"""Spec data of the machine: the call-slot layout it shares with the firmware
(firmware/ABI.md; a test checks it against firmware/include/platform.h) and
the units of virtual time."""

from __future__ import annotations

from ..layout import Layout

CALL_SLOT = Layout("call_slot", (("fn", "Q"), ("arg0", "Q"), ("arg1", "Q"), ("result", "Q"),
                                 ("state", "I"), ("pad", "I"), ("seq", "Q")))
"""`struct call_slot`: the host asks a vCPU to run `fn(arg0, arg1)`; `state` is CALL_SLOT_*."""

PAGE_SIZE = 4096
"""Protection granule of guest memory."""

PS_PER_NS = 1000
PS_PER_SECOND = 10**12
NEVER = 1 << 126
"""A virtual time later than any run reaches."""
