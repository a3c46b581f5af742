"""The trace file: its documented format, its kinds, its order and its digest."""

from __future__ import annotations

import errno
import hashlib
import itertools
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import hello_uploaded, upload

from xsplice_emu import Machine, Trace
from xsplice_emu.arch.x86_64 import NMI_VECTOR
from xsplice_emu.cli.trace import trace
from xsplice_emu.livepatch import Action
from xsplice_emu.tracing import HEADER, EventKind
from xsplice_emu.tracing.reader import TraceFile
from xsplice_emu.tracing.spans import State, lane_spans, state_spans
from xsplice_emu.tracing.summary import ActionSummary, Arrival
from xsplice_emu.tracing.trace import CHECK_EVENTS

DOC = Path(__file__).resolve().parent.parent / "docs" / "trace-format.md"


def busy_run(image, path: Path, *, seed: int = 5) -> tuple[Machine, list]:
    """8 vCPUs, one busy: hello world applied with an NMI in the window, reverted and
    unloaded, then a NOP apply that times out on a stalled vCPU. Writes the trace to `path`."""
    machine, livepatch = hello_uploaded(image, vcpus=8, seed=seed)
    machine.call(3, "call_set_busy", 1)
    livepatch.action("hello", Action.APPLY)
    machine.run_for(1_000)
    machine.send_interrupt(1, NMI_VECTOR)
    machine.run_for(1_000_000)
    results = [livepatch.collect(), livepatch.run_action("hello", Action.REVERT)]
    livepatch.action("hello", Action.UNLOAD)
    upload(livepatch, "nop", "xen_nop.livepatch")
    machine.post_call(2, "call_stall_irqs_off", 10_000_000)
    machine.run_for(10_000)
    results.append(livepatch.run_action("nop", Action.APPLY, timeout_ns=5_000_000))
    machine.run_for(6_000_000)
    machine.trace.write(path)
    return machine, results


@pytest.fixture(scope="module")
def run(image, payloads, tmp_path_factory):
    path = tmp_path_factory.mktemp("trace") / "run.jsonl"
    machine, results = busy_run(image, path)
    return machine, results, path


Fields = list[tuple[str, str]]


def _documented_kinds(doc: str) -> dict[str, Fields]:
    """Each `### \\`kind\\`` section of `doc` and the (field, type) rows of its table."""
    kinds: dict[str, Fields] = {}
    current = None
    for line in doc.splitlines():
        heading = re.fullmatch(r"### `(\w+)`", line)
        if heading:
            current = kinds.setdefault(heading.group(1), [])
        row = re.fullmatch(r"\| `(\w+)` \| ([\w?]+) \| .*", line)
        if row and current is not None:
            current.append((row.group(1), row.group(2)))
    return kinds


def _registered() -> dict[str, Fields]:
    """Each EventKind and its (field, type) pairs."""
    return {kind.value: [(f.name, f.type) for f in kind.fields] for kind in EventKind}


def _doc_problems(documented: dict[str, Fields], registered: dict[str, Fields]) -> list[str]:
    """Where the doc's kinds and fields differ from the registry's, one line each."""
    problems = [f"{name}: in the registry, not in the doc" for name in registered if name not in documented]
    problems += [f"{name}: in the doc, not in the registry" for name in documented if name not in registered]
    return problems + [f"{name}: the doc has fields {documented[name]}, the registry {fields}"
                       for name, fields in registered.items() if name in documented and documented[name] != fields]


def test_doc_and_registry_list_the_same_kinds_and_fields():
    """docs/trace-format.md documents every EventKind with exactly its fields and types, and the header's."""
    assert _doc_problems(_documented_kinds(DOC.read_text()), _registered()) == []
    header_rows = re.findall(r"^\| `(\w+)` \| (\w+) \|", DOC.read_text().split("## Event lines")[0], re.M)
    assert header_rows == [(f.name, f.type) for f in HEADER]


def test_a_kind_without_a_doc_entry_or_with_other_fields_is_reported():
    """A kind added to the registry but not to the doc, or a field typed differently, is named by the check."""
    documented = _documented_kinds(DOC.read_text())
    assert _doc_problems(documented, {**_registered(), "teleport": [("to", "int")]}) == [
        "teleport: in the registry, not in the doc"]
    retyped = _documented_kinds(DOC.read_text().replace("| `rc` | int |", "| `rc` | str |"))
    assert _doc_problems(retyped, _registered()) == [
        "released: the doc has fields [('rc', 'str')], the registry [('rc', 'int')]"]


