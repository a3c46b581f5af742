"""Puts the checkout's C sources into the wheel as package data (see xsplice_emu/provision/sources.py)."""

import runpy
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
SOURCES = runpy.run_path(str(ROOT / "xsplice_emu" / "provision" / "sources.py"))


class BuildPyWithSources(build_py):
    """build_py, then a copy of each SHIPPED directory under xsplice_emu/_sources (not for editable installs)."""

    def run(self):
        super().run()
        if self.editable_mode:
            return
        target = Path(self.build_lib) / "xsplice_emu" / "_sources"
        shutil.rmtree(target, ignore_errors=True)
        for name in SOURCES["SHIPPED"]:
            shutil.copytree(ROOT / name, target / name, ignore=shutil.ignore_patterns(*SOURCES["BUILD_OUTPUTS"]))


setup(cmdclass={"build_py": BuildPyWithSources})
