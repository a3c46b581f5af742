"""The livepatch payload ABI: record layouts, section names and limits (spec data only)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ..layout import Layout

PAGE_SIZE = 4096

PAYLOAD_MAX_SIZE = 2 * 1024 * 1024
"""Largest payload Xen accepts at upload (LIVEPATCH_MAX_SIZE)."""

DEFAULT_TIMEOUT_NS = 30_000_000
"""The action timeout when the request gives none (Xen's default: 30 ms)."""

NAME_MAX = 128
"""XEN_LIVEPATCH_NAME_SIZE: room for a payload or function name, NUL included."""

SECTIONS_MAX = 1024
"""e_shnum must stay below this (Xen's arbitrary bound)."""

NOP_MAX = 31
"""Most bytes a NOP patch may cover: the size of the record's opaque save area."""

EXPECT_MAX = 31
"""Most bytes a v2 expectation holds (`data[31]`)."""

# Section names.
BUILD_ID_NOTE = ".note.gnu.build-id"
DEPENDS = ".livepatch.depends"
XEN_DEPENDS = ".livepatch.xen_depends"

NOTE_SECTIONS = (DEPENDS, XEN_DEPENDS, BUILD_ID_NOTE)
"""Mandatory in every payload, in the order Xen checks them."""

NT_GNU_BUILD_ID = 3
NOTE_NAME = b"GNU\0"
NOTE_HEADER = struct.Struct("<III")
"""Elf64_Nhdr: n_namesz, n_descsz, n_type."""


@dataclass(frozen=True)
class FuncLayout:
    """One ABI version of the function-record array: its section and record shape."""

    section: str
    version: int
    record: struct.Struct
    has_expectation: bool


FUNC_V1 = FuncLayout(
    section=".xsplice.funcs",
    version=1,
    # name, new_addr, old_addr, new_size, old_size, version, opaque[31]
    record=struct.Struct("<QQQIIB31x"),
    has_expectation=False,
)

FUNC_V2 = FuncLayout(
    section=".livepatch.funcs",
    version=2,
    # ... version, opaque[31] + applied + pad[7], expect {enabled:1 len:5 rsv:2}, expect data[31]
    record=struct.Struct("<QQQIIB39xB31s"),
    has_expectation=True,
)

FUNC_LAYOUTS = (FUNC_V1, FUNC_V2)

# Expectation flag byte (GCC allocates x86 bitfields from bit 0).
EXPECT_ENABLED = 0x01
EXPECT_LEN_SHIFT = 1
EXPECT_LEN_MASK = 0x1F
EXPECT_RSV_MASK = 0xC0

HOOK_POINTER = struct.Struct("<Q")

HOOK_SECTIONS = {
    "load": ".livepatch.hooks.load",
    "unload": ".livepatch.hooks.unload",
    "preapply": ".livepatch.hooks.preapply",
    "apply": ".livepatch.hooks.apply",
    "postapply": ".livepatch.hooks.postapply",
    "prerevert": ".livepatch.hooks.prerevert",
    "revert": ".livepatch.hooks.revert",
    "postrevert": ".livepatch.hooks.postrevert",
}
"""Hook kind -> section. Each is an array of 8-byte function pointers."""

MULTI_HOOKS = frozenset({"load", "unload"})
"""Hooks that may hold several pointers; every other hook section holds exactly one."""

# The payload's hypervisor-side state in guest memory, as a hook sees it
# (firmware/include/xen/livepatch.h; a test compares the offsets).
FSTATE = Layout("livepatch_fstate", (("patch_offset", "I"), ("applied", "I"), ("insn_buffer", "31s"), ("pad", "x")))
"""Xen's struct livepatch_fstate: one per function record."""
LIVEPATCH_FUNC_NOT_APPLIED = 0
LIVEPATCH_FUNC_APPLIED = 1

PAYLOAD_DESCRIPTOR = Layout("payload", (
    ("name", "Q"), ("funcs", "Q"), ("fstate", "Q"), ("nfuncs", "I"), ("n_load_funcs", "I"),
    ("n_unload_funcs", "I"), ("tail", "I"), ("load_funcs", "Q"), ("unload_funcs", "Q"), ("reserved", "8s")))
"""livepatch_payload_t as far as a hook reads it; `tail` is what an *_payload_tail call asked for."""
TAIL_NONE = 0
TAIL_APPLIED = 1
TAIL_REVERTED = 2
