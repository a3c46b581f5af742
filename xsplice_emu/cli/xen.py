"""`xsplice-emu xen build`: Xen's hypervisor from source, with livepatching and debug information, for the xen
engine (`--xen-syms PATH --engine xen`)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import click

from ..provision.xen_build import build_xen
from .common import reports_errors


@click.group("xen")
def xen():
    """Xen hypervisors for the xen engine."""


@xen.command("build")
@click.option("--source", type=click.Path(file_okay=False, path_type=Path),
              help="A Xen source tree (a git work tree: its tracked files, edits included).")
@click.option("--debian", metavar="VERSION",
              help="Debian's source package of this build (`debian` for the pinned one), by `apt-get source`.")
@click.option("--patch", "patches", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="A patch (-p1) to apply first; repeat for more, applied in order.")
@reports_errors
def build(source: Path | None, debian: str | None, patches: tuple[Path, ...]):
    """Build Xen's xen-syms (defconfig, debug information, livepatching) into the cache once, and print its
    path. It takes minutes the first time: a progress line says how far it got."""
    live = sys.stderr.isatty()
    width = shutil.get_terminal_size().columns - 1

    def progress(line: str) -> None:
        if live:
            click.echo(f"\r{line[:width]:<{width}}", err=True, nl=False)

    try:
        path = build_xen(source=source, debian=debian, patches=patches, progress=progress)
    finally:
        if live:
            click.echo(f"\r{'':<{width}}\r", err=True, nl=False)
    click.echo(str(path))
