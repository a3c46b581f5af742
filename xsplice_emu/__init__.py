"""xsplice-emu: Xen's xSplice live patching on real x86-64 code, many emulated vCPUs, deterministic."""

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
from .machine import ConsoleLine, Machine, MachineConfig
from .provision.firmware import builtin_firmware
from .tracing.trace import Event, Trace

__all__ = [
    "ConfigError",
    "ConsoleLine",
    "Event",
    "GuestFault",
    "Image",
    "ImageError",
    "LivepatchError",
    "Machine",
    "MachineConfig",
    "MachineError",
    "Symbol",
    "ToolchainError",
    "Trace",
    "TraceFormatError",
    "XspliceEmuError",
    "builtin_firmware",
    "load_image",
]
