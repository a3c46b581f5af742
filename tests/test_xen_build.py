"""`xsplice-emu xen build`'s refusals, each one line before anything is built, and the xen engine's refusal of an
image that has neither a table row nor DWARF. (Building itself takes minutes: tests/test_xen_bugs.py, `make
xen-bugs`.)"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import ROOT, debian_file

from xsplice_emu.authoring.build import build_payload
from xsplice_emu.cli import main
from xsplice_emu.control.session import Session
from xsplice_emu.control.verbs import parse
from xsplice_emu.engines.xen.dwarf import SIZE, struct_layouts
from xsplice_emu.errors import ConfigError, ToolchainError
from xsplice_emu.provision.debian import xen_syms
from xsplice_emu.provision.debian_builds import DEBIAN_XEN_BUILDS
from xsplice_emu.provision.xen_build import BUILD_TOOLS, CONFIG_LINES, build_xen, debian_source, source_failure


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty build cache of the test's own."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def tree(tmp_path) -> Path:
    """A directory that looks like a Xen tree to the build (xen/Makefile) but builds nothing."""
    (tmp_path / "xen-src" / "xen").mkdir(parents=True)
    (tmp_path / "xen-src" / "xen" / "Makefile").write_text("all:\n\tfalse\n")
    return tmp_path / "xen-src"


def _build(*arguments: str):
    return CliRunner().invoke(main, ["xen", "build", *arguments])


def _entries(cache: Path) -> list[str]:
    return sorted(path.name for path in (cache / "xsplice-emu").glob("*")) if cache.exists() else []


def test_xen_build_needs_exactly_one_source(cache, tree):
    """Neither or both of --source and --debian: exit 2 and one line saying what to give."""
    for arguments in ([], ["--source", str(tree), "--debian", "debian"]):
        result = _build(*arguments)
        assert (result.exit_code, result.output) == (2, "error: give one source: --source DIR or --debian VERSION\n")


def test_a_directory_that_is_not_a_xen_tree_is_refused(cache, tmp_path):
    """--source of a directory without xen/Makefile: exit 2, one line naming it, nothing cached."""
    result = _build("--source", str(tmp_path))
    assert (result.exit_code, result.output) == (2, f"error: {tmp_path}: not a Xen source tree (no xen/Makefile)\n")
    assert _entries(cache) == []


def test_a_missing_bison_is_named_with_its_debian_package(cache, tree, tmp_path, monkeypatch):
    """Without bison on PATH: exit 1 and the one line naming Debian's package, like the toolchain's for gcc (every
    other tool there, a stand-in where this machine lacks it)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for program in BUILD_TOOLS:
        if program == "bison":
            continue
        found = shutil.which(program)
        if found:
            os.symlink(found, bin_dir / program)
        else:
            (bin_dir / program).write_text("#!/bin/sh\nexit 1\n")
            (bin_dir / program).chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    result = _build("--source", str(tree))
    assert (result.exit_code, result.output) == (
        1, "error: cannot build Xen: bison is not installed (Debian: apt-get install bison)\n")


def test_a_make_that_leaves_no_xen_syms_is_one_line(cache, tree):
    """A tree whose make succeeds without a xen-syms: exit 1, one line saying so, nothing cached."""
    if missing := [program for program in BUILD_TOOLS if shutil.which(program) is None]:
        pytest.skip(f"{missing[0]} is not installed")
    (tree / "xen" / "Makefile").write_text("all defconfig olddefconfig:\n\ttrue\n")
    result = _build("--source", str(tree))
    assert (result.exit_code, result.output) == (1, f"error: cannot build {tree}: make left no xen/xen-syms\n")
    assert _entries(cache) == []


def test_a_patch_that_does_not_apply_is_refused_naming_it(cache, tree, tmp_path):
    """A patch of a file the tree lacks: exit 2, one line naming the patch and the tree, nothing cached."""
    if missing := [program for program in BUILD_TOOLS if shutil.which(program) is None]:
        pytest.skip(f"{missing[0]} is not installed")
    patch = tmp_path / "fix.patch"
    patch.write_text("--- a/xen/common/livepatch.c\n+++ b/xen/common/livepatch.c\n@@ -1 +1 @@\n-old\n+new\n")
    result = _build("--source", str(tree), "--patch", str(patch))
    assert result.exit_code == 2
    assert result.output.startswith(f"error: {patch}: does not apply to {tree}: ") and result.output.count("\n") == 1
    assert _entries(cache) == []


