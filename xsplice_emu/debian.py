"""Debian's own Xen packages, fetched with `apt-get download` and unpacked into the cache (never installed).

`xen_livepatch()` is Debian's xen-livepatch 4.17 (package xen-utils-4.17). It
needs only libc and libxenctrl.so.4.17, which xsplice-emu provides
(`xenctrl_dir()`), so nothing else is fetched. `xen_syms()` is Debian's
Xen 4.17 hypervisor ELF with its symbols (package xen-hypervisor-4.17-amd64-dbg).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from .cache import cached, digest
from .errors import ToolchainError
from .image import Image, load_image

XEN_UTILS = "xen-utils-4.17"
XEN_LIVEPATCH = Path("usr/lib/xen-4.17/bin/xen-livepatch")
XEN_HYPERVISOR_DBG = "xen-hypervisor-4.17-amd64-dbg"
XEN_SYMS = Path("usr/lib/debug/boot/xen-syms-4.17-amd64")


def xen_livepatch() -> Path:
    """Debian's xen-livepatch binary, fetched once (ToolchainError, one line, when that fails)."""
    return package(XEN_UTILS) / XEN_LIVEPATCH


def xen_syms() -> Path:
    """Debian's xen-syms-4.17-amd64, fetched once (ToolchainError, one line, when that fails)."""
    return package(XEN_HYPERVISOR_DBG) / XEN_SYMS


DEBIAN_XEN_SYMS = "debian"
"""What `--xen-syms` and `[machine] xen_syms` take for Debian's xen-syms-4.17-amd64 (fetched on first use)."""


def xen_syms_path(value: str | Path) -> Path:
    """The xen-syms file `value` names: a path, or DEBIAN_XEN_SYMS for Debian's."""
    return xen_syms() if str(value) == DEBIAN_XEN_SYMS else Path(value)


def load_xen_syms(value: str | Path) -> Image:
    """The real Xen image `value` names: a xen-syms path, or DEBIAN_XEN_SYMS for Debian's."""
    return load_image(xen_syms_path(value), what="Xen image")


def package(name: str) -> Path:
    """The unpacked tree of Debian package `name`."""
    return cached(f"debian-{name}", digest(name), lambda work: _fetch(name, work))


def _fetch(name: str, work: Path) -> None:
    download = work.parent / f"{work.name}.deb"
    download.mkdir()
    try:
        _run(name, ["apt-get", "download", "-q", name], download)
        debs = sorted(download.glob("*.deb"))
        if not debs:
            raise ToolchainError(f"cannot fetch Debian's {name}: apt-get download left no .deb")
        _run(name, ["dpkg-deb", "-x", str(debs[0]), str(work)], download)
    finally:
        shutil.rmtree(download, ignore_errors=True)


def _run(name: str, command: list[str], cwd: Path) -> None:
    try:
        result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    except OSError as exc:
        raise ToolchainError(f"cannot fetch Debian's {name}: {command[0]}: {exc.strerror}") from None
    if result.returncode:
        errors = [line for line in result.stderr.splitlines() if line.startswith("E:")]
        why = (errors or result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[0]
        raise ToolchainError(f"cannot fetch Debian's {name}: {command[0]}: {why}")
