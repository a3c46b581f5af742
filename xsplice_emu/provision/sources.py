"""Where the C sources are: inside the installed package, or in the checkout.

A wheel carries copies of the checkout's SHIPPED directories under
`xsplice_emu/_sources` (setup.py copies them at build time, build outputs
left out); an editable install reads the checkout itself. This module
imports nothing from the package: setup.py loads it on its own.
"""

from __future__ import annotations

from pathlib import Path

SHIPPED = ("firmware", "payloads/include", "payloads/src", "scenarios", "xenctrl")
BUILD_OUTPUTS = frozenset({"build", "__pycache__"})
PACKAGE = Path(__file__).resolve().parent.parent  # xsplice_emu/
PACKAGED = PACKAGE / "_sources"
CHECKOUT = PACKAGE.parent


def sources_dir() -> Path:
    """The directory that holds firmware/, payloads/, scenarios/ and xenctrl/."""
    return PACKAGED if PACKAGED.is_dir() else CHECKOUT


def source_files(directory: Path) -> list[Path]:
    """The files under `directory` in a stable order, build outputs left out."""
    return sorted(path for path in directory.rglob("*")
                  if path.is_file() and not BUILD_OUTPUTS.intersection(path.relative_to(directory).parts))

