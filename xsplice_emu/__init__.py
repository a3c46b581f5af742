"""xsplice-emu: Xen's xSplice live patching on real x86-64 code, many emulated vCPUs, deterministic."""

from .engines.controller import Livepatch
from .errors import (
    ConfigError,
    GuestFault,
    ImageError,
    LivepatchError,
    MachineError,
    ToolchainError,
    TraceFormatError,
    XspliceEmuError,
)
from .image import Image, Symbol, load_image
from .livepatch import Action, ActionResult, PayloadState
from .machine import ConsoleLine, Machine, MachineConfig
from .provision.firmware import builtin_firmware
from .tracing.trace import Event, Trace

__all__ = [
    "Action",
    "ActionResult",
    "ConfigError",
    "ConsoleLine",
    "Event",
    "GuestFault",
    "Image",
    "ImageError",
    "Livepatch",
    "LivepatchError",
    "Machine",
    "MachineConfig",
    "MachineError",
    "PayloadState",
    "Symbol",
    "ToolchainError",
    "Trace",
    "TraceFormatError",
    "XspliceEmuError",
    "builtin_firmware",
    "load_image",
]
