"""What the reference boots, all from Debian's packages, and QEMU that boots it.

Xen's boot image, dom0's kernel and modules, busybox, Debian's xen-livepatch
and every library it loads are downloaded and unpacked into the cache
(`debian.unpacked_packages`: each at the version and sha256 of
`debian_builds`), never installed. QEMU is the one thing installed, and only
by `install_qemu` (`xsplice-emu reference --install`, `make reference-install`).
The boot image must be the build of the xen-syms the testbed patches (same
build-id): the payloads depend on it.
"""

from __future__ import annotations

import gzip
import io
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile

from ..errors import ToolchainError
from ..files import read_file
from ..image import elf_build_id
from ..provision.cache import cached, digest
from ..provision.debian import XEN_LIVEPATCH, unpacked_packages
from ..provision.debian_builds import (
    DOM0_KERNEL,
    DOM0_PACKAGES,
    PINNED_BUILD,
    XEN_HYPERVISOR,
    XEN_HYPERVISOR_DBG,
    XEN_LIBRARIES,
    XEN_UTILS,
    DebianPackage,
    DebianXenBuild,
)

XEN_BOOT_IMAGE = Path("boot/xen-4.17-amd64.gz")
DYNAMIC_LOADER = "ld-linux-x86-64.so.2"
DOM0_MODULES = ("xen-privcmd", "xen-evtchn", "xenfs")
"""dom0's kernel modules, in the order they are loaded: /dev/xen/privcmd and /proc/xen for the tools."""
QEMU_PACKAGE = "qemu-system-x86"
QEMU = "qemu-system-x86_64"
IMAGE_LIMIT = 64 << 20


@dataclass(frozen=True)
class ReferenceFiles:
    """Everything the reference machine boots and runs, each file in the cache."""

    xen: Path                        # Xen's multiboot ELF (QEMU's -kernel)
    kernel: Path                     # dom0's bzImage
    modules: tuple[Path, ...]        # DOM0_MODULES' .ko files, in order
    busybox: Path
    xen_livepatch: Path
    libraries: tuple[Path, ...]      # what xen-livepatch loads, the dynamic loader among them
    packages: tuple[str, ...]        # "PACKAGE VERSION" of each package used


def reference_packages(build: DebianXenBuild) -> tuple[DebianPackage, ...]:
    """Every package the reference boots with `build`: the build's own (boot image, xen-syms, xen-livepatch and
    its Xen libraries, all of one version) and dom0's (kernel, busybox, the other libraries)."""
    xen = (XEN_HYPERVISOR, XEN_HYPERVISOR_DBG, XEN_UTILS, *XEN_LIBRARIES)
    return (*(build.package(name) for name in xen), *DOM0_PACKAGES)


def reference_files(build: DebianXenBuild = PINNED_BUILD) -> ReferenceFiles:
    """Fetch (once, each package at its pinned version and sha256) and find everything the reference boots with
    `build`; ToolchainError, one line, when something is missing."""
    packages = reference_packages(build)
    tree = unpacked_packages(packages, what=f"reference for Xen {build.version}")
    release = DOM0_KERNEL.name.removeprefix("linux-image-")
    utils = _existing(tree / XEN_LIVEPATCH, XEN_UTILS)
    return ReferenceFiles(
        xen=_multiboot_image(_existing(tree / XEN_BOOT_IMAGE, XEN_HYPERVISOR), build),
        kernel=_existing(tree / "boot" / f"vmlinuz-{release}", DOM0_KERNEL.name),
        modules=tuple(_module(tree / "lib/modules" / release, name, DOM0_KERNEL.name) for name in DOM0_MODULES),
        busybox=_existing(tree / "bin/busybox", "busybox-static"),
        xen_livepatch=utils,
        libraries=_libraries(utils, tree),
        packages=tuple(f"{package.name} {package.version}" for package in packages))


