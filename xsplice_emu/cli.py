"""The `xsplice-emu` command line: a thin client of the library.

Only this module prints or exits. Library errors become one line on stderr
and exit status 1 (2 for bad usage).
"""

from __future__ import annotations

import sys
import time
from functools import wraps
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .errors import ConfigError, XspliceEmuError
from .firmware import builtin_firmware
from .image import load_image
from .livepatch.abi import DEPENDS
from .livepatch.build import build_payload, payload_build_id, read_note
from .livepatch.inspection import inspect_payload
from .machine import Machine, MachineConfig

out = Console(highlight=False, soft_wrap=True)
VCPU_COLOURS = ["cyan", "green", "yellow", "magenta", "blue", "red", "bright_cyan", "bright_green"]


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
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
    return wrapper


@click.group()
@click.version_option(package_name="xsplice-emu")
def main():
    """xsplice-emu: Xen's xSplice live patching on emulated x86-64 vCPUs."""


@main.command()
@click.option("--vcpus", default=4, show_default=True, help="Number of vCPUs (1-256).")
@click.option("--seed", default=0, show_default=True, help="Seed of the scheduler.")
@click.option("--ms", default=10.0, show_default=True, help="Virtual milliseconds to run.")
@click.option("--firmware", type=click.Path(dir_okay=False), help="Firmware ELF (default: the built-in one).")
@click.option("--clock-mhz", default=1000, show_default=True, help="Instructions per virtual microsecond.")
@click.option("--timer-hz", default=1000, show_default=True, help="Per-vCPU timer interrupt rate.")
@click.option("--trace", "trace_path", type=click.Path(dir_okay=False), help="Write the JSON Lines trace here.")
@click.option("-q", "--quiet", is_flag=True, help="Print only the summary.")
@reports_errors
def boot(vcpus, seed, ms, firmware, clock_mhz, timer_hz, trace_path, quiet):
    """Boot the firmware on VCPUS vCPUs and run MS ms of virtual time."""
    config = MachineConfig(vcpus=vcpus, seed=seed, clock_hz=clock_mhz * 1_000_000, timer_hz=timer_hz)
    config.validate()
    image = load_image(firmware or builtin_firmware())
    started = time.perf_counter()
    machine = Machine(image, config=config)
    machine.run_for(int(ms * 1_000_000))
    host_seconds = time.perf_counter() - started
    if not quiet:
        for line in machine.console.lines:
            colour = VCPU_COLOURS[line.vcpu % len(VCPU_COLOURS)]
            out.print(f"[dim]\\[{line.time_ns / 1e9:12.9f}][/dim] [{colour}]{escape(line.text)}[/{colour}]")
    if trace_path:
        machine.trace.write(trace_path)
    _print_summary(machine, host_seconds)


def _print_summary(machine: Machine, host_seconds: float) -> None:
    table = Table(title="summary", show_header=False, title_justify="left")
    counts = [v.instructions for v in machine.vcpus]
    table.add_row("vCPUs", str(len(counts)))
    table.add_row("virtual time", f"{machine.now_ns / 1e6:.3f} ms")
    if len(counts) <= 16:
        table.add_row("instructions per vCPU", ", ".join(f"{c:,}" for c in counts))
    else:
        table.add_row("instructions per vCPU", f"min {min(counts):,}  mean {sum(counts) // len(counts):,}  max {max(counts):,}")
    table.add_row("instructions", f"{sum(counts):,}")
    table.add_row("host time", f"{host_seconds:.3f} s")
    table.add_row("guest MIPS", f"{sum(counts) / host_seconds / 1e6:.1f}")
    table.add_row("trace digest", machine.trace.digest[:16])
    out.print(table)


@main.group()
def payload():
    """Build and inspect livepatch payloads."""


@payload.command("build")
@click.argument("source", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Output payload (default: SOURCE's stem + .livepatch, here).")
@click.option("--depends", default="hypervisor", show_default=True, metavar="hypervisor|PAYLOAD",
              help="What it applies on top of: the firmware, or another payload (its build-id).")
@click.option("--no-xen-depends", is_flag=True, help="Leave out .livepatch.xen_depends.")
@click.option("--firmware", type=click.Path(dir_okay=False), help="Firmware ELF (default: the built-in one).")
@reports_errors
def payload_build(source, output, depends, no_xen_depends, firmware):
    """Compile SOURCE (C) into a livepatch payload for the firmware."""
    source = Path(source)
    output = Path(output) if output else Path(source.stem + ".livepatch")
    built = build_payload(
        source,
        output,
        firmware=firmware or builtin_firmware(),
        depends=None if depends == "hypervisor" else depends,
        xen_depends=not no_xen_depends,
    )
    click.echo(f"built {built} (build-id {payload_build_id(built).hex()}, depends {read_note(built, DEPENDS).hex()})")


@payload.command("inspect")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--firmware", type=click.Path(dir_okay=False), help="Firmware ELF (default: the built-in one).")
@reports_errors
def payload_inspect(file, firmware):
    """Show FILE's records, sections, relocations, build-ids and new code."""
    path = Path(file)
    report = inspect_payload(path.stem, path.read_bytes(), load_image(firmware or builtin_firmware()))
    loaded = report.loaded
    out.print(f"[bold]{escape(str(path))}[/bold]")
    out.print(f"  build-id     {loaded.build_id.hex()}")
    out.print(f"  depends      {loaded.depends.hex() if loaded.depends else '-'} ({report.depends_on})")
    if loaded.xen_depends is None:
        out.print("  xen_depends  -")
    else:
        verdict = "matches" if loaded.xen_depends == report.firmware_build_id else "does NOT match"
        out.print(f"  xen_depends  {loaded.xen_depends.hex()} ({verdict} the firmware)")
    functions = Table(title="function records", title_justify="left")
    for column in ("name", "old", "new", "old_size", "new_size", "version", "patch", "expect"):
        functions.add_column(column)
    for info in report.functions:
        func = info.record
        functions.add_row(func.name, f"{func.old_addr:#x} <{info.old}>", f"{func.new_addr:#x}" if func.new_addr else "-",
                          str(func.old_size), str(func.new_size), str(func.version),
                          "NOP" if func.new_addr == 0 else "jmp", func.expect.hex(" ") if func.expect else "-")
    out.print(functions)
    for info in report.functions:
        if info.new_code:
            out.print(f"new code for {info.record.name}:")
            for address, text in info.new_code:
                out.print(f"  {address:#x}  {text}", markup=False)
    hooks = ", ".join(f"{kind} x{len(addresses)}" for kind, addresses in loaded.hooks.items() if addresses)
    out.print(f"hooks: {hooks or 'none'}")
    sections = Table(title="sections", title_justify="left")
    for column in ("name", "loaded as", "size"):
        sections.add_column(column)
    for section in report.sections:
        sections.add_row(section.name, section.kind, str(section.size))
    out.print(sections)
    relocations = Table(title="relocations", title_justify="left")
    for column in ("section", "offset", "type", "symbol", "addend"):
        relocations.add_column(column)
    for reloc in report.relocations:
        relocations.add_row(reloc.section, f"{reloc.offset:#x}", reloc.type, reloc.symbol, str(reloc.addend))
    out.print(relocations)
