"""`xsplice-emu boot`: run the firmware and show what every vCPU printed."""

from __future__ import annotations

import time
from operator import attrgetter

import click
from rich.progress import Progress, TimeElapsedColumn
from rich.table import Table

from ..duration import NS_PER_MS
from ..files import check_destination
from ..image import load_image
from ..machine import Machine, MachineConfig
from ..provision.debian import load_xen_syms
from ..provision.firmware import builtin_firmware
from .common import (
    DIGEST_SHOWN,
    SEED,
    VCPUS,
    Milliseconds,
    clock_options,
    out,
    print_console_line,
    reports_errors,
    xen_syms_option,
)


@click.command()
@click.option("--vcpus", default=4, show_default=True, type=VCPUS, help="Number of vCPUs.")
@click.option("--seed", default=0, show_default=True, type=SEED, help="Seed of the scheduler.")
@click.option("--ms", default=10.0, show_default=True, type=Milliseconds(), help="Virtual milliseconds to run.")
@click.option("--firmware", type=click.Path(dir_okay=False), help="Firmware ELF (default: the built-in one).")
@clock_options
@xen_syms_option
@click.option("--trace", "trace_path", type=click.Path(dir_okay=False), help="Write the JSON Lines trace here.")
@click.option("-q", "--quiet", is_flag=True, help="Print only the summary.")
@reports_errors
def boot(vcpus, seed, ms, firmware, xen_syms, clock_mhz, timer_hz, trace_path, quiet):
    """Boot the firmware on VCPUS vCPUs and run MS ms of virtual time."""
    config = MachineConfig(vcpus=vcpus, seed=seed, clock_hz=clock_mhz * 1_000_000, timer_hz=timer_hz)
    config.validate()
    if trace_path:
        check_destination(trace_path)
    image = load_image(firmware or builtin_firmware())
    hypervisor = None if xen_syms is None else load_xen_syms(xen_syms)
    started = time.perf_counter()
    machine = Machine(image, config=config, hypervisor=hypervisor)
    _run(machine, int(ms * NS_PER_MS))
    host_seconds = time.perf_counter() - started
    if not quiet:
        for line in sorted(machine.console.lines, key=attrgetter("time_ns")):  # vCPUs print in their own slices
            print_console_line(line)
    if trace_path:
        machine.trace.write(trace_path)
    _print_summary(machine, host_seconds)


def _run(machine: Machine, ns: int) -> None:
    """Run `ns` of virtual time; on a terminal with a progress bar (chunks of virtual time give the same
    run, same digest), piped without one."""
    if not out.is_terminal or ns <= PROGRESS_FROM_NS:
        machine.run_for(ns)
        return
    with Progress(*Progress.get_default_columns(), TimeElapsedColumn(), console=out, transient=True) as bar:
        task = bar.add_task("booting (virtual ms)", total=ns / NS_PER_MS)
        while machine.now_ns < ns:
            step = min(PROGRESS_STEP_NS, ns - machine.now_ns)
            machine.run_for(step)
            bar.advance(task, step / NS_PER_MS)


PROGRESS_FROM_NS = 50 * NS_PER_MS
"""Runs longer than this (about a tenth of a second of host time) show a progress bar."""
PROGRESS_STEP_NS = 5 * NS_PER_MS


def _print_summary(machine: Machine, host_seconds: float) -> None:
    table = Table(title="summary", show_header=False, title_justify="left")
    counts = [v.instructions for v in machine.vcpus]
    table.add_row("vCPUs", str(len(counts)))
    table.add_row("virtual time", f"{machine.now_ns / 1e6:.3f} ms")
    if machine.hypervisor is not machine.image:
        begin, _ = machine.payload_space
        table.add_row("hypervisor", f"{machine.hypervisor.path.name} (build-id {machine.hypervisor.build_id.hex()}) "
                                    f"at {min(s.address for s in machine.hypervisor.segments):#x}; "
                                    f"payloads from {begin:#x}")
    if len(counts) <= 16:
        table.add_row("instructions per vCPU", ", ".join(f"{c:,}" for c in counts))
    else:
        table.add_row("instructions per vCPU",
                      f"min {min(counts):,}  mean {sum(counts) // len(counts):,}  max {max(counts):,}")
    table.add_row("instructions", f"{sum(counts):,}")
    table.add_row("host time", f"{host_seconds:.3f} s")
    table.add_row("guest MIPS", f"{sum(counts) / host_seconds / 1e6:.1f}")
    table.add_row("trace digest", machine.trace.digest[:DIGEST_SHOWN])
    out.print(table)
