"""The built-in firmware: built from its sources into the cache on first use."""

from __future__ import annotations

import subprocess
from pathlib import Path

from ..arch import DEFAULT_ARCH, Architecture
from ..errors import ToolchainError
from .cache import cached, digest
from .sources import sources_dir
from .toolchain import Toolchain, toolchain

ELF_NAME = "xen-syms"


def builtin_firmware(arch: Architecture = DEFAULT_ARCH) -> Path:
    """Path of the built-in firmware ELF of `arch`, built with make and gcc into the cache when its sources changed."""
    source = sources_dir() / arch.firmware_tree
    tools = toolchain(arch)
    entry = cached("firmware", digest(source, tools.prefix), lambda work: _build(source, work, tools))
    return entry / ELF_NAME


def _build(source: Path, work: Path, tools: Toolchain) -> None:
    tools.require("build the firmware", "make", "gcc", "ld")
    result = subprocess.run(["make", "-s", "-C", str(source), f"BUILD={work}", f"CC={tools.gcc}"],
                            capture_output=True, text=True)
    if result.returncode or not (work / ELF_NAME).is_file():
        lines = (result.stderr or result.stdout).strip().splitlines() or [f"exit status {result.returncode}"]
        raise ToolchainError(f"building the firmware from {source} failed: {lines[0]}")
