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
from ..explore.plan import load_replay
from ..files import check_destination, check_new_directory, file_errors, write_file
from ..provision.debian import load_xen_syms
from ..scenario import Scenario, ScenarioResult, junit_xml, load_scenario, report_names, run_scenario
from ..scenario.discovery import scenario_files
from .common import (
    DIGEST_SHOWN,
    SEED,
    VCPUS,
    clock_options,
    engine_option,
    oracle_option,
    out,
    reports_errors,
    xen_syms_option,
)
from .view import view_trace


@click.command()
@click.argument("scenarios", nargs=-1, required=True, type=click.Path())
@click.option("--seed", type=SEED, help="Override every scenario's seed.")
@click.option("--vcpus", type=VCPUS, help="Override every scenario's vCPU count.")
@xen_syms_option
@clock_options(overrides=True)
@engine_option
@oracle_option
@click.option("--replay", "replay_path", type=click.Path(dir_okay=False),
              help="Run the scenario as this run of an exploration ran (its schedule and faults; one scenario).")
@click.option("--trace", "trace_path", type=click.Path(),
              help="Write the JSON Lines trace here; for several scenarios a directory of NAME.jsonl, NAME the file's "
                   "stem, with parent folders (a-s, b-s) where stems repeat.")
@click.option("--junit", "junit_path", type=click.Path(dir_okay=False), help="Write JUnit XML here.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON instead of tables.")
@click.option("-q", "--quiet", is_flag=True, help="One line per scenario.")
@click.option("--expect-digest", help="Fail unless the trace digest starts with this (16 hex digits or more, "
                                     "as `run -q` and `boot` print; one scenario only).")
@click.option("--view", "open_viewer", is_flag=True, help="Then open the trace viewer (on the first failed scenario).")
@reports_errors
def run(scenarios, seed, vcpus, xen_syms, engine, clock_mhz, timer_hz, no_oracle, replay_path, trace_path, junit_path,
        as_json, quiet, expect_digest, open_viewer):
    """Run each SCENARIO on its own machine; exit 0 only when every expectation holds. A directory stands for
    the scenario files under it (*.toml with [[step]] tables; other TOML files are left out)."""
    scenarios = tuple(map(str, scenario_files(scenarios)))
    if expect_digest is not None and (len(scenarios) != 1 or len(expect_digest) < DIGEST_SHOWN):
        raise ConfigError(f"--expect-digest needs one scenario and {DIGEST_SHOWN} or more hex digits")
    if replay_path is not None and len(scenarios) != 1:
        raise ConfigError("--replay needs one scenario: the one the exploration ran")
    if xen_syms is not None:
        load_xen_syms(xen_syms)  # one error before any scenario runs
    names = report_names([Path(path) for path in scenarios])
    _check_destinations(trace_path, junit_path, scenarios)
    loaded: list[tuple[str, Scenario | ConfigError]] = []
    for name, path in zip(names, scenarios, strict=True):
        try:
            scenario = load_scenario(path, vcpus=vcpus, seed=seed, xen_syms=xen_syms,
                                     oracle=False if no_oracle else None, clock_mhz=clock_mhz, timer_hz=timer_hz,
                                     engine=engine)
            loaded.append((name, scenario if replay_path is None else load_replay(replay_path, scenario)))
        except ConfigError as exc:
            if not junit_path:  # checked before anything runs; with a report for CI, the others still run
                raise
            click.echo(f"error: {exc}", err=True)
            loaded.append((name, exc))
    cases = _run_all(loaded, progress=len(loaded) > 1 and not (quiet or as_json))
    results = [result for _, result in cases if isinstance(result, ScenarioResult)]
    if trace_path:
        _write_traces(cases, Path(trace_path))
    if junit_path:
        write_file(junit_path, junit_xml(cases))
    if len(results) < len(cases):
        sys.exit(2)
    digest_ok = expect_digest is None or results[0].digest.startswith(expect_digest)
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
        _view(cases, Path(trace_path) if trace_path else None)
    sys.exit(0 if digest_ok and all(result.ok for result in results) else 1)


