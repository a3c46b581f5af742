"""Building what the testbed runs: a missing gcc, ld or make is one line naming the Debian package to install, and a
build cache that cannot be made is one line naming where it was looked for."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner
from helpers import ROOT

from xsplice_emu import builtin_firmware, load_image
from xsplice_emu.cli import main


@pytest.mark.parametrize(("missing", "package"), [("gcc", "gcc"), ("ld", "binutils"), ("make", "make")])
def test_boot_without_a_build_tool_names_what_to_install(tmp_path, monkeypatch, missing, package):
    """With an empty cache and PATH lacking one tool, `boot` exits 1 with one line naming its package."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in {"gcc", "ld", "make"} - {missing}:
        (bin_dir / tool).symlink_to(shutil.which(tool))
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("CROSS_COMPILE", raising=False)
    result = CliRunner().invoke(main, ["boot", "--vcpus", "1", "--ms", "1"])
    assert result.exit_code == 1
    assert result.output == (f"error: cannot build the firmware: {missing} is not installed "
                             f"(Debian: apt-get install {package})\n")


def test_cross_compile_prefix_names_the_cross_packages(tmp_path, monkeypatch):
    """CROSS_COMPILE=x86_64-linux-gnu- asks for the prefixed tools and Debian's cross packages."""
    (tmp_path / "make").symlink_to(shutil.which("make"))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("CROSS_COMPILE", "x86_64-linux-gnu-")
    result = CliRunner().invoke(main, ["boot"])
    assert result.output == ("error: cannot build the firmware: x86_64-linux-gnu-gcc is not installed "
                             "(Debian: apt-get install gcc-x86-64-linux-gnu)\n")


@pytest.mark.slow
def test_cross_compile_builds_the_same_firmware(tmp_path, monkeypatch, image):
    """Built with the x86_64-linux-gnu- tools into a new cache, the firmware has the native build's build-id."""
    if shutil.which("x86_64-linux-gnu-gcc") is None:
        pytest.skip("no x86_64-linux-gnu-gcc here")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("CROSS_COMPILE", "x86_64-linux-gnu-")
    built = builtin_firmware()
    assert built.is_relative_to(tmp_path) and load_image(built).build_id == image.build_id


@pytest.mark.parametrize("cache", ["a file", "/proc/xsplice-emu-unmakeable"])
def test_a_cache_that_cannot_be_made_is_one_line(tmp_path, monkeypatch, cache):
    """XDG_CACHE_HOME naming a file, or a folder that cannot be made: exit 2 and one line, not a traceback."""
    if cache == "a file":
        cache = str(tmp_path / "file")
        (tmp_path / "file").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", cache)
    result = CliRunner().invoke(main, ["boot", "--vcpus", "1", "--ms", "1"])
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1, result.output
    assert result.output.startswith(f"error: {cache}/xsplice-emu: cannot make the build cache there "
                                    "($XDG_CACHE_HOME/xsplice-emu, else ~/.cache/xsplice-emu): "), result.output


def test_a_compiler_that_fails_silently_still_says_how(tmp_path):
    """CC that exits 1 printing nothing (here /bin/false), with an empty cache: the C hook's build fails in one
    line that names the exit status (a fresh process: this one has the library loaded)."""
    environment = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "CC": "/bin/false"}
    environment.pop("CROSS_COMPILE", None)
    result = subprocess.run([sys.executable, "-c", "import sys; from xsplice_emu.cli import main; "
                             "sys.argv[0] = 'xsplice-emu'; main()", "boot", "--vcpus", "1", "--ms", "1", "-q"],
                            capture_output=True, text=True, env=environment, timeout=120)
    assert result.returncode == 1, result.stderr
    native = ROOT / "xsplice_emu" / "machine" / "native"
    assert result.stdout + result.stderr == f"error: /bin/false failed on {native}: exit status 1, nothing printed\n"