def test_debian_version_unknown_is_refused(cache):
    """--debian of a version the table lacks: exit 2 and the one line listing those it knows."""
    result = _build("--debian", "4.99")
    assert result.exit_code == 2 and result.output.startswith("error: debian:4.99: not a Debian Xen build")


APT_404 = ("W: Download is performed unsandboxed as root as file 'xen_4.17.7+13-g2445b30a44-0+deb12u1.dsc' "
           "couldn't be accessed by user '_apt'. - pkgAcquire::Run (13: Permission denied)\n"
           "E: Failed to fetch http://deb.debian.org/debian-security/pool/updates/main/x/xen/"
           "xen_4.17.7%2b13-g2445b30a44-0%2bdeb12u1.dsc  404  Not Found [IP: 203.0.113.80 80]\n"
           "E: Failed to fetch some archives.\n")
"""What `apt-get source xen=4.17.7+13-g2445b30a44-0+deb12u1` printed on the testbed's machine: Debian's security
archive, through the package mirror it reaches, lists the source package but serves none of its files."""
BOOKWORM = "4.17.5+72-g01140da4e8-1"
"""The build in bookworm itself, whose source package the main archive serves."""


def test_a_source_package_the_archive_lists_but_does_not_serve_says_to_build_a_tree_instead():
    """apt's 404 for the .dsc becomes one line naming the file and what to run instead (--source DIR); any other
    apt error is apt's own first line."""
    what, step = "Xen 4.17.7+13-g2445b30a44-0+deb12u1 source package", ["apt-get", "source"]
    not_served = subprocess.CompletedProcess(step, 100, "", APT_404)
    assert str(source_failure(what, step, not_served)) == (
        "cannot fetch Debian's Xen 4.17.7+13-g2445b30a44-0+deb12u1 source package: the Debian archive reached lists "
        "it but does not serve xen_4.17.7+13-g2445b30a44-0+deb12u1.dsc (404); build a Xen tree you have instead: "
        "xsplice-emu xen build --source DIR")
    unknown = subprocess.CompletedProcess(step, 100, "", "E: Unable to find a source package for xen\n")
    assert str(source_failure(what, step, unknown)) == (
        f"cannot fetch Debian's {what}: apt-get source: Unable to find a source package for xen")


@pytest.mark.long
def test_debians_bookworm_source_package_is_fetched_checked_and_unpacked_with_nothing_left_beside(tmp_path):
    """`debian_source` of bookworm's build: its .dsc has the pinned sha256, dpkg-source unpacks Xen 4.17.5 with
    Debian's patches into the tree, and nothing else is left in the directory around it (skipped, with apt's
    reason, where Debian's archive cannot be reached)."""
    tree = tmp_path / "tree"
    tree.mkdir()
    try:
        debian_source(BOOKWORM, tree)
    except ToolchainError as exc:
        pytest.skip(str(exc))
    assert "export XEN_EXTRAVERSION ?= .5$(XEN_VENDORVERSION)" in (tree / "xen" / "Makefile").read_text()
    assert (tree / "debian" / "patches" / "series").is_file()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["tree"]


def test_the_xen_engine_refuses_an_image_with_neither_a_table_row_nor_dwarf():
    """Debian's 4.17.5 xen-syms (no DWARF, no row in the offset table): a ConfigError saying to build one."""
    older = debian_file(lambda: xen_syms(DEBIAN_XEN_BUILDS[1]))
    with pytest.raises(ConfigError, match=r"the Xen image has no DWARF \(build it with debug information: "
                                          r"`xsplice-emu xen build`\)$"):
        Session(vcpus=2, seed=1, xen_syms=older, engine="xen")


STRUCTS_C = """
struct vcpu;
struct time_scale { int shift; unsigned int mul_frac; };
struct cpu_time { unsigned long stamp[3]; struct time_scale tsc_scale; };
struct domain { unsigned short domain_id; };
struct sched_unit { struct domain *domain; };
struct vcpu { int vcpu_id; int processor; void *vcpu_info; struct domain *domain; char pad[0xb0];
              struct sched_unit *sched_unit; };
struct cpu_info { char regs[0xc8]; unsigned int processor_id; unsigned int verw_sel; struct vcpu *current_vcpu;
                  unsigned long per_cpu_offset; unsigned long cr4; char rest[%d]; };
struct cpu_info a; struct cpu_time b; struct sched_unit c; struct vcpu d;
"""


