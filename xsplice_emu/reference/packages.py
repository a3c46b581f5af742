"""What the reference boots, all from Debian's packages, and QEMU that boots it.

Xen's boot image, dom0's kernel and modules, busybox, Debian's xen-livepatch
and every library it loads are downloaded and unpacked into the cache
(`debian.package`), never installed. QEMU is the one thing installed, and only
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

from .. import debian
from ..cache import cached, digest
from ..errors import ToolchainError
from ..files import read_file
from ..image import elf_build_id

XEN_HYPERVISOR = "xen-hypervisor-4.17-amd64"
XEN_BOOT_IMAGE = Path("boot/xen-4.17-amd64.gz")
BUSYBOX = "busybox-static"
KERNEL_METAPACKAGE = "linux-image-amd64"
LIBRARY_PACKAGES = ("libxenmisc4.17", "libxencall1", "libxenforeignmemory1", "libxengnttab1", "libxendevicemodel1",
                    "libxentoolcore1", "libxentoollog1", "libxenevtchn1", "libxenstore4", "libxenhypfs1", "libyajl2",
                    "libc6")
"""Where xen-livepatch's libraries are (libxenctrl.so.4.17 is in libxenmisc4.17: there is no libxenctrl4.17)."""
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


def xen_package(name: str) -> Path:
    """The unpacked tree of Xen package `name`, of the build the testbed's xen-syms is (checked by build-id)."""
    return debian.package(name)


def reference_files() -> ReferenceFiles:
    """Fetch (once) and find everything the reference boots; ToolchainError, one line, when something is missing."""
    hypervisor = xen_package(XEN_HYPERVISOR)
    xen = _multiboot_image(hypervisor / XEN_BOOT_IMAGE)
    kernel_name = kernel_package()
    kernel_tree = debian.package(kernel_name)
    release = kernel_name.removeprefix("linux-image-")
    utils_tree, syms_tree = xen_package(debian.XEN_UTILS), xen_package(debian.XEN_HYPERVISOR_DBG)
    utils = _existing(utils_tree / debian.XEN_LIVEPATCH, debian.XEN_UTILS)
    library_trees = [xen_package(name) if name.startswith("libxen") else debian.package(name)
                     for name in LIBRARY_PACKAGES]
    busybox_tree = debian.package(BUSYBOX)
    return ReferenceFiles(
        xen=xen,
        kernel=_existing(kernel_tree / "boot" / f"vmlinuz-{release}", kernel_name),
        modules=tuple(_module(kernel_tree / "lib/modules" / release, name, kernel_name) for name in DOM0_MODULES),
        busybox=_existing(busybox_tree / "bin/busybox", BUSYBOX),
        xen_livepatch=utils,
        libraries=_libraries(utils, library_trees),
        packages=tuple(f"{name} {_version(tree, name)}" for name, tree in
                       [(XEN_HYPERVISOR, hypervisor), (debian.XEN_HYPERVISOR_DBG, syms_tree),
                        (debian.XEN_UTILS, utils_tree), (kernel_name, kernel_tree), (BUSYBOX, busybox_tree),
                        *zip(LIBRARY_PACKAGES, library_trees, strict=True)]))


def kernel_package() -> str:
    """The concrete kernel package (linux-image-6.1.0-N-amd64) behind Debian's linux-image-amd64 metapackage."""
    try:
        result = subprocess.run(["apt-cache", "depends", KERNEL_METAPACKAGE], capture_output=True, text=True)
    except OSError as exc:
        raise ToolchainError(f"cannot find Debian's kernel package: apt-cache: {exc.strerror}") from None
    for line in result.stdout.splitlines():
        what, _, name = line.strip().partition(": ")
        if what == "Depends" and name.startswith("linux-image-"):
            return name
    raise ToolchainError(f"cannot find Debian's kernel package: `apt-cache depends {KERNEL_METAPACKAGE}` names none")


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


def _multiboot_image(compressed: Path) -> Path:
    """Xen's gzipped boot image, unpacked once (QEMU's -kernel takes the ELF), checked to be the build of the
    testbed's xen-syms."""
    data = read_file(_existing(compressed, XEN_HYPERVISOR), limit=IMAGE_LIMIT, what="Xen boot image")
    def unpack(work: Path) -> None:
        (work / "xen").write_bytes(gzip.decompress(data))

    image = cached("reference-xen", digest(compressed), unpack) / "xen"
    booted, patched = _build_id(image), debian.load_xen_syms(debian.DEBIAN_XEN_SYMS).build_id
    if booted != patched:
        raise ToolchainError(f"Debian's {XEN_HYPERVISOR} (build-id {booted.hex()}) is not the build of the "
                             f"testbed's xen-syms (build-id {patched.hex()}): their versions differ")
    return image


def _build_id(path: Path) -> bytes:
    try:
        with io.BytesIO(path.read_bytes()) as stream:
            return elf_build_id(ELFFile(stream))
    except ELFError as exc:
        raise ToolchainError(f"{path}: not an ELF file ({exc})") from None


def _libraries(program: Path, trees: list[Path]) -> tuple[Path, ...]:
    """The shared objects `program` loads (its DT_NEEDED, and theirs), found in the unpacked `trees`."""
    found: dict[str, Path] = {}
    wanted = [DYNAMIC_LOADER, *_needed(program)]
    while wanted:
        name = wanted.pop()
        if name in found:
            continue
        candidates = [path for tree in trees for path in sorted(tree.rglob(name))]
        if not candidates:
            raise ToolchainError(f"{name}, which {program.name} loads, is in none of Debian's "
                                 f"{', '.join(LIBRARY_PACKAGES)}")
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


def _version(tree: Path, package: str) -> str:
    """The package's version as its Debian changelog's first line gives it (the kernel's: its name)."""
    changelog = tree / "usr/share/doc" / package / "changelog.Debian.gz"
    if not changelog.is_file():
        return "(version in its name)"
    first = gzip.decompress(changelog.read_bytes()).split(b"\n", 1)[0].decode(errors="replace")
    return first.partition("(")[2].partition(")")[0] or "(unknown version)"
