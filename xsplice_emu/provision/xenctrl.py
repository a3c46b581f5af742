"""libxenctrl.so.4.17 for Xen's own tools: built from xenctrl/ into the cache on first use."""

from __future__ import annotations

import subprocess
from pathlib import Path

from ..errors import ToolchainError
from .cache import cached, digest
from .sources import sources_dir
from .toolchain import Toolchain

LIBRARY = "libxenctrl.so.4.17"


def xenctrl_dir() -> Path:
    """The directory that holds the built libxenctrl.so.4.17 (for LD_LIBRARY_PATH)."""
    source = sources_dir() / "xenctrl"
    return cached("xenctrl", digest(source), lambda work: _build(source, work))


def _build(source: Path, work: Path) -> None:
    Toolchain().require(f"build {LIBRARY}", "make", "gcc")  # the host's own: it runs beside Xen's tools
    result = subprocess.run(["make", "-s", "-C", str(source), f"BUILD={work}"], capture_output=True, text=True)
    if result.returncode or not (work / LIBRARY).is_file():
        lines = (result.stderr or result.stdout).strip().splitlines() or [f"exit status {result.returncode}"]
        raise ToolchainError(f"building {LIBRARY} from {source} failed: {lines[0]}")
