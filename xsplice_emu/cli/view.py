"""`xsplice-emu view TRACE`: the interactive timeline of a trace (Textual)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..errors import ConfigError
from ..tracing import TraceFile
from ..viewer.frame import WHOLE
from .common import reports_errors


def view_trace(path: str | Path, *, step: tuple[int, int] | None = None, message: str = "") -> None:
    """Open the viewer on the trace at `path` until the user quits; a bad trace raises TraceFormatError.
    `step`, `message`: open on that (start, end) of virtual time, saying `message` (a failed scenario step).

    A trace of up to WHOLE events is checked line by line first; a bigger
    one is read lazily and a bad line ends the viewer when it is reached."""
    from ..viewer.app import TraceViewer  # Textual loads only when a viewer opens, not with every command

    trace = TraceFile.open(path)
    if len(trace) <= WHOLE:
        trace.validate()
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise ConfigError("the viewer needs a terminal (its input and output are not one here); "
                          "`xsplice-emu trace summary` prints the actions")
    error = TraceViewer(trace, step=step, message=message).run()
    if error is not None:
        raise error


@click.command()
@click.argument("trace", type=click.Path(dir_okay=False))
@reports_errors
def view(trace):
    """Browse TRACE: a lane per vCPU on virtual time, patch writes, IPIs, NMIs, actions (? for the keys)."""
    view_trace(trace)
