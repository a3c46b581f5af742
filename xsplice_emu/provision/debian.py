"""Debian's own Xen packages at a pinned version, fetched with `apt-get download` and unpacked into the cache
(never installed).

`xen_livepatch()` is Debian's xen-livepatch 4.17 (package xen-utils-4.17). It
needs only libc and libxenctrl.so.4.17, which xsplice-emu provides
(`xenctrl_dir()`), so nothing else is fetched. `xen_syms()` is Debian's
Xen 4.17 hypervisor ELF with its symbols (package xen-hypervisor-4.17-amd64-dbg).
Both come from one build of the table in `debian_builds` (the pinned one
unless told), fetched together by exact version, checked against the table's
sha256s and cached by version.

The system's package lists name only the versions of its last `apt-get
update`, which may be older or newer than a pinned build. When they do not
offer it, apt updates a private copy of the lists from the system's own
sources (a temporary directory beside the cache entry, removed after) and
downloads from those: the system's apt state is never changed.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from ..errors import ConfigError, ToolchainError
from ..image import Image, load_image
from .cache import cached, digest
from .debian_builds import DEBIAN_XEN_BUILDS, PINNED_BUILD, DebianPackage, DebianXenBuild

XEN_LIVEPATCH = Path("usr/lib/xen-4.17/bin/xen-livepatch")
XEN_SYMS = Path("usr/lib/debug/boot/xen-syms-4.17-amd64")

DEBIAN_XEN_SYMS = "debian"
"""What `--xen-syms` and `[machine] xen_syms` take for Debian's pinned xen-syms-4.17-amd64 (fetched on first
use); `debian:VERSION` names another build of the table."""


def xen_livepatch(build: DebianXenBuild = PINNED_BUILD) -> Path:
    """Debian's xen-livepatch binary, fetched once (ToolchainError, one line, when that fails)."""
    return unpacked(build) / XEN_LIVEPATCH


def xen_syms(build: DebianXenBuild = PINNED_BUILD) -> Path:
    """Debian's xen-syms-4.17-amd64, fetched once (ToolchainError, one line, when that fails)."""
    return unpacked(build) / XEN_SYMS


def is_debian_build(value: str | Path) -> bool:
    """Whether `value` names a Debian build (`debian` or `debian:VERSION`) rather than a file."""
    return str(value) == DEBIAN_XEN_SYMS or str(value).startswith(f"{DEBIAN_XEN_SYMS}:")


def debian_build(value: str) -> DebianXenBuild:
    """The build `debian` (the pinned one) or `debian:VERSION` names (ConfigError for anything else, or a version
    not in the table)."""
    if not is_debian_build(value):
        raise ConfigError(f"{value}: not a Debian build: `{DEBIAN_XEN_SYMS}` or `{DEBIAN_XEN_SYMS}:VERSION`")
    version = PINNED_BUILD.version if value == DEBIAN_XEN_SYMS else value.removeprefix(f"{DEBIAN_XEN_SYMS}:")
    for build in DEBIAN_XEN_BUILDS:
        if build.version == version:
            return build
    known = ", ".join(build.version for build in DEBIAN_XEN_BUILDS)
    raise ConfigError(f"{value}: not a Debian Xen build xsplice-emu knows (it knows {known})")


def xen_syms_path(value: str | Path) -> Path:
    """The xen-syms file `value` names: a path, or `debian[:VERSION]` for Debian's."""
    return xen_syms(debian_build(str(value))) if is_debian_build(value) else Path(value)


def load_xen_syms(value: str | Path) -> Image:
    """The real Xen image `value` names: a xen-syms path, or `debian[:VERSION]` for Debian's."""
    return load_image(xen_syms_path(value), what="Xen image")


def unpacked(build: DebianXenBuild) -> Path:
    """The unpacked tree of `build`'s xen-livepatch and xen-syms packages."""
    return unpacked_packages(build.testbed_packages, what=f"Xen {build.version}")


def unpacked_packages(packages: Sequence[DebianPackage], *, what: str) -> Path:
    """One tree with every package of `packages` unpacked, each fetched at its exact version and checked against
    its sha256; cached by those (ToolchainError "cannot fetch Debian's WHAT: ...", one line)."""
    return cached(f"debian-{what.lower().replace(' ', '-')}", digest(*(package.sha256 for package in packages)),
                  lambda work: _fetch(packages, what, work))


def _fetch(packages: Sequence[DebianPackage], what: str, work: Path) -> None:
    downloads = work.parent / f"{work.name}.debs"
    downloads.mkdir()
    try:
        _download(packages, what, downloads)
        for package in packages:
            deb = next(downloads.glob(f"{package.name}_*.deb"))
            found = hashlib.sha256(deb.read_bytes()).hexdigest()
            if found != package.sha256:
                raise _failure(what, f"{deb.name} has sha256 {found}, not the pinned {package.sha256}")
            run_apt(what, ["dpkg-deb", "-x", str(deb), str(work)], downloads, check=True)
    finally:
        shutil.rmtree(downloads, ignore_errors=True)


def _download(packages: Sequence[DebianPackage], what: str, downloads: Path) -> None:
    """Every .deb at exactly its version, by the system's package lists or else by freshly updated private ones."""
    wanted = [f"{package.name}={package.version}" for package in packages]
    system = run_apt(what, ["apt-get", "download", "-q", *wanted], downloads)
    if not system.returncode:
        return
    lists = downloads / "apt-lists"
    (lists / "partial").mkdir(parents=True)
    private = ["-o", f"Dir::State::Lists={lists}", "-o", f"Dir::Cache={downloads / 'apt-cache'}"]
    update = run_apt(what, ["apt-get", "update", "-q", "--error-on=any", *private], downloads)
    download = run_apt(what, ["apt-get", "download", "-q", *private, *wanted], downloads)
    if not download.returncode:
        return
    if update.returncode:
        raise _failure(what, f"apt-get download: {apt_error(system)}; then `apt-get update` of the system's "
                             f"sources into the cache: {apt_error(update)}")
    if "was not found" in download.stderr or "Unable to locate" in download.stderr:
        raise _failure(what, "apt's sources do not offer this version (not the system's package lists, nor a fresh "
                             "`apt-get update` of its sources)")
    raise _failure(what, f"apt-get download: {apt_error(download)}")


def run_apt(what: str, command: list[str], cwd: Path, *, check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run an apt or dpkg `command` in `cwd` (ToolchainError about `what` when it cannot start, or fails and
    `check`)."""
    try:
        result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    except OSError as exc:
        raise _failure(what, f"{command[0]}: {exc.strerror}") from None
    if check and result.returncode:
        raise _failure(what, f"{command[0]}: {apt_error(result)}")
    return result


def apt_error(result: subprocess.CompletedProcess[str]) -> str:
    """apt's first error line (its stderr's first line, else the exit status)."""
    errors = [line.removeprefix("E: ") for line in result.stderr.splitlines() if line.startswith("E:")]
    return (errors or result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[0]


def _failure(what: str, why: str) -> ToolchainError:
    return ToolchainError(f"cannot fetch Debian's {what}: {why}")
