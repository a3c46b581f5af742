"""Installed from a wheel in a fresh venv outside the tree: the firmware and payloads build from package data."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from helpers import ROOT

from xsplice_emu.scenario import load_scenario, run_scenario

NOT_SHIPPED = shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__", ".pytest_cache")


def _run(argv: list, **options) -> subprocess.CompletedProcess:
    result = subprocess.run([str(arg) for arg in argv], capture_output=True, text=True, **options)
    assert result.returncode == 0, result.stderr
    return result


@pytest.mark.slow
def test_a_wheel_in_a_fresh_venv_boots_and_passes_the_demo(tmp_path, payloads):
    """The installed `xsplice-emu` boots 2 vCPUs and runs Xen's sequence with the checkout's digest, building
    into a new cache."""
    source = shutil.copytree(ROOT, tmp_path / "source", ignore=NOT_SHIPPED)  # no build outputs of the checkout
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
          "--wheel-dir", tmp_path / "dist", source])
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    assert {"xsplice_emu/_sources/firmware/Makefile", "xsplice_emu/_sources/payloads/include/xsplice_payload.h",
            "xsplice_emu/_sources/payloads/src/bad/do_nmi.c"} <= set(zipfile.ZipFile(wheel).namelist())

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv])
    site = _run([venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
    # The dependencies: this environment's packages as a plain path (its editable finder is not run).
    Path(site.stdout.strip(), "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "--quiet", "--no-deps",
          "--no-index", wheel])

    work, cache = tmp_path / "elsewhere", tmp_path / "cache"
    work.mkdir()
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    env.pop("PYTHONPATH", None)
    booted = _run([venv / "bin" / "xsplice-emu", "boot", "--vcpus", "2", "--ms", "1"], cwd=work, env=env)
    assert "cpu0: up" in booted.stdout and "cpu1: up" in booted.stdout
    demo = _run([venv / "bin" / "xsplice-emu", "demo"], cwd=work, env=env)
    expected = run_scenario(load_scenario(ROOT / "scenarios" / "xen_test_sequence.toml")).digest
    assert "PASS  virtual time" in demo.stdout and f"digest {expected}" in demo.stdout
    assert f"({cache}/xsplice-emu/xen-tests-" in demo.stdout
    assert len(list(cache.glob("xsplice-emu/firmware-*/xen-syms"))) == 1
