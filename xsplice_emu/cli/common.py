"""What every `xsplice-emu` command shares: the console and the error policy.

Only the cli package prints or exits. Library errors become one line on
stderr and exit status 1 (2 for bad usage).
"""

from __future__ import annotations

import math
import sys
from functools import wraps

import click
from rich.console import Console
from rich.markup import escape

from ..control.operator import ERR, PREFIXES, XEN, Outcome
from ..control.session import DEFAULT_BOOT_MS, DEFAULT_CLOCK_MHZ, DEFAULT_TIMER_HZ, RATE_MAX
from ..engines import ENGINES
from ..errors import ConfigError, GuestFault, XspliceEmuError
from ..machine import ConsoleLine
from ..platform import NR_CPUS
from ..provision.debian import DEBIAN_XEN_SYMS
from ..scenario.keys import Value

out = Console(highlight=False, soft_wrap=True)
VCPU_COLOURS = ["cyan", "green", "yellow", "magenta", "blue", "red", "bright_cyan", "bright_green"]


class Range(click.IntRange):
    """An integer option from `min` to `max` (or up), its range written `0..2^63-1`, `1..256` or `1..`."""

    def _describe_range(self) -> str:
        return f"{_bound(self.min)}..{_bound(self.max)}"


def _bound(value: float | None) -> str:
    if value is None:
        return ""
    power = int(value).bit_length()
    return f"2^{power}-1" if value > 1_000_000 and value == 2**power - 1 else f"{value}"


SEED = Range(*Value.INTEGER.bounds)
VCPUS = Range(1, NR_CPUS)
RATE = Range(1, RATE_MAX)
DIGEST_SHOWN = 16
"""Hex digits of a trace digest shown in one-line summaries; `run --expect-digest` takes such a prefix."""


class Milliseconds(click.FloatRange):
    """A duration option in virtual ms: finite, in the range of a scenario's duration in ms (Value.MS)."""

    def __init__(self) -> None:
        super().__init__(*Value.MS.bounds)

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{number} is not a duration in ms ({self.min} to {self.max}).", param, ctx)
        return number


def reports_errors(command):
    """Turn library errors into one clear line and an exit status."""
    @wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except ConfigError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except XspliceEmuError as exc:
            for line in exc.xen_log if isinstance(exc, GuestFault) else ():
                click.secho(PREFIXES[XEN] + line, err=True, dim=True)
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
    return wrapper


def print_console_line(line: ConsoleLine) -> None:
    """A guest console line: its virtual time, then its text in its vCPU's colour."""
    colour = VCPU_COLOURS[line.vcpu % len(VCPU_COLOURS)]
    out.print(f"[dim]\\[{line.time_ns / 1e9:12.9f}][/dim] [{colour}]{escape(line.text)}[/{colour}]")


def print_outcome(outcome: Outcome, *, quiet: bool = False) -> None:
    """What an operator command printed: stdout, stderr, then dimmed on stderr Xen's lines (`(XEN) `) and the
    testbed's remarks (`(testbed) `), unless `quiet`."""
    for stream, text in outcome.chunks:
        if stream in PREFIXES:
            if quiet:
                continue
            click.secho(PREFIXES[stream] + text, nl=False, err=True, dim=True)
        else:
            click.echo(text, nl=False, err=stream == ERR)


def xen_syms_option(command):
    """--xen-syms: a real Xen image to patch beside the firmware."""
    return click.option("--xen-syms", type=click.Path(), metavar="PATH",
                        help="A real Xen's xen-syms, mapped at its link addresses and patched instead of the "
                             f"firmware's functions ('{DEBIAN_XEN_SYMS}': Debian's pinned Xen 4.17 build, "
                             f"'{DEBIAN_XEN_SYMS}:VERSION' another; fetched once).")(command)


def engine_option(command):
    """--engine: what runs livepatching."""
    return click.option("--engine", type=click.Choice(ENGINES),
                        help="controller (default): the firmware and the Python rendezvous; xen: the --xen-syms image "
                             "runs on every vCPU and livepatches itself with its own code.")(command)


def oracle_option(command):
    """--no-oracle: run without the safety oracle."""
    return click.option("--no-oracle", "no_oracle", is_flag=True,
                        help="Turn the safety oracle off (docs/oracle.md): no violation checks, a little faster.")(
        command)


def clock_options(command=None, *, overrides: bool = False):
    """--clock-mhz and --timer-hz: the machine's virtual clock and timer interrupt rate (with `overrides`, no
    default: they override each scenario's [machine] table)."""
    def add(command):
        command = click.option("--timer-hz", default=None if overrides else DEFAULT_TIMER_HZ,
                               show_default=not overrides, type=RATE,
                               help="Per-vCPU timer interrupts per virtual second" +
                                    (" (overrides every scenario's)." if overrides else "."))(command)
        return click.option("--clock-mhz", default=None if overrides else DEFAULT_CLOCK_MHZ,
                            show_default=not overrides, type=RATE,
                            help="Instructions per virtual microsecond" +
                                 (" (overrides every scenario's)." if overrides else "."))(command)
    return add if command is None else add(command)


def machine_options(command):
    """--vcpus, --seed, --firmware, --xen-syms, --engine, --boot-ms, --clock-mhz, --timer-hz and --no-oracle: the
    machine a command boots."""
    command = oracle_option(command)
    command = clock_options(command)
    command = engine_option(command)
    command = click.option("--boot-ms", default=DEFAULT_BOOT_MS, show_default=True,
                           type=Milliseconds(), help="Virtual ms to boot before the first command.")(command)
    command = xen_syms_option(command)
    command = click.option("--firmware", type=click.Path(dir_okay=False),
                           help="Firmware ELF (default: the built-in one).")(command)
    command = click.option("--seed", default=0, show_default=True, type=SEED, help="Seed of the scheduler.")(command)
    return click.option("--vcpus", default=4, show_default=True, type=VCPUS,
                        help="Number of vCPUs.")(command)
