"""Xen's hypervisor built from source into the cache, with livepatching and debug information, so a Xen developer
runs *their* patching code on the xen engine (`xsplice-emu xen build`).

The source is a tree the user gives (a git work tree: its tracked files as they are now, uncommitted edits
included; else every file) or Debian's source package of a build of `debian_builds`, fetched by `apt-get source`
through private package lists with deb-src lines for the system's own Debian mirrors (nothing on the system
changes) and pinned by the sha256 of its .dsc (`dpkg-source` then checks the tarballs against the .dsc). Patches
are applied in order (`patch -p1`). The build is Xen's defconfig with EXPERT and DEBUG_INFO set (CONFIG_LIVEPATCH
is on by default on x86): the xen-syms it leaves has DWARF, from which the xen engine reads its structure offsets.
Entries are keyed by the source's contents, the patches and the compiler, so a changed tree builds anew.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from urllib.parse import unquote

from ..errors import ConfigError, ToolchainError
from ..files import read_file
from .cache import cached, digest
from .debian import DEBIAN_XEN_SYMS, apt_error, debian_build, is_debian_build, run_apt

XEN_SYMS = "xen-syms"
"""The built image's name in its cache entry."""
CONFIG_LINES = ("CONFIG_EXPERT=y", "CONFIG_DEBUG_INFO=y", "CONFIG_LIVEPATCH=y")
"""Set over defconfig: DEBUG_INFO (-g) is only offered with EXPERT in Xen 4.17."""
HYPERVISOR_PARTS = ("xen", "Config.mk", "config")
"""What of a Xen tree the hypervisor's build reads."""
BUILD_TOOLS = {"gcc": "gcc", "ld": "binutils", "make": "make", "flex": "flex", "bison": "bison",
               "patch": "patch"}
"""The programs a build runs, with their Debian packages."""
DSC_SHA256 = {
    "4.17.7+13-g2445b30a44-0+deb12u1": "8bf01bcad94067022f27c38529e10593cbd2f145bc0d305a72f7634f2865ffba",
    "4.17.5+72-g01140da4e8-1": "f13956b67fb7a65707c2b0620d89b41ee5d203434dd7bb913017356791ee66c1",
}
"""The sha256 of the .dsc of Debian's source package of each build (from apt's Sources index)."""
PATCH_LIMIT = 16 << 20
"""Largest patch read (bytes)."""
APT_SOURCES = Path("/etc/apt")
NOT_SERVED = " 404  Not Found"
"""How apt reports a file the archive does not have."""

Progress = Callable[[str], None]


def build_xen(*, source: Path | None = None, debian: str | None = None, patches: Sequence[Path] = (),
              progress: Progress | None = None) -> Path:
    """The xen-syms of `source` (a tree) or `debian` (`debian` or `debian:VERSION`) with `patches` applied, built
    once into the cache (ConfigError for bad input, ToolchainError when a tool is missing or the build fails;
    one line each)."""
    if (source is None) == (debian is None):
        raise ConfigError("give one source: --source DIR or --debian VERSION")
    texts = [(patch, read_file(patch, limit=PATCH_LIMIT, what="patch")) for patch in patches]
    fill, key, what = _tree(source) if source is not None else _debian(str(debian))  # (what was given, first)
    _require_tools()
    compiler = subprocess.run(["gcc", "--version"], capture_output=True, text=True).stdout.partition("\n")[0]
    patch_key = digest(*(f"{patch.name}\0{hashlib.sha256(text).hexdigest()}" for patch, text in texts))
    entry = cached("xen-build", digest(key, patch_key, compiler, *CONFIG_LINES),
                   lambda work: _build(work, fill, what, texts, progress or (lambda _: None)))
    return entry / XEN_SYMS


def _tree(source: Path) -> tuple[Callable[[Path], None], str, str]:
    """How to copy the tree `source` into a build directory, its key and its name."""
    files = _tree_files(source)
    return (partial(_copy_tree, source, files), digest(*(part for name in files for part in (name, source / name))),
            str(source))


def _debian(value: str) -> tuple[Callable[[Path], None], str, str]:
    """How to fetch the source of the Debian build `value` names into a build directory, its key and its name."""
    version = debian_build(value if is_debian_build(value) else f"{DEBIAN_XEN_SYMS}:{value}").version
    return partial(debian_source, version), digest("debian", version, DSC_SHA256[version]), f"Debian's xen {version}"


def _require_tools() -> None:
    for program, package in BUILD_TOOLS.items():
        if shutil.which(program) is None:
            raise ToolchainError(f"cannot build Xen: {program} is not installed (Debian: apt-get install {package})")


def _tree_files(source: Path) -> list[str]:
    """The files of `source` the hypervisor's build reads, relative: git's tracked ones in a git work tree."""
    if not (source / "xen" / "Makefile").is_file():
        raise ConfigError(f"{source}: not a Xen source tree (no xen/Makefile)")
    listed = subprocess.run(["git", "-C", str(source), "ls-files", "-z", "--", *HYPERVISOR_PARTS],
                            capture_output=True) if shutil.which("git") else None
    if listed is not None and not listed.returncode and listed.stdout:
        names = listed.stdout.decode("utf-8", "surrogateescape").split("\0")
        return sorted(name for name in names if name and (source / name).is_file())
    found = [source / part for part in HYPERVISOR_PARTS]
    return sorted(str(path.relative_to(source)) for part in found
                  for path in ([part] if part.is_file() else sorted(part.rglob("*"))) if path.is_file())


def _copy_tree(source: Path, files: Sequence[str], tree: Path) -> None:
    """`files` of `source` into `tree`."""
    for name in files:
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / name, tree / name)


