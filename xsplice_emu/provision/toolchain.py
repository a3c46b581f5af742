"""The toolchain that builds the firmware and the payloads of a guest architecture: gcc, binutils, make.

On a host of the guest's own architecture: the native `gcc` and `ld`.
Elsewhere, or whenever CROSS_COMPILE is set, the prefixed cross tools:
CROSS_COMPILE defaults to the architecture's GNU triplet and a dash
(`x86_64-linux-gnu-`: Debian's gcc-x86-64-linux-gnu and binutils-x86-64-linux-gnu).
"""

from __future__ import annotations

import os
import platform
import shutil
from dataclasses import dataclass

from ..arch import DEFAULT_ARCH, Architecture
from ..errors import ToolchainError

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


def toolchain(arch: Architecture = DEFAULT_ARCH) -> Toolchain:
    """The toolchain for `arch` on this host: CROSS_COMPILE's prefix, else native or the arch's cross tools."""
    prefix = os.environ.get("CROSS_COMPILE")
    if prefix is None:
        prefix = "" if platform.machine() in arch.host_machines else arch.gnu_triplet + "-"
    return Toolchain(prefix)
