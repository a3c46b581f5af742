"""`xsplice-emu serve`, `xenctrl-path` and `xen-tools`: a live machine for Xen's own xen-livepatch.

    xsplice-emu serve --socket /tmp/xs.sock &
    LD_LIBRARY_PATH=$(xsplice-emu xenctrl-path) XSPLICE_EMU_SOCKET=/tmp/xs.sock \\
        $(xsplice-emu xen-tools --xen-livepatch) load xen_hello_world.livepatch
"""

from __future__ import annotations

import logging
import signal

import click

from ..control.session import Session
from ..duration import MAX_MS, NS_PER_MS
from ..engines import ENGINES
from ..files import check_destination
from ..provision.debian import DEBIAN_XEN_SYMS, debian_build, xen_livepatch, xen_syms
from ..provision.xenctrl import xenctrl_dir
from ..server import SysctlServer
from .common import Range, machine_options, reports_errors


@click.command()
@machine_options
@click.option("--socket", "socket_path", required=True, type=click.Path(dir_okay=False),
              help="Unix socket to answer on (XSPLICE_EMU_SOCKET of the clients).")
@click.option("--poll-ns", type=Range(1, MAX_MS * NS_PER_MS),
              help="Virtual ns one GET lets pass while an action is pending [default: twice its timeout; at most "
                   f"{MAX_MS // 1000} virtual s, as any duration the CLI takes].")
@click.option("--trace", "trace_path", type=click.Path(dir_okay=False),
              help="Write the JSON Lines trace here on exit (spooled to a temporary file meanwhile; without it no "
                   "events are kept).")
@click.option("-q", "--quiet", is_flag=True, help="Log only problems, not requests and hypervisor lines.")
@reports_errors
def serve(vcpus, seed, firmware, xen_syms, engine, boot_ms, clock_mhz, timer_hz, no_oracle, socket_path, poll_ns,
          trace_path, quiet):
    """Boot a machine and answer Xen's livepatch sysctl on SOCKET until SIGTERM, SIGINT, SIGHUP or a SHUTDOWN request.

    \b
    Drive it with Debian's xen-livepatch through this project's libxenctrl:
      LD_LIBRARY_PATH=$(xsplice-emu xenctrl-path) XSPLICE_EMU_SOCKET=SOCKET xen-livepatch list
    """
    check_destination(socket_path)
    if trace_path:
        check_destination(trace_path)
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="serve: %(message)s")
    session = Session(vcpus=vcpus, seed=seed, firmware=firmware, xen_syms=xen_syms, boot_ms=boot_ms,
                      oracle=not no_oracle, clock_mhz=clock_mhz, timer_hz=timer_hz, engine=engine or ENGINES[0])
    server = SysctlServer(session, socket_path, poll_ns=poll_ns, trace_path=trace_path)
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, lambda *_: server.stop())
    click.echo(f"serving {vcpus} vCPUs on {socket_path}", err=True)
    server.serve()
    if trace_path:
        click.echo(f"trace written to {trace_path}", err=True)


@click.command("xenctrl-path")
@reports_errors
def xenctrl_path():
    """Print the directory of libxenctrl.so.4.17 (built on first use), for LD_LIBRARY_PATH."""
    click.echo(xenctrl_dir())


@click.command("xen-tools")
@click.argument("build", default=DEBIAN_XEN_SYMS)
@click.option("--xen-livepatch", "only", flag_value="xen-livepatch",
              help="Print only the path of the xen-livepatch binary (for XL=$(xsplice-emu xen-tools --xen-livepatch)).")
@click.option("--xen-syms", "only", flag_value="xen-syms", help="Print only the path of xen-syms.")
@reports_errors
def xen_tools(build, only):
    """Fetch Debian's xen-utils-4.17 and Xen 4.17 image (xen-syms) of BUILD (`debian`, the pinned build, or
    `debian:VERSION`) into the cache once; print the directory of its xen-livepatch, then the path of xen-syms
    (with --xen-livepatch or --xen-syms: that one path)."""
    chosen = debian_build(build)
    if only != "xen-syms":
        click.echo(xen_livepatch(chosen) if only else xen_livepatch(chosen).parent)
    if only != "xen-livepatch":
        click.echo(xen_syms(chosen))
