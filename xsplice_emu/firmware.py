"""The built-in firmware: where it is, and building it when it is missing."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from .errors import ToolchainError

FIRMWARE_DIR = Path(__file__).resolve().parent.parent / "firmware"
BUILTIN_FIRMWARE = FIRMWARE_DIR / "build" / "xen-syms"


def builtin_firmware() -> Path:
    """Path of the built-in firmware ELF, built with make/gcc if needed."""
    if not BUILTIN_FIRMWARE.exists():
        for program in ("make", "gcc", "ld"):
            if shutil.which(program) is None:
                raise ToolchainError(f"cannot build the built-in firmware: {program} is not installed")
        result = subprocess.run(["make", "-s", "-C", str(FIRMWARE_DIR)], capture_output=True, text=True)
        if result.returncode or not BUILTIN_FIRMWARE.exists():
            raise ToolchainError(f"building {FIRMWARE_DIR} failed: {result.stderr.strip() or result.stdout.strip()}")
    return BUILTIN_FIRMWARE
