"""`xsplice-emu reference SCENARIO...`: each scenario on Debian's real Xen under QEMU and on the testbed, and
their differences."""

from __future__ import annotations

import difflib
import shlex
import sys

import click
from rich.markup import escape
from rich.table import Table

from ..errors import ConfigError
from ..files import check_destination, write_file
from ..reference import Comparison, Difference, compare_scenario, default_smp, install_command, install_qemu
from ..reference.packages import reference_files
from ..reference.qemu import DEFAULT_TIMEOUT_S
from .common import Range, out, reports_errors


@click.command()
@click.argument("scenarios", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--smp", type=Range(1, 64),
              help=f"QEMU's CPUs [default: the host's cores, {default_smp()}; more make Xen's 30 ms rendezvous "
                   "deadline fire under TCG].")
@click.option("--timeout", "timeout_s", type=Range(min=1), default=DEFAULT_TIMEOUT_S, show_default=True,
              help="Host seconds a reference run may take.")
@click.option("--console", "console_path", type=click.Path(dir_okay=False),
              help="Write the reference's serial console here (one scenario).")
@click.option("--install", is_flag=True,
              help="Install Debian's qemu-system-x86 with apt-get (needs root) and fetch the reference's packages "
                   "into the cache; nothing else is installed.")
@reports_errors
def reference(scenarios, smp, timeout_s, console_path, install):
    """Run each SCENARIO's steps on Debian's Xen 4.17 under QEMU and on the testbed (patching the same build's
    xen-syms), and print where they differ; exit 0 only when nothing does.

    \b
    Compared: the tool's stdout, stderr, exit status and errno, Xen's log lines in
    order, and at each expect step the version readings and payload states.
    Steps the reference cannot run (stalls, faults, calls) are skipped, saying why.
    """
    if install:
        click.echo(f"installing: {shlex.join(install_command())}", err=True)
        install_qemu()
        for package in reference_files().packages:
            click.echo(f"fetched {package}", err=True)
    if not scenarios:
        if install:
            return
        raise ConfigError("reference needs a SCENARIO (or --install)")
    if console_path is not None:
        if len(scenarios) != 1:
            raise ConfigError("--console needs one scenario")
        check_destination(console_path, inputs=scenarios)
    cores = default_smp()
    smp = smp or cores
    if smp > cores:
        click.echo(f"warning: -smp {smp} is more than the host's {cores} cores: under TCG Xen's 30 ms rendezvous "
                   "deadline fires (Error 16, exit status 2)", err=True)
    comparisons = [compare_scenario(path, smp=smp, timeout_s=timeout_s) for path in scenarios]
    if console_path is not None:
        write_file(console_path, "\n".join(comparisons[0].run.console) + "\n")
    for comparison in comparisons:
        _report(comparison)
    sys.exit(0 if not any(comparison.differences for comparison in comparisons) else 1)


def _report(comparison: Comparison) -> None:
    scenario = comparison.scenario
    table = Table(title=f"{escape(scenario.name)} ({escape(str(scenario.path))}): real Xen at -smp "
                        f"{comparison.run.smp}, the testbed at {scenario.machine.vcpus} vCPUs", title_justify="left")
    for column in ("step", "command", "real Xen (host)", "testbed (virtual)", "result"):
        table.add_column(column, justify="right" if column == "step" or "(" in column else "left",
                         overflow="fold")
    for step in comparison.steps:
        planned = step.planned
        if step.reference is None:
            result = f"[yellow]skipped: {escape(planned.skipped or '')}[/yellow]"
        elif step.differences:
            result = f"[red]{len(step.differences)} difference{'s' if len(step.differences) > 1 else ''}[/red]"
        else:
            result = "[green]same[/green]"
        seconds = step.reference.seconds if step.reference else None
        wall = "" if seconds is None else f"{seconds * 1e3:.0f} ms"
        table.add_row(str(planned.number), escape(planned.command), wall, _virtual(step.testbed.virtual_ns), result)
    out.print(table)
    for difference in comparison.differences:
        _print_difference(comparison, difference)
    run = comparison.run
    differing = sum(bool(step.differences) for step in comparison.steps)
    skipped = sum(step.reference is None for step in comparison.steps)
    colour = "red" if differing else "green"
    out.print(f"[{colour}]{len(comparison.differences)} differences in {differing} of {len(comparison.steps)} "
              f"steps[/{colour}] ({skipped} skipped); real Xen: dom0 ready after {run.ready_s:.1f} s, done after "
              f"{run.total_s:.1f} s; testbed {comparison.testbed_seconds:.2f} s (host wall time)")


def _print_difference(comparison: Comparison, difference: Difference) -> None:
    command = comparison.steps[difference.step - 1].planned.command
    where = f"step {difference.step} ({escape(command)}): {escape(difference.what)}"
    if isinstance(difference.reference, tuple):
        out.print(f"{where} (- real Xen, + testbed):")
        for line in _changed_lines(list(difference.reference), list(difference.testbed or ())):
            out.print(f"    {escape(line)}")
    else:
        out.print(f"{where}: real Xen {escape(repr(difference.reference))}, testbed "
                  f"{escape(repr(difference.testbed))}")


def _changed_lines(reference: list[str], testbed: list[str]) -> list[str]:
    """The lines only one side has, in order: `- ` real Xen's, `+ ` the testbed's."""
    lines = []
    for tag, a1, a2, b1, b2 in difflib.SequenceMatcher(a=reference, b=testbed, autojunk=False).get_opcodes():
        if tag != "equal":
            lines += [f"- {line}" for line in reference[a1:a2]] + [f"+ {line}" for line in testbed[b1:b2]]
    return lines


def _virtual(ns: int | None) -> str:
    if ns is None:
        return ""
    return f"{ns / 1e6:g} ms" if ns >= 1_000_000 else f"{ns / 1e3:.1f} us"