def test_emit_checks_kind_and_fields_when_switched_on(monkeypatch):
    """With XSPLICE_EMU_CHECK_EVENTS=1 a bad event raises where it is emitted; without it, emit only records."""
    monkeypatch.setenv(CHECK_EVENTS, "1")
    checked = Trace({})
    with pytest.raises(ValueError, match="'teleport' is not an EventKind"):
        checked.emit(0, 0, "teleport")
    with pytest.raises(ValueError, match="'halt' is not an EventKind"):
        checked.emit(0, 0, "halt", interrupts_enabled=True)
    with pytest.raises(ValueError, match="nmi event has an unknown field 'lost'"):
        checked.emit(0, 0, EventKind.NMI, vector=NMI_VECTOR, sender=None, lost=True)
    with pytest.raises(ValueError, match="released event has no field 'rc'"):
        checked.emit(0, 0, EventKind.RELEASED)
    checked.emit(5, 1, EventKind.NMI_LOST)
    monkeypatch.delenv(CHECK_EVENTS)
    unchecked = Trace({})
    unchecked.emit(0, 0, "teleport")
    assert [e.kind for e in checked.events + unchecked.events] == [EventKind.NMI_LOST, "teleport"]


def test_every_kind_of_a_real_run_is_registered_and_the_file_validates(run):
    """An apply with an NMI in the window, a revert and a timeout emit only registered kinds; the file validates."""
    machine, _, path = run
    emitted = {event.kind for event in machine.trace.events}
    assert emitted <= set(EventKind)
    for kind in (EventKind.TASK, EventKind.HALT, EventKind.WAKE, EventKind.INTERRUPT, EventKind.NMI,
                 EventKind.NMI_LOST, EventKind.IRET, EventKind.PARK, EventKind.UNPARK, EventKind.IPI,
                 EventKind.IRQ_MASKED, EventKind.IRQ_UNMASKED, EventKind.LEFT, EventKind.QUIESCED, EventKind.PATCH,
                 EventKind.FLUSH, EventKind.ABORT, EventKind.RELEASED, EventKind.NMI_UNMASKED, EventKind.UPLOAD,
                 EventKind.UNLOAD):
        assert kind in emitted, kind
    TraceFile.open(path).validate()
    assert CliRunner().invoke(trace, ["validate", str(path)]).exit_code == 0


def test_file_is_sorted_by_virtual_time_keeping_emission_order_on_ties(run):
    """Lines go by virtual time; each vCPU's events keep the order in which they happened."""
    machine, _, path = run
    lines = path.read_text().splitlines()[1:]
    times = [json.loads(line)["t"] for line in lines]
    assert times == sorted(times)
    by_time = sorted(machine.trace.events, key=lambda e: e.time_ns)
    assert [e.to_json() for e in by_time] == lines


def test_digest_is_the_files_sha256_and_the_same_for_the_same_seed(image, payloads, run, tmp_path):
    """The trace digest hashes exactly the written bytes; the same seed twice gives the same digest."""
    machine, _, path = run
    assert machine.trace.digest == hashlib.sha256(path.read_bytes()).hexdigest()
    again, _ = busy_run(image, tmp_path / "again.jsonl")
    assert again.trace.digest == machine.trace.digest
    other, _ = busy_run(image, tmp_path / "other.jsonl", seed=6)
    assert other.trace.digest != machine.trace.digest


def test_header_tells_how_the_run_was_made(run):
    """The header names format, version, seed, options, firmware build-id, vCPUs, clock and event count."""
    machine, _, path = run
    opened = TraceFile.open(path)
    assert opened.header["version"] == 4 and opened.header["seed"] == 5 and opened.vcpus == 8
    assert opened.header["firmware_build_id"] == machine.image.build_id.hex()
    assert opened.header["hypervisor_build_id"] == machine.image.build_id.hex()  # no --xen-syms: the firmware
    assert opened.header["clock_hz"] == machine.config.clock_hz == opened.header["options"]["clock_hz"]
    assert len(opened) == opened.header["events"] == len(machine.trace.events)