def _check_destinations(trace_path: str | None, junit_path: str | None, scenarios: tuple[str, ...]) -> None:
    """Refuse, before any run, a trace or JUnit destination that cannot be written (or is a scenario)."""
    if junit_path:
        check_destination(junit_path, inputs=scenarios)
    if not trace_path:
        return
    if len(scenarios) == 1:
        check_destination(trace_path, inputs=scenarios)
    elif Path(trace_path).suffix == ".jsonl" and not Path(trace_path).is_dir():
        raise ConfigError(f"--trace {trace_path}: several scenarios need a directory, not a .jsonl file")
    else:
        check_new_directory(trace_path)


def _run_all(cases, *, progress: bool) -> list[tuple[str, ScenarioResult | ConfigError]]:
    """Each loaded scenario run, in order; the bad files stay as they are."""
    def one(scenario):
        return scenario if isinstance(scenario, ConfigError) else run_scenario(scenario)

    if not progress:
        return [(name, one(scenario)) for name, scenario in cases]
    ran: list[tuple[str, ScenarioResult | ConfigError]] = []
    with Progress(console=out, transient=True) as bar:
        task = bar.add_task("scenarios", total=len(cases))
        for name, scenario in cases:
            bar.update(task, description=escape(name))
            ran.append((name, one(scenario)))
            bar.advance(task)
    return ran


def _write_traces(cases, path: Path) -> None:
    if len(cases) == 1:
        if isinstance(cases[0][1], ScenarioResult):
            cases[0][1].session.machine.trace.write(path)
        return
    with file_errors(path, "make the directory"):
        path.mkdir(exist_ok=True)
    for name, result in cases:
        if isinstance(result, ScenarioResult):
            result.session.machine.trace.write(path / f"{name}.jsonl")


def _view(cases, trace_path: Path | None) -> None:
    """Open the viewer on the first failed scenario's trace, on its first failed step (else on the first
    scenario's first action). Without --trace the file is a temporary one, removed when the viewer closes."""
    name, shown = next(((name, result) for name, result in cases if not result.ok), cases[0])
    failed = shown.failures[0][0] if shown.failures else None
    step = None if failed is None else (failed.started_ns, failed.ended_ns)
    message = "" if failed is None else f"step {failed.number} failed: {failed.command}"
    if trace_path is not None:
        view_trace(trace_path / f"{name}.jsonl" if len(cases) > 1 else trace_path, step=step, message=message)
        return
    with tempfile.TemporaryDirectory(prefix="xsplice-emu-") as directory:
        trace_path = Path(directory) / f"{name}.jsonl"
        shown.session.machine.trace.write(trace_path)
        view_trace(trace_path, step=step, message=message)


def _report(result: ScenarioResult, *, quiet: bool) -> None:
    scenario = result.scenario
    verdict = "[green]PASS[/green]" if result.ok else "[red]FAIL[/red]"
    if quiet:
        out.print(f"{verdict} {escape(str(scenario.path))}  digest {result.digest[:DIGEST_SHOWN]}")
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
                  f"{_violations(result)}digest {result.digest}")
    for line in result.failure_lines():
        out.print(f"  [red]{escape(line)}[/red]" if line.startswith(" ") else f"  {escape(line)}")
    if not result.ok:
        out.print(f"  reproduce: {escape(result.reproduce)}")


def _violations(result: ScenarioResult) -> str:
    """`violations torn 2, stale 1  `, `violations 0  `, or `oracle off  `."""
    if result.session.livepatch.oracle is None:
        return "oracle off  "
    counts = result.session.violations
    return "violations " + (", ".join(f"{check} {count}" for check, count in sorted(counts.items())) or "0") + "  "


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
        "violations": (None if result.session.livepatch.oracle is None
                       else dict(sorted(result.session.violations.items()))),
        "steps": [{"step": step.number, "kind": step.kind, "command": step.command, "rc": step.rc, "ok": step.ok,
                   "latency_ns": step.latency_ns, "error": step.error,
                   "checks": [{"what": c.what, "expected": c.expected, "got": c.got, "ok": c.ok} for c in step.checks]}
                  for step in result.steps],
    }
