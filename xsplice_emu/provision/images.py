"""The hypervisor images the build cache already holds: built firmware, Xen built from source, Debian's xen-syms."""

from __future__ import annotations

from pathlib import Path

from .cache import built
from .debian import XEN_SYMS as DEBIAN_XEN_SYMS
from .firmware import ELF_NAME
from .xen_build import XEN_SYMS


def cached_images() -> list[Path]:
    """Every image in the cache, the firmware first (nothing is built or fetched)."""
    return built("firmware", ELF_NAME) + built("xen-build", XEN_SYMS) + built("debian-xen", DEBIAN_XEN_SYMS)