def debian_source(version: str, tree: Path) -> None:
    """Debian's source package of `version`, fetched through private deb-src lists and unpacked into `tree`."""
    downloads = tree.parent / f"{tree.name}.dsc"
    lists, parts = downloads / "lists", downloads / "sources.list.d"
    (lists / "partial").mkdir(parents=True)
    parts.mkdir()
    _private_deb_src(parts)
    private = ["-o", f"Dir::Etc::SourceList={parts / 'none.list'}", "-o", f"Dir::Etc::SourceParts={parts}",
               "-o", f"Dir::State::Lists={lists}", "-o", f"Dir::Cache={downloads / 'apt-cache'}"]
    what = f"Xen {version} source package"
    try:
        for step in (["apt-get", "update", "-q", "--error-on=any", *private],
                     ["apt-get", "source", "--download-only", "-q", *private, f"xen={version}"]):
            result = run_apt(what, step, downloads)
            if result.returncode:
                raise source_failure(what, step, result)
        dsc = downloads / f"xen_{re.sub(r'^[0-9]+:', '', version)}.dsc"
        found = hashlib.sha256(dsc.read_bytes()).hexdigest()
        if found != DSC_SHA256[version]:
            raise ToolchainError(f"cannot fetch Debian's {what}: {dsc.name} has sha256 {found}, not the pinned "
                                 f"{DSC_SHA256[version]}")
        tree.rmdir()
        run_apt(what, ["dpkg-source", "--no-copy", "-x", str(dsc), str(tree)], downloads, check=True)
    finally:
        shutil.rmtree(downloads, ignore_errors=True)


def source_failure(what: str, step: Sequence[str], result: subprocess.CompletedProcess[str]) -> ToolchainError:
    """Why apt could not fetch Debian's source package `what`, in one line; when the archive lists it but serves
    none of its files (404: so far Debian's security archive, which holds the pinned build, through the package
    mirror this testbed reaches), what to build instead."""
    error = apt_error(result)
    if NOT_SERVED in error:
        missing = error.split()[3].rsplit("/", 1)[-1] if error.startswith("Failed to fetch ") else "its files"
        return ToolchainError(f"cannot fetch Debian's {what}: the Debian archive reached lists it but does not serve "
                              f"{unquote(missing)} (404); build a Xen tree you have instead: xsplice-emu xen build "
                              f"--source DIR")
    return ToolchainError(f"cannot fetch Debian's {what}: {step[0]} {step[1]}: {error}")


def _private_deb_src(parts: Path) -> None:
    """deb-src twins of the system's Debian sources (one-line and deb822 files) in `parts`."""
    for file in sorted([APT_SOURCES / "sources.list", *(APT_SOURCES / "sources.list.d").glob("*.list")]):
        if file.is_file():
            lines = [re.sub(r"^deb(\s)", r"deb-src\1", line) for line in file.read_text().splitlines()
                     if line.startswith("deb ") and "debian" in line]
            (parts / f"{file.stem}-src.list").write_text("".join(f"{line}\n" for line in lines))
    for file in sorted((APT_SOURCES / "sources.list.d").glob("*.sources")):
        (parts / file.name).write_text(re.sub(r"(?m)^Types:.*$", "Types: deb-src", file.read_text()))


def _build(work: Path, fill: Callable[[Path], None], what: str, patches: Sequence[tuple[Path, bytes]],
           progress: Progress) -> None:
    tree = work.parent / f"{work.name}.tree"
    tree.mkdir()
    try:
        progress(f"xen build: preparing {what}")
        fill(tree)
        for patch, text in patches:
            result = subprocess.run(["patch", "-p1", "--batch", "--forward", "-d", str(tree)], input=text,
                                    capture_output=True)
            if result.returncode:
                lines = (result.stdout + result.stderr).decode("utf-8", "replace").strip().splitlines()
                raise ConfigError(f"{patch}: does not apply to {what}: {(lines or ['?'])[-1]}")
        _make(tree, ["defconfig"], what)
        with open(tree / "xen" / ".config", "a") as config:
            config.write("".join(f"{line}\n" for line in CONFIG_LINES))
        _make(tree, ["olddefconfig"], what)
        _make(tree, [f"-j{os.cpu_count() or 1}"], what, progress=progress)
        if not (tree / "xen" / XEN_SYMS).is_file():
            raise ToolchainError(f"cannot build {what}: make left no xen/{XEN_SYMS}")
        shutil.copy2(tree / "xen" / XEN_SYMS, work / XEN_SYMS)
        shutil.copy2(tree / "xen" / ".config", work / "xen.config")
    finally:
        shutil.rmtree(tree, ignore_errors=True)


def _make(tree: Path, targets: list[str], what: str, *, progress: Progress | None = None) -> None:
    """`make -C xen TARGETS`, telling `progress` how many objects it compiled so far."""
    started, compiled, tail = time.monotonic(), 0, list[str]()
    environment = {name: value for name, value in os.environ.items() if not name.startswith("MAKE")}
    with subprocess.Popen(["make", "-C", "xen", *targets], cwd=tree, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, errors="replace", env=environment) as make:
        assert make.stdout is not None
        for line in make.stdout:
            tail = [*tail[-19:], line.rstrip()]
            if progress is not None and line.startswith("  CC "):
                compiled += 1
                progress(f"xen build: {compiled} files compiled, {time.monotonic() - started:.0f} s: "
                         f"{line.split()[-1]}")
    if make.returncode:
        errors = [line for line in tail if "error" in line.lower()] or tail or [f"exit status {make.returncode}"]
        raise ToolchainError(f"cannot build {what}: make {' '.join(targets)}: {errors[0].strip()}")
