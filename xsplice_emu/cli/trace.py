"""`xsplice-emu trace export|summary|validate`: look into a run's trace file."""

from __future__ import annotations

import json

import click
from rich.table import Table
from rich.text import Text

from ..errors import errno_name
from ..tracing.export import export_chrome
from ..tracing.reader import TraceFile
from ..tracing.summary import ActionSummary, summarize
from .common import out, reports_errors

TRACE_FILE = click.Path(exists=True, dir_okay=False)


@click.group()
def trace():
    """Export, summarise and check trace files (JSON Lines, docs/trace-format.md)."""


@trace.command("export")
@click.argument("trace_path", metavar="TRACE", type=TRACE_FILE)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Chrome Trace Event JSON to write (opens in ui.perfetto.dev and chrome://tracing).")
@reports_errors
def trace_export(trace_path, output):
    """Write TRACE as Chrome Trace Event JSON: a track per vCPU, the rendezvous, IPIs, NMIs, patches."""
    opened = TraceFile.open(trace_path)
    count = export_chrome(opened, output)
    click.echo(f"wrote {output}: {count} events, {opened.vcpus} vCPU tracks + controller")


@trace.command("summary")
@click.argument("trace_path", metavar="TRACE", type=TRACE_FILE)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list, one object per action.")
@reports_errors
def trace_summary(trace_path, as_json):
    """Per live patching action in TRACE: rc, master, virtual latencies, slowest vCPU, NMIs lost, bytes,
    the safety oracle's violations."""
    actions = summarize(TraceFile.open(trace_path).checked())
    if as_json:
        click.echo(json.dumps([action.to_json() for action in actions], indent=2))
        return
    if not actions:
        out.print("no live patching action in this trace")
    for number, action in enumerate(actions, 1):
        table = Table(title=Text(f"#{number} {action.caption}"), title_justify="left", show_header=False)
        table.add_row("rc", _rc(action))
        table.add_row("master", "-" if action.master is None else f"vCPU {action.master}")
        table.add_row("request -> all parked", _us(action.parked_latency_ns))
        table.add_row("request -> release", _us(action.release_latency_ns))
        table.add_row("slowest vCPU to arrive", _slowest(action))
        table.add_row("NMIs lost", str(action.nmis_lost))
        functions = f" ({', '.join(action.functions_patched)})" if action.functions_patched else ""
        table.add_row("bytes patched", f"{action.bytes_patched}{functions}")
        shown = ", ".join(f"{check} {count}" for check, count in action.violations)
        table.add_row("violations", f"[red]{shown}[/red]" if shown else "0")
        out.print(table)
    if actions:
        out.print("[dim]times: virtual, from the request[/dim]")


@trace.command("validate")
@click.argument("trace_path", metavar="TRACE", type=TRACE_FILE)
@reports_errors
def trace_validate(trace_path):
    """Check every line of TRACE against the format; name the first bad line."""
    opened = TraceFile.open(trace_path)
    opened.validate()
    click.echo(f"{trace_path}: {len(opened)} events, valid")


def _rc(action: ActionSummary) -> str:
    if action.rc is None:
        return "unfinished"
    text = str(action.rc) if action.rc >= 0 else f"{action.rc} ({errno_name(-action.rc)})"
    return f"{text}: {action.abort_reason}" if action.abort_reason else text


def _us(ns: int | None) -> str:
    return "-" if ns is None else f"{ns / 1000:.3f} us"


def _slowest(action: ActionSummary) -> str:
    slowest = action.slowest
    return "-" if slowest is None else f"vCPU {slowest.vcpu} at {_us(slowest.time_ns - action.requested_ns)}"
