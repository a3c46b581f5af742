"""The safety oracle: each fault shows its violation, the same scenario without the fault shows none, Xen's
rendezvous gives none on 72 and 256 busy vCPUs, and the oracle can fail."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest
from click.testing import CliRunner
from helpers import PAYLOADS, ROOT

from xsplice_emu.cli import main
from xsplice_emu.control.session import Session
from xsplice_emu.livepatch import Action
from xsplice_emu.scenario import load_scenario, run_scenario
from xsplice_emu.tracing import EventKind

FAULTS = {  # scenario -> the check its fault makes fire
    "fault_unsafe_patch": "torn",
    "fault_patch_from_irq": "active",
    "fault_drop_flush": "stale",
    "fault_nmi_storm": "nmi_path",
}
FAULT_FLAG = re.compile(r" --(unsafe|from-irq)")


def _run(*args: str):
    return CliRunner().invoke(main, ["run", *map(str, args)])


def _without_fault(text: str, vcpus: int) -> str:
    """The scenario with its fault taken out (a `# fault` step dropped, or its fault flag), expecting no
    violation; steps on vCPUs the machine lacks dropped too."""
    blocks = text.split("[[step]]")
    kept = [blocks[0]]
    for block in blocks[1:]:
        if "# fault" in block and not FAULT_FLAG.search(block):
            continue
        if any(int(n) >= vcpus for n in re.findall(r"vcpu = (\d+)", block)):
            continue
        block = FAULT_FLAG.sub("", block)
        block = re.sub(r"violations = \{ \w+ = \{ at_least = 1 \} \}", "violations = 0", block)
        kept.append(block)
    return "[[step]]".join(kept)


@pytest.mark.parametrize("name", FAULTS)
def test_each_fault_scenario_shows_its_violation_in_the_trace(payloads, name, tmp_path):
    """The scenario passes, and its trace holds `violation` events of that check, on a vCPU, naming the action."""
    trace = tmp_path / "t.jsonl"
    result = _run(ROOT / "scenarios" / f"{name}.toml", "--trace", trace, "-q")
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in trace.read_text().splitlines()[1:]]
    found = [e for e in events if e["kind"] == "violation"]
    assert {e["check"] for e in found} >= {FAULTS[name]}
    first = next(e for e in found if e["check"] == FAULTS[name])
    assert first["vcpu"] is not None and first["action"].split()[0] == "apply"
    assert first["walk"] == "frame pointers"  # the firmware keeps them: its stacks are walked exactly


@pytest.mark.parametrize("vcpus", [1, 8, pytest.param(72, marks=pytest.mark.slow)])
@pytest.mark.parametrize("name", FAULTS)
def test_the_same_scenario_without_its_fault_is_safe(payloads, name, vcpus, tmp_path):
    """Fault taken out, on 1, 8 and 72 vCPUs: every expectation holds, and no violation at all."""
    path = tmp_path / "scenarios" / f"{name}.toml"
    path.parent.mkdir()
    path.write_text(_without_fault((ROOT / "scenarios" / f"{name}.toml").read_text(), vcpus))
    (tmp_path / "payloads").symlink_to(PAYLOADS.parent)
    result = run_scenario(load_scenario(path, vcpus=vcpus))
    assert result.ok, [(step.command, step.error, step.checks) for step in result.steps if not step.ok]
    assert not result.session.violations
    assert not result.session.machine.trace.of_kind(EventKind.VIOLATION)


@pytest.mark.slow
@pytest.mark.parametrize("vcpus", [72, 256])
def test_xens_sequence_on_busy_vcpus_has_no_violation(payloads, vcpus):
    """Xen's test sequence with every vCPU running the busy load: rendezvous on empty stacks, zero violations."""
    scenario = load_scenario(ROOT / "scenarios" / "xen_test_sequence.toml", vcpus=vcpus)
    session = Session(vcpus=vcpus, seed=1, base=scenario.path.parent)
    session.machine.call_all("call_set_busy", 1)
    session.advance(200_000)
    for step in scenario.steps:
        done = step.run(session)
        assert all(check.ok for check in done.checks), (step.describe(), done.checks)
    assert session.livepatch.results and not session.violations


