"""The `xsplice-emu` command line: a thin client of the library."""

import click

from .boot import boot
from .demo import demo
from .explore import explore_command
from .livepatch import livepatch
from .payload import payload
from .reference import reference
from .run import run
from .serve import serve, xen_tools, xenctrl_path
from .shell import shell
from .trace import trace
from .view import view
from .xen import xen


@click.group()
@click.version_option(package_name="xsplice-emu")
def main():
    """xsplice-emu: Xen's xSplice live patching on emulated x86-64 vCPUs."""


for command in (boot, demo, explore_command, payload, livepatch, reference, run, serve, shell, trace, view,
                xen, xen_tools, xenctrl_path):
    main.add_command(command)
