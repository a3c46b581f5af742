"""The hypercall bridge: XEN_SYSCTL_LIVEPATCH_op as dom0 makes it, run by Xen's real `livepatch_op` on a vCPU.

The sysctl and everything it points to (names, the payload ELF, the list arrays) are written into dom0's low
memory, which Xen's `copy_from_guest` reads and `copy_to_guest` writes; `livepatch_op` runs on a vCPU as dom0's
vCPU there (`XenMachine.call`), the other vCPUs running meanwhile. Layouts: xen/include/public/sysctl.h (4.17).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .layout import DOM0_BUFFERS, DOM0_PAYLOAD

if TYPE_CHECKING:
    from .machine import XenMachine

COMMANDS = {"upload": 0, "get": 1, "list": 2, "action": 3}
"""XEN_SYSCTL_LIVEPATCH_*."""
ACTION_NODEPS = 1 << 0
STATE_CHECKED, STATE_APPLIED = 1, 2

OP = DOM0_BUFFERS
"""struct xen_sysctl_livepatch_op: cmd, pad, then the union."""
NAME = DOM0_BUFFERS + 0x1000
LIST_STATUS = DOM0_BUFFERS + 0x2000
LIST_LENGTHS = DOM0_BUFFERS + 0x3000
LIST_METADATA_LENGTHS = DOM0_BUFFERS + 0x4000
LIST_NAMES = DOM0_BUFFERS + 0x10000
LIST_METADATA = DOM0_BUFFERS + 0x30000
LIST_PAGE = 256
"""Payloads asked for per LIST call (names up to 128 bytes each fit LIST_NAMES..LIST_METADATA)."""
OP_HEADER = struct.Struct("<II")
NAME_FIELD = struct.Struct("<QH6x")
UPLOAD_BODY = struct.Struct("<QQ")
STATUS = struct.Struct("<Ii")
ACTION_BODY = struct.Struct("<IIII")
LIST_BODY = struct.Struct("<IIIIIIQQQQQ")


@dataclass(frozen=True)
class Status:
    """A payload's `struct xen_livepatch_status`, with its name."""

    name: bytes
    state: int
    rc: int
    metadata: bytes = b""


class Bridge:
    """Makes livepatch sysctls on one xen-engine machine, each on the vCPU dom0 runs on then (`dom0_vcpu`)."""

    def __init__(self, machine: XenMachine):
        self.machine = machine

    def _op(self, command: str, body: bytes, *, vcpu: int | None = None) -> int:
        """The sysctl `command` with `body`, made on `vcpu` (default: where dom0 runs now); what it returned."""
        machine = self.machine
        requester = machine.dom0_vcpu() if vcpu is None else vcpu
        machine.memory.write(OP, OP_HEADER.pack(COMMANDS[command], 0) + body + bytes(64 - len(body)))
        return machine.arch.int_result(machine.call(requester, "livepatch_op", OP, as_dom0=True))

    def _name(self, name: bytes) -> bytes:
        data = name + b"\0"
        self.machine.memory.write(NAME, data)
        return NAME_FIELD.pack(NAME, len(data))

    def upload(self, name: bytes, elf: bytes, *, size: int) -> int:
        """UPLOAD of `elf`, said to be `size` bytes (more than it holds: Xen refuses a size first)."""
        self.machine.memory.write(DOM0_PAYLOAD, elf)
        return self._op("upload", self._name(name) + UPLOAD_BODY.pack(size, DOM0_PAYLOAD))

    def get(self, name: bytes) -> tuple[int, int, int]:
        """(rc, state, payload rc)."""
        rc = self._op("get", self._name(name) + STATUS.pack(0, 0))
        state, payload_rc = STATUS.unpack(self.machine.memory.read(OP + OP_HEADER.size + NAME_FIELD.size,
                                                                   STATUS.size))
        return rc, state, payload_rc

    def action(self, name: bytes, command: int, *, timeout_ns: int, nodeps: bool, vcpu: int) -> int:
        """ACTION `command` on `name`, made on `vcpu` (where Xen then queues the work)."""
        body = ACTION_BODY.pack(command, timeout_ns, ACTION_NODEPS if nodeps else 0, 0)
        return self._op("action", self._name(name) + body, vcpu=vcpu)

    def list(self) -> tuple[int, list[Status]]:
        """(rc, every payload's status) as xen-livepatch gathers them, page by page."""
        memory, found = self.machine.memory, list[Status]()
        while True:
            body = LIST_BODY.pack(0, len(found), LIST_PAGE, 0, 0, 0, LIST_STATUS, LIST_NAMES, LIST_LENGTHS,
                                  LIST_METADATA, LIST_METADATA_LENGTHS)
            rc = self._op("list", body)
            if rc < 0:
                return rc, found
            remaining = LIST_BODY.unpack(memory.read(OP + OP_HEADER.size, LIST_BODY.size))[2]
            offset = metadata_offset = 0
            for index in range(rc):
                length = memory.read_u32(LIST_LENGTHS + 4 * index)
                metadata_length = memory.read_u32(LIST_METADATA_LENGTHS + 4 * index)
                state, payload_rc = STATUS.unpack(memory.read(LIST_STATUS + STATUS.size * index, STATUS.size))
                found.append(Status(memory.read(LIST_NAMES + offset, length).rstrip(b"\0"), state, payload_rc,
                                    memory.read(LIST_METADATA + metadata_offset, metadata_length)))
                offset += length
                metadata_offset += metadata_length
            if not remaining or not rc:
                return 0, found
