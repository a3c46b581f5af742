"""`xsplice-emu run SCENARIO.toml...`: scenarios with CI-ready results."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import click
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from ..errors import ConfigError
from ..platform import NR_CPUS
from ..scenario import ScenarioResult, junit_xml, load_scenario, run_scenario
from .common import out, reports_errors
from .view import view_trace


@click.command()
@click.argument("scenarios", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--seed", type=int, help="Override every scenario's seed.")
@click.option("--vcpus", type=click.IntRange(1, NR_CPUS), help="Override every scenario's vCPU count.")
@click.option("--trace", "trace_path", type=click.Path(),
              help="Write the JSON Lines trace here (a directory, one STEM.jsonl each, for several scenarios).")
@click.option("--junit", "junit_path", type=click.Path(dir_okay=False), help="Write JUnit XML here.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON instead of tables.")
@click.option("-q", "--quiet", is_flag=True, help="One line per scenario.")
@click.option("--expect-digest", help="Fail unless the trace digest is this (one scenario only).")
@click.option("--view", "open_viewer", is_flag=True, help="Then open the trace viewer (on the first failed scenario).")
@reports_errors
def run(scenarios, seed, vcpus, trace_path, junit_path, as_json, quiet, expect_digest, open_viewer):
    """Run each SCENARIO on its own machine; exit 0 only when every expectation holds."""
    if expect_digest and len(scenarios) != 1:
        raise ConfigError(f"--expect-digest needs exactly one scenario, got {len(scenarios)}")
    loaded = [load_scenario(path, vcpus=vcpus, seed=seed) for path in scenarios]
    results = _run_all(loaded, progress=len(loaded) > 1 and not (quiet or as_json))
    if trace_path:
        _write_traces(results, Path(trace_path))
    if junit_path:
        Path(junit_path).write_text(junit_xml(results))
    digest_ok = expect_digest is None or results[0].digest == expect_digest
    if as_json:
        click.echo(json.dumps([_as_dict(result) for result in results], indent=2))
    else:
        for result in results:
            _report(result, quiet=quiet)
        if not digest_ok:
            out.print(f"[red]digest {results[0].digest} differs from the expected {escape(expect_digest)}[/red]")
        if len(results) > 1:
            passed = sum(result.ok for result in results)
            colour = "green" if passed == len(results) else "red"
            out.print(f"[{colour}]{passed} of {len(results)} scenarios passed[/{colour}]")
    if open_viewer:
        _view(results, Path(trace_path) if trace_path else None)
    sys.exit(0 if digest_ok and all(result.ok for result in results) else 1)


def _run_all(scenarios, *, progress: bool) -> list[ScenarioResult]:
    if not progress:
        return [run_scenario(scenario) for scenario in scenarios]
    results = []
    with Progress(console=out, transient=True) as bar:
        task = bar.add_task("scenarios", total=len(scenarios))
        for scenario in scenarios:
            bar.update(task, description=escape(scenario.name))
            results.append(run_scenario(scenario))
            bar.advance(task)
    return results


def _write_traces(results: list[ScenarioResult], path: Path) -> None:
    if len(results) == 1:
        results[0].session.machine.trace.write(path)
        return
    path.mkdir(parents=True, exist_ok=True)
    for result in results:
        result.session.machine.trace.write(_trace_file(path, result))


def _trace_file(folder: Path, result: ScenarioResult) -> Path:
    """Where a scenario's trace goes in a folder of traces: STEM.jsonl."""
    return folder / f"{result.scenario.path.stem}.jsonl"


def _view(results: list[ScenarioResult], trace_path: Path | None) -> None:
    """Open the viewer on the first failed scenario's trace (else the first's)."""
    shown = next((result for result in results if not result.ok), results[0])
    if trace_path is None:
        trace_path = _trace_file(Path(tempfile.mkdtemp(prefix="xsplice-emu-")), shown)
        shown.session.machine.trace.write(trace_path)
    elif len(results) > 1:
        trace_path = _trace_file(trace_path, shown)
    view_trace(trace_path)


def _report(result: ScenarioResult, *, quiet: bool) -> None:
    scenario = result.scenario
    verdict = "[green]PASS[/green]" if result.ok else "[red]FAIL[/red]"
    if quiet:
        out.print(f"{verdict} {escape(str(scenario.path))}  digest {result.digest[:16]}")
    else:
        table = Table(title=f"{escape(scenario.name)} ({escape(str(scenario.path))}, "
                            f"{scenario.machine.vcpus} vCPUs, seed {scenario.machine.seed})", title_justify="left")
        for column in ("step", "command", "rc", "result", "virtual latency"):
            table.add_column(column, justify="right" if column in ("step", "virtual latency") else "left")
        for step in result.steps:
            outcome = "[green]ok[/green]" if step.ok else "[red]FAIL[/red]"
            table.add_row(str(step.number), escape(step.command), step.rc or "", outcome, _latency(step.latency_ns))
        out.print(table)
        out.print(f"{verdict}  virtual time {result.virtual_ns / 1e6:.3f} ms  host {result.host_seconds:.2f} s  "
                  f"digest {result.digest}")
    for step, check in result.failures:
        where = f"  step {step.number} ({escape(step.command)}): "
        if check is None:
            out.print(f"{where}[red]{escape(step.error or '')}[/red]")
        else:
            out.print(f"{where}{escape(check.what)}: expected [green]{escape(repr(check.expected))}[/green], "
                      f"got [red]{escape(repr(check.got))}[/red]")
    if not result.ok:
        out.print(f"  reproduce: {escape(result.reproduce)}")


def _latency(ns: int | None) -> str:
    if ns is None:
        return ""
    return f"{ns / 1e6:g} ms" if ns >= 1_000_000 else f"{ns / 1e3:.1f} us"


def _as_dict(result: ScenarioResult) -> dict:
    scenario = result.scenario
    return {
        "path": str(scenario.path), "name": scenario.name, "ok": result.ok,
        "vcpus": scenario.machine.vcpus, "seed": scenario.machine.seed,
        "digest": result.digest, "virtual_ns": result.virtual_ns, "host_seconds": round(result.host_seconds, 3),
        "reproduce": result.reproduce,
        "steps": [{"step": step.number, "kind": step.kind, "command": step.command, "rc": step.rc, "ok": step.ok,
                   "latency_ns": step.latency_ns, "error": step.error,
                   "checks": [{"what": c.what, "expected": c.expected, "got": c.got, "ok": c.ok} for c in step.checks]}
                  for step in result.steps],
    }
