"""`xsplice-emu payload build|inspect`: make and look into livepatch payloads."""

from __future__ import annotations

import shutil
from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from ..authoring.build import build_payload, payload_build_id, read_note
from ..authoring.inspection import PayloadReport, inspect_payload
from ..authoring.preflight import Preflight, preflight
from ..authoring.xen_tests import xen_test_payloads, xen_tests_for
from ..engines import ENGINES
from ..errors import errno_name
from ..files import check_destination, check_new_directory, file_errors, read_file
from ..image import load_image
from ..livepatch.abi import DEPENDS, PAYLOAD_MAX_SIZE
from ..provision.debian import DEBIAN_XEN_SYMS, load_xen_syms, xen_syms_path
from ..provision.firmware import builtin_firmware
from .common import engine_option, out, reports_errors, xen_syms_option


@click.group()
def payload():
    """Build and inspect livepatch payloads."""


@payload.command("build")
@click.argument("source", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Output payload (default: SOURCE's stem + .livepatch, here).")
@click.option("--depends", default="hypervisor", show_default=True, metavar="hypervisor|PAYLOAD",
              help="What it applies on top of: the firmware, or another payload (its build-id).")
@click.option("--no-xen-depends", is_flag=True, help="Leave out .livepatch.xen_depends.")
@click.option("--firmware", "--against", "firmware", type=click.Path(), metavar="FILE",
              help="The hypervisor it patches: a firmware ELF (default: the built-in one) or a real xen-syms "
                   f"('{DEBIAN_XEN_SYMS}[:VERSION]': Debian's Xen 4.17).")
@reports_errors
def payload_build(source, output, depends, no_xen_depends, firmware):
    """Compile SOURCE (C) into a livepatch payload for the firmware."""
    source = Path(source)
    output = check_destination(output or source.stem + ".livepatch", inputs=[source])
    built = build_payload(
        source,
        output,
        firmware=builtin_firmware() if firmware is None else xen_syms_path(firmware),
        depends=None if depends == "hypervisor" else depends,
        xen_depends=not no_xen_depends,
    )
    depends_on = (read_note(built, DEPENDS) or b"").hex() or "nothing"
    click.echo(f"built {built} (build-id {payload_build_id(built).hex()}, depends {depends_on})")


@payload.command("build-tests")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--against", "xen_syms", type=click.Path(), metavar="XEN_SYMS",
              help=f"Build them for this real Xen image ('{DEBIAN_XEN_SYMS}[:VERSION]': Debian's Xen 4.17) instead "
                   "of the built-in firmware, but those that assert facts of the firmware's code.")
@reports_errors
def payload_build_tests(directory, xen_syms):
    """Copy Xen's test payloads (built into the cache on first use) into DIRECTORY (made with its parents)."""
    check_new_directory(directory, parents=True)
    built = xen_test_payloads() if xen_syms is None else xen_tests_for(load_xen_syms(xen_syms).path)
    with file_errors(directory, "copy the payloads there"):
        shutil.copytree(built, directory, dirs_exist_ok=True)
    click.echo(f"Xen's test payloads in {directory} (built in {built})")


@payload.command("inspect")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--firmware", type=click.Path(dir_okay=False), help="Firmware ELF (default: the built-in one).")
@reports_errors
def payload_inspect(file, firmware):
    """Show FILE's records, sections, relocations, build-ids and new code."""
    path = Path(file)
    data = read_file(path, limit=PAYLOAD_MAX_SIZE, what="payload")
    report = inspect_payload(path.stem, data, load_image(firmware or builtin_firmware()))
    loaded = report.loaded
    out.print(f"[bold]{escape(str(path))}[/bold]")
    out.print(f"  build-id     {loaded.build_id.hex()}")
    out.print(f"  depends      {loaded.depends.hex() if loaded.depends else '-'} ({report.depends_on})")
    if loaded.xen_depends is None:
        out.print("  xen_depends  -")
    else:
        verdict = "matches" if loaded.xen_depends == report.firmware_build_id else "does NOT match"
        out.print(f"  xen_depends  {loaded.xen_depends.hex()} ({verdict} the firmware)")
    out.print(_function_table(report))
    for info in report.functions:
        if info.new_code:
            out.print(f"new code for {info.record.name}:")
            for address, text in info.new_code:
                out.print(f"  {address:#x}  {text}", markup=False)
    hooks = ", ".join(f"{kind} x{len(addresses)}" for kind, addresses in loaded.hooks.items() if addresses)
    out.print(f"hooks: {hooks or 'none'}")
    sections = Table(title="sections", title_justify="left")
    for column in ("name", "loaded as", "size"):
        sections.add_column(column, overflow="fold")  # wrapped, never cut
    for section in report.sections:
        sections.add_row(section.name, section.kind, str(section.size))
    out.print(sections)
    relocations = Table(title="relocations", title_justify="left")
    for column in ("section", "offset", "type", "symbol", "addend"):
        relocations.add_column(column, overflow="fold")
    for reloc in report.relocations:
        relocations.add_row(reloc.section, f"{reloc.offset:#x}", reloc.type, reloc.symbol, str(reloc.addend))
    out.print(relocations)
    if report.unreadable:
        out.print(f"[yellow]not all sections and relocations could be listed: {escape(report.unreadable)}[/yellow]")


@payload.command("check")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--firmware", type=click.Path(dir_okay=False), help="Firmware ELF (default: the built-in one).")
@xen_syms_option
@engine_option
@reports_errors
def payload_check(file, firmware, xen_syms, engine):
    """Pre-flight FILE: Xen's verdict at upload and at a trial apply on a fresh machine (against --xen-syms:
    on that real Xen image; with --engine xen, by that image's own livepatch code), and each patch site before
    and after. Exit 0 only when it is accepted, applies with rc 0, and every jump and expectation holds."""
    path = Path(file)
    data = read_file(path, limit=PAYLOAD_MAX_SIZE, what="payload")
    report = preflight(path.stem, data, firmware=firmware, xen_syms=xen_syms, engine=engine or ENGINES[0])
    _print_preflight(path, report)
    raise SystemExit(0 if report.ok else 1)


def _print_preflight(path: Path, report: Preflight) -> None:
    echo = click.echo
    echo(str(path))
    upload = report.upload
    echo(f"  upload   {'accepted (CHECKED)' if upload is None else f'refused: -{upload.errno_name}: {upload.reason}'}")
    for site in report.sites:
        func = site.record
        echo(f"  {func.name}: {'NOP' if func.is_nop else 'jmp'} patch at {func.old_addr:#x} <{site.target}>")
        for label, code in (("before", site.before), ("after", site.after)):
            for index, (address, text) in enumerate(code):
                echo(f"    {label if index == 0 else '':<7}{address:#x}  {text}")
        if not func.is_nop:
            echo(f"    reach  {'rel32 reaches' if site.reaches else 'OUT OF rel32 REACH of'} {func.new_addr:#x}")
        echo(f"    expect {site.expectation}")
        if site.unsafe:
            echo(f"    UNSAFE {site.unsafe}" + ("" if report.upload else " (a warning: Xen accepts it)"))
    apply = report.apply
    if apply is None:
        echo("  apply    not tried (the upload was refused)")
    elif isinstance(apply, int):
        echo(f"  apply    rc {apply}{'' if apply == 0 else f' ({errno_name(-apply)})'} on 1 vCPU")
    else:
        echo(f"  apply    refused: -{apply.errno_name}: {apply.reason}")
    before, after = report.versions_before, report.versions_after
    if before is not None and after is not None:
        for field in ("major", "minor", "extra"):
            old, new = getattr(before, field), getattr(after, field)
            echo(f"  xen_{field}_version  {old!r}" + ("" if old == new else f" -> {new!r}"))
    warnings = report.warnings
    counted = f", {len(warnings)} warning{'s' if len(warnings) > 1 else ''} ({'; '.join(warnings)})" if warnings else ""
    echo(f"verdict: {'OK' if report.ok else 'NOT OK'}{counted}")


FUNCTION_COLUMNS = ("name", "old", "new", "old_size", "new_size", "version", "patch", "expect")
DROPPED_FIRST = ("expect", "version", "new_size", "old_size", "patch")
"""Columns left out, in this order, until the function table fits the terminal (or pipe) width."""


def _function_table(report: PayloadReport) -> Table:
    rows = []
    for info in report.functions:
        func = info.record
        rows.append((func.name, f"{func.old_addr:#x} <{info.old}>", f"{func.new_addr:#x}" if func.new_addr else "-",
                     str(func.old_size), str(func.new_size), str(func.version),
                     "NOP" if func.new_addr == 0 else "jmp", func.expect.hex(" ") if func.expect else "-"))
    widths = {column: max([len(column), *(len(row[index]) for row in rows)]) + 3
              for index, column in enumerate(FUNCTION_COLUMNS)}
    shown = list(FUNCTION_COLUMNS)
    for column in DROPPED_FIRST:
        if sum(widths[name] for name in shown) + 1 <= out.width:
            break
        shown.remove(column)
    table = Table(title="function records" + ("" if len(shown) == len(FUNCTION_COLUMNS) else
                                              f" (narrow: {', '.join(c for c in FUNCTION_COLUMNS if c not in shown)} "
                                              "left out)"), title_justify="left")
    for column in shown:
        table.add_column(column, no_wrap=True)
    for row in rows:
        table.add_row(*(value for column, value in zip(FUNCTION_COLUMNS, row, strict=True) if column in shown))
    return table
