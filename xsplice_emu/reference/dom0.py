"""dom0 of the reference machine: its kernel (the ELF vmlinux out of Debian's bzImage), and an initrd of busybox,
Debian's xen-livepatch with its libraries, the scenario's payloads and an /init that runs the planned steps.

/init reports on its console (hvc0, which Xen copies to the serial line between
its own log lines) in lines `@@ref STEP WHAT [VALUE]`: `begin` before a step,
`status N` after the tool exits, `out`/`err`/`major`/`minor`/`extra` with base64
of what it printed or read; `@@ref - ready` once dom0 is up and `@@ref - done`
at the end, then it powers the machine off.
"""

from __future__ import annotations

import io
import lzma
import shlex
import struct
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..errors import ToolchainError
from ..files import read_file
from ..provision.cache import cached, digest
from .packages import DYNAMIC_LOADER, ReferenceFiles
from .plan import PlannedStep

MARK = "@@ref"
APPLETS = ("sh", "mount", "insmod", "base64", "cat", "poweroff", "usleep", "mkdir")
LIBRARY_DIR = "/lib/x86_64-linux-gnu"
TOOL = "/usr/sbin/xen-livepatch"
VERSION_FILES = ("major", "minor", "extra")
KERNEL_LIMIT = 64 << 20
PAYLOAD_LIMIT = 2 << 20


def vmlinux(bzimage: Path) -> Path:
    """The ELF kernel inside `bzimage`, unpacked once into the cache (Xen boots it far faster than the bzImage,
    whose decompressor runs under TCG)."""
    data = read_file(bzimage, limit=KERNEL_LIMIT, what="kernel")
    def unpack(work: Path) -> None:
        (work / "vmlinux").write_bytes(_decompressed(data, bzimage))

    return cached("reference-vmlinux", digest(bzimage), unpack) / "vmlinux"


def _decompressed(data: bytes, path: Path) -> bytes:
    """The xz payload of a bzImage (boot protocol: setup sectors at 0x1f1, payload offset and length at 0x248)."""
    try:
        setup_sectors = data[0x1F1] or 4
        offset, length = struct.unpack_from("<II", data, 0x248)
        start = (setup_sectors + 1) * 512 + offset
        return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data[start:start + length])
    except (IndexError, struct.error, lzma.LZMAError) as exc:
        raise ToolchainError(f"{path}: not an xz-compressed bzImage ({exc})") from None


@dataclass
class Cpio:
    """An initramfs archive (cpio "newc"), built in order, every time stamp 0: the same files give the same
    bytes."""

    stream: io.BytesIO = field(default_factory=io.BytesIO)
    made: set[str] = field(default_factory=set)
    inode: int = 0

    def directory(self, path: str) -> None:
        parts = PurePosixPath(path).parts[1:]
        for depth in range(1, len(parts) + 1):
            name = "/".join(parts[:depth])
            if name not in self.made:
                self.made.add(name)
                self._entry(name, 0o040755, b"")

    def file(self, path: str, data: bytes, *, executable: bool = False) -> None:
        self.directory(str(PurePosixPath(path).parent))
        self._entry(path.lstrip("/"), 0o100755 if executable else 0o100644, data)

    def symlink(self, path: str, target: str) -> None:
        self.directory(str(PurePosixPath(path).parent))
        self._entry(path.lstrip("/"), 0o120777, target.encode())

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0, b"")
        return self.stream.getvalue()

    def _entry(self, name: str, mode: int, data: bytes) -> None:
        self.inode += 1
        encoded = name.encode() + b"\0"
        fields = (self.inode, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0)
        self.stream.write(b"070701" + b"".join(b"%08X" % value for value in fields) + encoded)
        self._pad()
        self.stream.write(data)
        self._pad()

    def _pad(self) -> None:
        self.stream.write(b"\0" * (-self.stream.tell() % 4))


def initrd(files: ReferenceFiles, steps: tuple[PlannedStep, ...], payloads: dict[PurePosixPath, Path],
           cwd: PurePosixPath) -> bytes:
    """dom0's initrd: busybox and its applets, the tool and its libraries, the modules, `payloads` (dom0 path:
    host file) and /init running `steps` from `cwd`."""
    archive = Cpio()
    archive.file("/bin/busybox", files.busybox.read_bytes(), executable=True)
    for applet in APPLETS:
        archive.symlink(f"/bin/{applet}", "busybox")
    archive.file(TOOL, files.xen_livepatch.read_bytes(), executable=True)
    for library in files.libraries:
        archive.file(f"{LIBRARY_DIR}/{library.name}", library.read_bytes(), executable=True)
    archive.symlink(f"/lib64/{DYNAMIC_LOADER}", f"{LIBRARY_DIR}/{DYNAMIC_LOADER}")
    for module in files.modules:
        archive.file(f"/modules/{module.name}", module.read_bytes())
    for where, source in payloads.items():
        archive.file(str(where), read_file(source, limit=PAYLOAD_LIMIT, what="payload"))
    for directory in ("/proc", "/sys", "/dev", "/tmp", str(cwd)):
        archive.directory(directory)
    archive.file("/init", init_script(files, steps, cwd).encode(), executable=True)
    return archive.finish()


def init_script(files: ReferenceFiles, steps: tuple[PlannedStep, ...], cwd: PurePosixPath) -> str:
    """dom0's /init: set up /proc/xen, then each step between its markers, then power off."""
    lines = ["#!/bin/sh", "mount -t proc proc /proc", "mount -t sysfs sysfs /sys", "mount -t devtmpfs dev /dev"]
    lines += [f"insmod /modules/{module.name}" for module in files.modules]
    lines += ["mount -t xenfs xenfs /proc/xen", f"export LD_LIBRARY_PATH={LIBRARY_DIR}", f"cd {cwd}",
              f'report() {{ base64 "$3" | while read -r line; do echo "{MARK} $1 $2 $line"; done; }}',
              f"echo '{MARK} - ready'"]
    for step in steps:
        if step.skipped is not None:
            continue
        number = step.number
        lines.append(f"echo '{MARK} {number} begin'")
        if step.tool:
            lines += [f"{TOOL} {shlex.join(step.tool)} >/tmp/out 2>/tmp/err",
                      f'echo "{MARK} {number} status $?"', f"report {number} out /tmp/out",
                      f"report {number} err /tmp/err"]
        elif step.reads:
            lines += [f"report {number} {name} /sys/hypervisor/version/{name}" for name in VERSION_FILES]
            lines += [f"{TOOL} list >/tmp/out 2>/tmp/err", f'echo "{MARK} {number} status $?"',
                      f"report {number} out /tmp/out"]
        else:
            lines += [f"usleep {step.sleep_us}", f'echo "{MARK} {number} status 0"']
    lines += [f"echo '{MARK} - done'", "poweroff -f"]
    return "\n".join(lines) + "\n"
