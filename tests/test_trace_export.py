"""`xsplice-emu trace export`: Chrome Trace Event JSON that Perfetto accepts."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest
from click.testing import CliRunner
from helpers import hello_uploaded

from xsplice_emu import Machine, MachineConfig
from xsplice_emu.arch.x86_64 import NMI_VECTOR
from xsplice_emu.cli import main
from xsplice_emu.cli.trace import trace
from xsplice_emu.livepatch import Action


@pytest.fixture(scope="module")
def exported(image, payloads, tmp_path_factory):
    """A 72-vCPU apply of hello world with an NMI in its window, exported through the CLI."""
    machine, livepatch = hello_uploaded(image, vcpus=72, seed=3)
    livepatch.action("hello", Action.APPLY)
    machine.run_for(2_000)
    machine.send_interrupt(5, NMI_VECTOR)
    machine.run_for(1_000_000)
    assert livepatch.collect().rc == 0
    folder = tmp_path_factory.mktemp("export")
    machine.trace.write(folder / "run.jsonl")
    result = CliRunner().invoke(trace, ["export", str(folder / "run.jsonl"), "-o", str(folder / "run.json")])
    assert result.exit_code == 0, result.output
    document = json.loads((folder / "run.json").read_text())
    assert f": {len(document['traceEvents'])} events," in result.stdout  # what it wrote, not what it read
    return document


def _ns(us) -> int:
    return round(us * 1000)


def test_one_named_ordered_track_per_vcpu_plus_the_controller(exported):
    """73 tracks: the controller first, then vCPU 0..71, each named and given its sort index."""
    assert exported["displayTimeUnit"] == "ns" and exported["otherData"]["vcpus"] == 72
    events = exported["traceEvents"]
    names = {e["tid"]: e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    order = {e["tid"]: e["args"]["sort_index"] for e in events if e["ph"] == "M" and e["name"] == "thread_sort_index"}
    assert len(names) == 73 and names[0] == "controller" and names[72] == "vCPU 71"
    assert sorted(names, key=order.get) == list(range(73))
    assert {e["tid"] for e in events if e["ph"] == "X"} == set(names)


def test_slices_nest_on_every_track(exported):
    """On every track each slice lies inside the enclosing one (a stack per tid never overlaps)."""
    by_tid = defaultdict(list)
    for e in exported["traceEvents"]:
        if e["ph"] == "X":
            by_tid[e["tid"]].append((_ns(e["ts"]), _ns(e["ts"]) + _ns(e["dur"]), e["name"]))
    for tid, slices in by_tid.items():
        stack: list[int] = []
        for start, end, name in sorted(slices, key=lambda s: (s[0], -s[1])):
            assert start <= end, (tid, name)
            while stack and stack[-1] <= start:
                stack.pop()
            assert not stack or end <= stack[-1], (tid, name, start, end, stack[-1])
            stack.append(end)


def test_rendezvous_shown_on_controller_and_vcpus(exported):
    """The controller holds the action, its phases and the patch window; each follower is parked in it."""
    events = exported["traceEvents"]
    controller = {e["name"]: e for e in events if e["ph"] == "X" and e["tid"] == 0}
    assert {"apply hello", "CPU phase", "IRQ phase", "patch window"} <= set(controller)
    assert controller["apply hello"]["args"]["rc"] == 0
    window = controller["patch window"]
    [patch] = [e for e in events if e["ph"] == "i" and e["name"] == "patch xen_extra_version"]
    assert _ns(window["ts"]) <= _ns(patch["ts"]) <= _ns(window["ts"]) + _ns(window["dur"])
    parked_tids = {e["tid"] for e in events if e["ph"] == "X" and e["name"] == "parked"
                   and _ns(e["ts"]) <= _ns(patch["ts"]) <= _ns(e["ts"]) + _ns(e["dur"])}
    assert parked_tids == set(range(1, 73)) - {patch["tid"]}
    counts = [e["args"]["parked"] for e in events if e["ph"] == "C"]
    assert max(counts) == 71


def test_flows_from_the_kick_to_each_arrival_and_the_lost_nmi(exported):
    """A flow arrow runs from the master's kick to each of the 71 other vCPUs; the NMI in the window is 'lost'."""
    events = exported["traceEvents"]
    starts = {e["id"]: e for e in events if e["ph"] == "s"}
    ends = {e["id"]: e for e in events if e["ph"] == "f"}
    assert len(starts) == len(ends) == 71 and starts.keys() == ends.keys()
    assert {e["tid"] for e in starts.values()} == {1}
    assert {e["tid"] for e in ends.values()} == set(range(2, 73))
    assert all(_ns(starts[i]["ts"]) <= _ns(ends[i]["ts"]) for i in starts)
    [nmi] = [e for e in events if e["ph"] == "i" and e["cat"] == "nmi"]
    assert nmi["name"] == "NMI lost" and nmi["tid"] == 6 and nmi["args"]["lost"] is True
    assert any(e["ph"] == "i" and e["name"] == "NMI -> vCPU 5" for e in events)


def test_export_to_a_missing_directory_is_one_line_exit_2(tmp_path, image):
    """`trace export -o /missing/x.json`: refused before any event is converted, one line, exit 2."""
    machine = Machine(image, config=MachineConfig(vcpus=1))
    machine.run_for(100_000)
    machine.trace.write(tmp_path / "t.jsonl")
    result = CliRunner().invoke(trace, ["export", str(tmp_path / "t.jsonl"),
                                       "-o", str(tmp_path / "missing" / "x.json")])
    assert result.exit_code == 2
    assert result.stderr == f"error: {tmp_path}/missing/x.json: cannot write there: no directory {tmp_path}/missing\n"


def test_export_over_its_own_input_is_refused_and_the_trace_kept(tmp_path, image):
    """`trace export t.jsonl -o t.jsonl`: one line naming the input, exit 2, the trace unchanged."""
    path = tmp_path / "t.jsonl"
    assert CliRunner().invoke(main, ["boot", "--ms", "1", "-q", "--trace", str(path)]).exit_code == 0
    before = path.read_bytes()
    result = CliRunner().invoke(main, ["trace", "export", str(path), "-o", str(path)])
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert f"cannot write there: it is the input {path}" in result.output
    assert path.read_bytes() == before
