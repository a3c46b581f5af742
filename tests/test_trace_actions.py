"""Each action of a run, as `trace summary`, the viewer's `s` screen and the Perfetto export show it, is the
action the run did: its own rc and its own patch bytes, whatever the vCPU count."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from helpers import ROOT

from xsplice_emu.cli.trace import trace
from xsplice_emu.scenario import load_scenario, run_scenario
from xsplice_emu.tracing import TraceFile, export_chrome
from xsplice_emu.viewer.actions import actions

SCENARIOS = sorted((ROOT / "scenarios").glob("*.toml")) + sorted((ROOT / "scenarios" / "explore").glob("*.toml"))
DEMO = ROOT / "scenarios" / "xen_test_sequence.toml"
RUNS = [(path, None) for path in SCENARIOS] + [(DEMO, vcpus) for vcpus in (1, 4, 16, 32)]


@pytest.fixture(scope="module", params=RUNS, ids=lambda run: run[0].stem + (f"-{run[1]}" if run[1] else ""))
def run(request, payloads, tmp_path_factory):
    """One run of a scenario (the demo's also at 1, 4, 16 and 32 vCPUs): its per-action results and trace."""
    path, vcpus = request.param
    result = run_scenario(load_scenario(path, vcpus=vcpus))
    trace_path = tmp_path_factory.mktemp("actions") / "run.jsonl"
    result.session.machine.trace.write(trace_path)
    done = [(r.action, r.name, r.rc, r.bytes_written) for r in result.session.livepatch.results
            if r.master is not None]  # `apply --unsafe` writes bytes with no rendezvous: not an action of the trace
    return done, trace_path


def test_trace_summary_shows_each_action_with_its_own_rc_and_bytes(run):
    """`trace summary --json` lists every action with the rc and patch bytes the run reported for it."""
    done, path = run
    result = CliRunner().invoke(trace, ["summary", "--json", str(path)])
    assert result.exit_code == 0, result.output
    shown = [(a["action"], a["payload"], a["rc"], a["bytes_patched"]) for a in json.loads(result.output)]
    assert shown == done


def test_viewer_summary_screen_shows_each_action_with_its_own_rc_and_bytes(run):
    """The viewer's `s` screen (its actions, each summarised from its own events) agrees with the run."""
    done, path = run
    shown = [(a.action, a.payload, a.rc, a.bytes_patched) for a in actions(TraceFile.open(path))]
    assert shown == done


def test_perfetto_action_slices_carry_each_actions_own_rc_and_bytes(run, tmp_path):
    """The export's action slices on the controller track carry the run's rc and bytes, in order."""
    done, path = run
    export_chrome(TraceFile.open(path), tmp_path / "run.json")
    records = json.loads((tmp_path / "run.json").read_text())["traceEvents"]
    slices = [r for r in records if r.get("cat") == "action"]
    assert [(s["name"], s["args"]["rc"], s["args"]["bytes_patched"]) for s in slices] == \
        [(f"{action} {name}", rc, written) for action, name, rc, written in done]


def test_an_action_is_requested_after_the_previous_one_is_released(run):
    """No action's request is stamped before the previous action's release."""
    _, path = run
    summaries = list(actions(TraceFile.open(path)))
    for previous, following in zip(summaries, summaries[1:], strict=False):
        assert previous.released_ns is None or following.requested_ns >= previous.released_ns
