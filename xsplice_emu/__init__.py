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
from .firmware import builtin_firmware
from .image import Image, Symbol, load_image
from .machine import ConsoleLine, Machine, MachineConfig
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