def test_nmi_in_the_window_is_followed_by_nmi_lost(run):
    """The NMI sent to vCPU 1 while the master masks NMIs is followed by `nmi_lost` at the same time on
    vCPU 1; its state is labelled lost."""
    machine, results, path = run
    events = machine.trace.events
    [nmi] = machine.trace.of_kind(EventKind.NMI)
    lost = events[events.index(nmi) + 1]
    assert (nmi.vcpu, nmi.fields) == (1, {"vector": NMI_VECTOR, "sender": None})
    assert (lost.kind, lost.vcpu, lost.time_ns, lost.fields) == (EventKind.NMI_LOST, 1, nmi.time_ns, {})
    assert machine.trace.of_kind(EventKind.NMI_LOST) == [lost]
    assert [s.label for s in state_spans(TraceFile.open(path)) if s.state is State.NMI] == ["NMI (lost)"]
    assert results[0].nmis_lost == 1


def test_vcpu_states_follow_the_rendezvous(run):
    """Every follower waits parked inside its rendezvous; the master's patch window holds the patch write."""
    machine, results, path = run
    events = list(TraceFile.open(path))
    spans = state_spans(events)
    patch = next(e for e in events if e.kind == EventKind.PATCH)
    master = results[0].master
    [window] = [s for s in spans if s.state is State.WINDOW and s.start_ns <= patch.time_ns <= s.end_ns]
    assert window.vcpu == master
    for vcpu in set(range(8)) - {master}:
        rendezvous = [s for s in spans if s.vcpu == vcpu and s.state is State.RENDEZVOUS
                      and s.start_ns <= patch.time_ns <= s.end_ns]
        parked = [s for s in spans if s.vcpu == vcpu and s.state is State.PARKED
                  and s.start_ns <= patch.time_ns <= s.end_ns]
        assert len(rendezvous) == len(parked) == 1 and parked[0].depth > rendezvous[0].depth, vcpu
    assert {s.label for s in spans if s.vcpu == 3 and s.state is State.TASK} >= {"busy_task", "workload_task"}


def test_lanes_tile_each_vcpus_time(run):
    """Per vCPU, the innermost-state lane is a sequence of spans that never overlap."""
    _, _, path = run
    for vcpu, spans in lane_spans(TraceFile.open(path)).items():
        assert all(a.end_ns <= b.start_ns for a, b in itertools.pairwise(spans)), vcpu
        assert all(s.start_ns < s.end_ns for s in spans)


def test_summary_of_the_run(run):
    """`trace summary`: apply rc 0 with its master, latencies, 5 bytes and the lost NMI; the timeout is -EBUSY."""
    machine, results, path = run
    result = CliRunner().invoke(trace, ["summary", "--json", str(path)])
    assert result.exit_code == 0, result.output
    applied, reverted, stalled = json.loads(result.stdout)
    assert (applied["action"], applied["rc"], applied["master"]) == ("apply", 0, results[0].master)
    assert 0 < applied["parked_latency_ns"] < applied["release_latency_ns"]
    assert abs(applied["parked_latency_ns"] - results[0].parked_ns) <= 1
    assert applied["bytes_patched"] == 5 and applied["nmis_lost"] == 1
    first_apply = [e for e in machine.trace.events if e.kind == EventKind.ARRIVED and e.fields["phase"] == "CPU"][:7]
    last = max(first_apply, key=lambda e: (e.time_ns, e.fields["count"]))  # among equal times, the last counted
    slowest = (applied["slowest_vcpu"], applied["slowest_arrival_ns"])
    assert slowest == (last.vcpu, last.time_ns - applied["requested_ns"])
    assert (reverted["action"], reverted["rc"], reverted["bytes_patched"]) == ("revert", 0, 5)
    assert stalled["rc"] == -errno.EBUSY and stalled["abort_reason"] == "timeout in CPU phase (missing: cpu2)"
    assert stalled["bytes_patched"] == 0 and stalled["all_parked_ns"] is None
    table = CliRunner().invoke(trace, ["summary", str(path)])
    assert table.exit_code == 0
    assert "#2 revert hello" in table.stdout and "-16 (EBUSY): timeout in CPU phase" in table.stdout


def test_slowest_of_equal_arrival_times_is_the_last_counted():
    """Arrivals at the same virtual ns: the slowest vCPU is the one that came last in arrival order."""
    summary = ActionSummary("hello", "apply", requested_ns=0, timeout_ns=30_000_000,
                            arrivals=(Arrival(3, 700), Arrival(5, 763), Arrival(1, 763)))
    assert summary.slowest == Arrival(1, 763)
