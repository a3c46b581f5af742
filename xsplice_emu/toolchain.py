"""The x86-64 toolchain that builds the firmware and the payloads: gcc, binutils, make.

On an x86-64 host: the native `gcc` and `ld`. Elsewhere, or whenever
CROSS_COMPILE is set, the prefixed cross tools: CROSS_COMPILE defaults to
`x86_64-linux-gnu-` on other hosts (Debian's gcc-x86-64-linux-gnu and
binutils-x86-64-linux-gnu).
"""

from __future__ import annotations

import os
import platform
import shutil
from dataclasses import dataclass

from .errors import ToolchainError

CROSS_PREFIX = "x86_64-linux-gnu-"
NATIVE_MACHINES = ("x86_64", "amd64", "AMD64")
_DEBIAN_PACKAGES = {"gcc": "gcc", "ld": "binutils", "make": "make"}


@dataclass(frozen=True)
class Toolchain:
    """The tool names, `prefix` + gcc and ld (make is never prefixed)."""

    prefix: str = ""

    @property
    def gcc(self) -> str:
        return self.prefix + "gcc"

    @property
    def ld(self) -> str:
        return self.prefix + "ld"

    def require(self, task: str, *tools: str) -> None:
        """Raise ToolchainError naming the Debian package of the first of `tools` not installed."""
        for tool in tools:
            program = tool if tool == "make" else self.prefix + tool
            if shutil.which(program) is None:
                package = _DEBIAN_PACKAGES[tool]
                if self.prefix and tool != "make":
                    package += "-" + self.prefix.rstrip("-").replace("_", "-")
                raise ToolchainError(f"cannot {task}: {program} is not installed (Debian: apt-get install {package})")


def toolchain() -> Toolchain:
    """The toolchain for this host: CROSS_COMPILE's prefix, else native on x86-64 and cross elsewhere."""
    prefix = os.environ.get("CROSS_COMPILE")
    if prefix is None:
        prefix = "" if platform.machine() in NATIVE_MACHINES else CROSS_PREFIX
    return Toolchain(prefix)
