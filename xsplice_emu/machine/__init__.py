"""The emulated machine: guest memory, vCPUs, devices, scheduler and virtual time.

It knows nothing of livepatching: the livepatch package drives it through a
small surface (memory, `call`, `send_interrupt`, `park`/`release`,
`invalidate_code`, `answer_port`, `subscribe`, alarms).
"""

from .console import Console, ConsoleLine
from .core import Machine, MachineConfig
from .memory import GuestMemory
from .scheduler import Alarm
from .spec import PS_PER_NS, PS_PER_SECOND
from .vcpu import Vcpu, VcpuState

__all__ = [
    "PS_PER_NS",
    "PS_PER_SECOND",
    "Alarm",
    "Console",
    "ConsoleLine",
    "GuestMemory",
    "Machine",
    "MachineConfig",
    "Vcpu",
    "VcpuState",
]