def test_a_jump_written_in_the_wrong_order_is_reported(payloads):
    """The oracle can fail: a hand-made unsafe patch of busy_chunk that writes the rel32 first and the 0xe9
    last, with scheduling points between, while two vCPUs run it: torn, on both."""
    session = Session(vcpus=2, seed=1)
    machine, oracle = session.machine, session.livepatch.oracle
    assert oracle is not None
    for vcpu in (0, 1):
        machine.call(vcpu, "call_set_busy", 1)
    machine.run_for(500_000)
    target = machine.image.address("schedule.c#busy_chunk")
    jump = machine.arch.jump(target, machine.payload_space[0])
    counts: Counter[str] = Counter()
    oracle.open("wrong-order", counts, [("busy_chunk", target)])
    for offset in reversed(range(len(jump))):
        oracle.writing(None, target + offset, 1, None, "busy_chunk")
        machine.write_code_unsynchronised(target + offset, jump[offset:offset + 1])
        machine.run_for(1_000)
    machine.run_for(100_000)
    violations = machine.trace.of_kind(EventKind.VIOLATION)
    assert counts["torn"] >= 2 and {event.vcpu for event in violations if event.fields["check"] == "torn"} == {0, 1}
    assert all(event.fields["symbol"].startswith("schedule.c#busy_chunk") for event in violations)


@pytest.mark.slow
def test_an_active_violation_names_the_frame_it_found(payloads):
    """From an interrupt handler, the busy vCPUs' stacks go back through the interrupt into busy_chunk (a leaf
    with no frame record of its own) and on into busy_task, walked by frame pointers."""
    session = Session(vcpus=2, seed=1)
    for vcpu in (0, 1):
        session.machine.call(vcpu, "call_set_busy", 1)
    session.advance(500_000)
    session.livepatch.upload("busy", (PAYLOADS / "busy_chunk.livepatch").read_bytes())
    result = session.livepatch.run_action("busy", Action.APPLY, from_irq=True)
    assert result is not None and result.rc == 0 and result.violations["active"] >= 1
    event = session.machine.trace.of_kind(EventKind.VIOLATION)[0]
    assert event.fields["check"] == "active" and event.fields["symbol"].startswith("schedule.c#busy_chunk+")
    assert event.fields["walk"] == "frame pointers"
    assert event.fields["backtrace"].endswith("common_interrupt+0x34 < schedule.c#busy_chunk+0x70 < busy_task+0x27")


def test_without_the_oracle_nothing_is_checked(payloads):
    """--no-oracle: the fault scenario's violation expectation fails (0 seen), and --json says the oracle was off."""
    result = _run(ROOT / "scenarios" / "fault_drop_flush.toml", "--no-oracle", "--json")
    assert result.exit_code == 1
    report = json.loads(result.output)[0]
    assert report["violations"] is None and report["reproduce"].endswith("--no-oracle")


@pytest.mark.slow
def test_an_unsafe_patch_is_caught_as_torn_on_every_seed_tried(payloads):
    """The naive text_poke on the busy machine: torn on each of seeds 1-5 (not one lucky schedule)."""
    for seed in range(1, 6):
        result = run_scenario(load_scenario(ROOT / "scenarios" / "fault_unsafe_patch.toml", seed=seed))
        assert result.ok and result.session.violations["torn"] >= 1, seed


def test_violations_reach_the_summary_and_the_perfetto_export(payloads, tmp_path):
    """trace summary counts the action's violations; trace export marks each one on its vCPU's track."""
    trace, exported = tmp_path / "t.jsonl", tmp_path / "t.json"
    assert _run(ROOT / "scenarios" / "fault_patch_from_irq.toml", "--trace", trace, "-q").exit_code == 0
    summary = CliRunner().invoke(main, ["trace", "summary", str(trace), "--json"])
    assert json.loads(summary.output)[0]["violations"] == [["active", 2]]
    assert CliRunner().invoke(main, ["trace", "export", str(trace), "-o", str(exported)]).exit_code == 0
    marks = [e for e in json.loads(exported.read_text())["traceEvents"] if e.get("cat") == "oracle"]
    assert len(marks) == 2 and all(m["name"] == "violation: active at schedule.c#busy_chunk+0x70" for m in marks)