def qemu_binary() -> Path:
    """QEMU's x86-64 system emulator; ToolchainError saying how to install it when it is not there."""
    found = shutil.which(QEMU)
    if found is None:
        raise ToolchainError(f"{QEMU} is not installed: `xsplice-emu reference --install` (or `make "
                             f"reference-install`) installs Debian's {QEMU_PACKAGE} with apt-get")
    return Path(found)


def install_command() -> list[str]:
    """The command `install_qemu` runs (shown to the user before it runs)."""
    return ["apt-get", "install", "-y", "-q", "--no-install-recommends", QEMU_PACKAGE]


def install_qemu() -> None:
    """Install Debian's qemu-system-x86 with apt-get (needs root); ToolchainError, one line, when that fails."""
    try:
        result = subprocess.run(install_command(), capture_output=True, text=True)
    except OSError as exc:
        raise ToolchainError(f"cannot install {QEMU_PACKAGE}: apt-get: {exc.strerror}") from None
    if result.returncode:
        errors = [line for line in result.stderr.splitlines() if line.startswith("E:")]
        why = (errors or result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[0]
        raise ToolchainError(f"cannot install {QEMU_PACKAGE}: {why}")


def _multiboot_image(compressed: Path, build: DebianXenBuild) -> Path:
    """Xen's gzipped boot image, unpacked once (QEMU's -kernel takes the ELF), checked to be `build`'s (the
    build-id of its xen-syms, which the testbed patches)."""
    data = read_file(compressed, limit=IMAGE_LIMIT, what="Xen boot image")
    def unpack(work: Path) -> None:
        (work / "xen").write_bytes(gzip.decompress(data))

    image = cached("reference-xen", digest(compressed), unpack) / "xen"
    booted = _build_id(image).hex()
    if booted != build.build_id:
        raise ToolchainError(f"Debian's {XEN_HYPERVISOR} {build.version} (build-id {booted}) is not the build of "
                             f"its xen-syms (build-id {build.build_id})")
    return image


def _build_id(path: Path) -> bytes:
    try:
        with io.BytesIO(path.read_bytes()) as stream:
            return elf_build_id(ELFFile(stream))
    except ELFError as exc:
        raise ToolchainError(f"{path}: not an ELF file ({exc})") from None


def _libraries(program: Path, tree: Path) -> tuple[Path, ...]:
    """The shared objects `program` loads (its DT_NEEDED, and theirs), found in the unpacked `tree`."""
    found: dict[str, Path] = {}
    wanted = [DYNAMIC_LOADER, *_needed(program)]
    while wanted:
        name = wanted.pop()
        if name in found:
            continue
        candidates = sorted(tree.rglob(name))
        if not candidates:
            raise ToolchainError(f"{name}, which {program.name} loads, is in none of Debian's "
                                 f"{', '.join(XEN_LIBRARIES)} and {', '.join(p.name for p in DOM0_PACKAGES[1:])}")
        found[name] = candidates[0]
        wanted += _needed(candidates[0])
    return tuple(found[name] for name in sorted(found))


def _needed(path: Path) -> list[str]:
    try:
        with path.open("rb") as stream:
            dynamic = ELFFile(stream).get_section_by_name(".dynamic")
            if not isinstance(dynamic, DynamicSection):
                return []
            tags = [tag for tag in dynamic.iter_tags() if tag.entry.d_tag == "DT_NEEDED"]
            return [str(tag.needed) for tag in tags]  # type: ignore[attr-defined]  # set by pyelftools per tag
    except (ELFError, OSError) as exc:
        raise ToolchainError(f"{path}: cannot read its dynamic section ({exc})") from None


def _module(tree: Path, name: str, package: str) -> Path:
    found = sorted(tree.rglob(f"{name}.ko"))
    if not found:
        raise ToolchainError(f"Debian's {package} has no {name}.ko")
    return found[0]


def _existing(path: Path, package: str) -> Path:
    if not path.is_file():
        raise ToolchainError(f"Debian's {package} has no {path.name}")
    return path