def _object_with_dwarf(tmp_path: Path, source: str) -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    (tmp_path / "structs.c").write_text(source)
    subprocess.run(["gcc", "-g", "-c", "-o", str(tmp_path / "structs.o"), str(tmp_path / "structs.c")], check=True)
    return tmp_path / "structs.o"


def test_the_dwarf_reader_gives_the_offsets_gcc_laid_out(tmp_path):
    """Structures laid out as Xen 4.17's: the reader gives the members' offsets and the sizes gcc chose."""
    layouts = struct_layouts(_object_with_dwarf(tmp_path, STRUCTS_C % 0x28))
    assert layouts["cpu_info"] == {"processor_id": 0xC8, "current_vcpu": 0xD0, "per_cpu_offset": 0xD8, "cr4": 0xE0,
                                   "regs": 0, "verw_sel": 0xCC, "rest": 0xE8, SIZE: 0x110}
    assert (layouts["vcpu"]["sched_unit"], layouts["cpu_time"]["tsc_scale"], layouts["time_scale"]["mul_frac"]) == (
        0xC8, 0x18, 4)


def test_dwarf_without_a_member_the_engine_needs_names_it(tmp_path):
    """A struct cpu_info without current_vcpu: one line naming the structure and the member."""
    source = STRUCTS_C.replace("struct vcpu *current_vcpu;", "") % 0
    path = _object_with_dwarf(tmp_path, source)
    with pytest.raises(ConfigError, match=r"structs.o: the Xen image's DWARF has no struct cpu_info member "
                                          r"current_vcpu$"):
        struct_layouts(path)


FAKE_XEN_MAKEFILE = """\
all:
\t@echo "  CC      common/livepatch.o"
\t@echo "  CC      arch/x86/livepatch.o"
\tcat .config common/livepatch.c > xen-syms
defconfig:
\techo CONFIG_LIVEPATCH=y > .config
olddefconfig:
\tsort -u .config -o .config
"""


def test_a_tree_is_patched_configured_and_built_into_the_cache_once(cache, tmp_path):
    """A stand-in tree whose make copies its patched source and .config into xen-syms: the entry holds them, the
    progress names each compiled file, and a second build of the same tree and patch is the same entry, not rebuilt."""
    if missing := [program for program in BUILD_TOOLS if shutil.which(program) is None]:
        pytest.skip(f"{missing[0]} is not installed")
    tree = tmp_path / "xen-src"
    (tree / "xen" / "common").mkdir(parents=True)
    (tree / "xen" / "Makefile").write_text(FAKE_XEN_MAKEFILE)
    (tree / "xen" / "common" / "livepatch.c").write_text("int rc;\n")
    patch = tmp_path / "bug.patch"
    patch.write_text("--- a/xen/common/livepatch.c\n+++ b/xen/common/livepatch.c\n@@ -1 +1 @@\n-int rc;\n+int bug;\n")
    lines: list[str] = []
    built = build_xen(source=tree, patches=[patch], progress=lines.append)
    assert built.read_text().splitlines() == [*sorted(CONFIG_LINES), "int bug;"]
    assert [line.split(": ")[-1] for line in lines if "compiled" in line] == [
        "common/livepatch.o", "arch/x86/livepatch.o"]
    assert (tree / "xen" / "common" / "livepatch.c").read_text() == "int rc;\n"  # the user's tree is untouched
    again: list[str] = []
    assert build_xen(source=tree, patches=[patch], progress=again.append) == built and again == []


@pytest.mark.skipif("not config.getoption('--xen-build')", reason="builds Xen from Debian's source (minutes): "
                                                                   "--xen-build")
def test_debians_bookworm_build_is_built_from_its_source_package_and_livepatches_itself(tmp_path):
    """`xen build --debian` of bookworm's build: a xen-syms with DWARF whose own code says ".5" on every vCPU of
    the xen engine, and applies hello world built against it."""
    result = _build("--debian", BOOKWORM)
    assert result.exit_code == 0, result.output
    xen = Path(result.stdout.strip())
    payload = build_payload(ROOT / "payloads" / "src" / "xen_hello_world.c", tmp_path / "hello.livepatch",
                            firmware=xen)
    session = Session(vcpus=2, seed=1, xen_syms=xen, engine="xen", base=tmp_path)
    assert {v.extra for v in session.versions()} == {".5"}
    assert session.command(parse(["load", payload.name])).exit_code == 0
    assert {v.extra for v in session.versions()} == {"Hello World"}
