"""Reading traces lazily, and saying which line of a bad trace is wrong."""

from __future__ import annotations

import json
import resource
import subprocess
import sys

import pytest
from click.testing import CliRunner
from helpers import hello_uploaded

from xsplice_emu import Trace
from xsplice_emu.arch import ARCHITECTURES, X86_64
from xsplice_emu.cli.trace import trace
from xsplice_emu.errors import TraceFormatError
from xsplice_emu.livepatch import Action
from xsplice_emu.tracing import EventKind
from xsplice_emu.tracing.reader import TraceFile


@pytest.fixture(scope="module")
def good(image, payloads, tmp_path_factory):
    """A 4-vCPU apply + revert, written to a file."""
    machine, livepatch = hello_uploaded(image, vcpus=4, seed=2, boot_ns=3_000_000)
    livepatch.run_action("hello", Action.APPLY)
    machine.run_for(500_000)
    livepatch.run_action("hello", Action.REVERT)
    machine.run_for(500_000)
    path = tmp_path_factory.mktemp("good") / "run.jsonl"
    machine.trace.write(path)
    return path


def _parse_all(path):
    """Every event line of the file through json.loads, as (t, vcpu, kind, fields, in_action)."""
    records = [json.loads(line) for line in path.read_text().splitlines()[1:]]
    return [(r.pop("t"), r.pop("vcpu"), r.pop("kind"), r, r.pop("in_action", None)) for r in records]


def _tuples(events):
    return [(e.time_ns, e.vcpu, e.kind, e.fields, e.in_action) for e in events]


def test_window_and_range_queries_match_a_full_parse(good):
    """events(a, b) and window(t0, t1) return exactly what parsing the whole file gives."""
    everything = _parse_all(good)
    opened = TraceFile.open(good)
    assert len(opened) == len(everything)
    assert _tuples(opened.events(10, 60)) == everything[10:60]
    assert _tuples(opened.events(len(everything) - 5)) == everything[-5:]
    assert [opened.time_of(i) for i in range(len(opened))] == [e[0] for e in everything]
    start, end = opened.start_ns, opened.end_ns
    for t0, t1 in ((start, start + 1), (0, end + 1), (2_000_000, 3_000_000), (3_000_100, 3_002_000),
                   (end, end + 10), (end + 1, end + 2)):
        assert _tuples(opened.window(t0, t1)) == [e for e in everything if t0 <= e[0] < t1], (t0, t1)
    assert _tuples(opened) == everything


def test_find_jumps_to_the_next_and_previous_event_of_a_kind(good):
    """find() gives the index of the next (or previous) event of the kinds asked, on a vCPU if asked."""
    everything = _parse_all(good)
    opened = TraceFile.open(good)
    patches = [i for i, e in enumerate(everything) if e[2] == EventKind.PATCH]
    assert len(patches) == 2
    assert opened.find({EventKind.PATCH}) == patches[0]
    assert opened.find({EventKind.PATCH}, patches[0] + 1) == patches[1]
    assert opened.find({EventKind.PATCH}, patches[1] + 1) is None
    assert opened.find({EventKind.PATCH}, len(opened), backward=True) == patches[1]
    parks_on_2 = [i for i, e in enumerate(everything) if e[2] in (EventKind.PARK, EventKind.UNPARK) and e[1] == 2]
    assert opened.find({EventKind.PARK, EventKind.UNPARK}, vcpus={2}) == parks_on_2[0]
    on_1_or_3 = [i for i, e in enumerate(everything) if e[1] in (1, 3) and i > patches[0]]
    assert opened.find(None, patches[0] + 1, vcpus={1, 3}) == on_1_or_3[0]
    assert opened.find(None, len(opened), vcpus={1, 3}, backward=True) == on_1_or_3[-1]


def _bad(good, tmp_path, name, change):
    lines = good.read_text().splitlines(keepends=True)
    path = tmp_path / name
    path.write_text("".join(change(lines)))
    return path


def _set_kind(lines, index, kind):
    record = json.loads(lines[index])
    record["kind"] = kind
    return lines[:index] + [json.dumps(record, separators=(",", ":")) + "\n"] + lines[index + 1:]


@pytest.mark.parametrize("command", ["validate", "export", "summary"])
@pytest.mark.parametrize("name, change, message", [
    ("truncated.jsonl", lambda lines: [*lines[:-1], lines[-1][:-12]], "{n}: truncated line"),
    ("short.jsonl", lambda lines: lines[:-3], "{n}: truncated file: the header announces"),
    ("version.jsonl", lambda lines: [lines[0].replace('"version":4', '"version":3'), *lines[1:]],
     "1: trace format version 3, this reader knows 4"),
    ("unknown.jsonl", lambda lines: _set_kind(lines, 40, "foo"), "41: unknown event kind 'foo'"),
    ("json.jsonl", lambda lines: [*lines[:30], lines[30].replace('"kind":', '"kind" '), *lines[31:]],
     "31: bad JSON: Expecting ':' delimiter"),
    ("fields.jsonl", lambda lines: [*lines[:20], lines[20].replace('"vcpu":', '"vcpu":"x","cpu":'), *lines[21:]],
     "21: \"vcpu\" is 'x', not a vCPU or null"),
    ("action.jsonl", lambda lines: [*lines[:-1], lines[-1].replace('"kind":', '"in_action":0,"kind":')],
     "{n}: \"in_action\" is 0, not an action number (1 or more)"),
    ("order.jsonl", lambda lines: [lines[0], *lines[2:50], lines[1], *lines[50:]], "50: time 0 is before"),
])
def test_bad_trace_is_one_line_naming_the_line(good, tmp_path, command, name, change, message):
    """A broken trace gives exit status != 0 and one line `error: FILE:LINE: ...`, never a traceback."""
    path = _bad(good, tmp_path, name, change)
    lines = path.read_text().splitlines()
    args = [command, str(path)] + (["-o", str(tmp_path / "out.json")] if command == "export" else [])
    result = CliRunner().invoke(trace, args)
    assert result.exit_code not in (0, None) and isinstance(result.exception, SystemExit)
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output
    assert result.stderr.startswith(f"error: {path}:{message.format(n=len(lines))}"), result.stderr
    assert not (tmp_path / "out.json").exists()


def test_reader_error_is_a_config_error(good, tmp_path):
    """Opening a bad file raises TraceFormatError, a ConfigError, with the file and line."""
    path = _bad(good, tmp_path, "bad.jsonl", lambda lines: [lines[0], "not json\n", *lines[2:]])
    with pytest.raises(TraceFormatError, match=rf"^{path}:2: not an event line"):
        TraceFile.open(path)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(TraceFormatError, match=rf"^{empty}:1: empty file"):
        TraceFile.open(empty)


def _summary_with_at_most(path, address_space: int) -> subprocess.CompletedProcess:
    """`xsplice-emu trace summary PATH` in a process that may map at most `address_space` bytes."""
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
    return subprocess.run([sys.executable, "-c", "from xsplice_emu.cli import main; main()", "trace", "summary",
                           str(path)], capture_output=True, text=True, preexec_fn=limit, timeout=60)


@pytest.mark.slow
def test_a_small_trace_is_read_in_a_process_limited_to_4_gib(good):
    """Opening a trace allocates what the file holds, not its 8 GiB size limit."""
    result = _summary_with_at_most(good, 4 << 30)
    assert result.returncode == 0, result.stderr
    assert "#1 apply hello" in result.stdout


@pytest.mark.slow
def test_a_5_gb_file_with_a_garbage_first_line_fails_at_line_1_in_bounded_memory(tmp_path):
    """5 GB (sparse) whose first line is not a header: `:1:` at once, within 4 GiB of address space."""
    path = tmp_path / "huge.jsonl"
    with path.open("wb") as stream:
        stream.write(b"garbage\n")
        stream.truncate(5 << 30)
    result = _summary_with_at_most(path, 4 << 30)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"error: {path}:1: bad JSON")


@pytest.mark.slow
def test_a_bad_line_early_in_a_huge_file_is_named_before_the_rest_is_read(good, tmp_path):
    """A valid header, a garbage line 2, then 5 GB of NULs: `:2: not an event line` within 4 GiB."""
    path = tmp_path / "huge.jsonl"
    header = good.read_bytes().split(b"\n", 1)[0]
    with path.open("wb") as stream:
        stream.write(header + b"\nnot an event\n")
        stream.truncate(5 << 30)
    result = _summary_with_at_most(path, 4 << 30)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"error: {path}:2: not an event line")


class _Renamed(X86_64):
    """An architecture that names #UD its own way: which one a reader took shows in the names."""

    name = "x86_64_renamed"
    exception_names = {6: "undefined instruction"}


def _exception_trace(path, arch: str | None):
    """A one-vCPU trace holding an #UD and its return, its header naming `arch` (None: no `arch`, as before)."""
    header = {"seed": 1, "options": {}, "firmware_build_id": "00", "hypervisor_build_id": "00", "vcpus": 1,
              "clock_hz": 1_000_000_000}
    trace = Trace(header if arch is None else {**header, "arch": arch})
    trace.emit(10, 0, EventKind.EXCEPTION, vector=6, rip=0x1000)
    trace.emit(20, 0, EventKind.IRET, vector=6)
    trace.write(path)
    return path


@pytest.mark.parametrize("arch, name", [("x86_64_renamed", "undefined instruction"), ("x86_64", "#UD invalid opcode"),
                                        (None, "#UD invalid opcode")])
def test_the_exporter_names_exceptions_as_the_trace_header_architecture_does(tmp_path, monkeypatch, arch, name):
    """The Chrome export labels an exception slice by the header's `arch`; a trace without one (older) is x86-64's."""
    monkeypatch.setitem(ARCHITECTURES, "EM_RENAMED", _Renamed())
    path = _exception_trace(tmp_path / "run.jsonl", arch)
    result = CliRunner().invoke(trace, ["export", str(path), "-o", str(tmp_path / "out.json")])
    assert result.exit_code == 0, result.output
    slices = [r["name"] for r in json.loads((tmp_path / "out.json").read_text())["traceEvents"] if r["ph"] == "X"]
    assert name in slices


def test_a_trace_of_an_unknown_architecture_is_refused_in_one_line(tmp_path):
    """A header naming an architecture this reader lacks: one line naming it and the known ones."""
    path = _exception_trace(tmp_path / "run.jsonl", "aarch64")
    result = CliRunner().invoke(trace, ["summary", str(path)])
    assert result.exit_code not in (0, None) and result.stderr.count("\n") == 1
    assert result.stderr == f"error: {path}:1: trace of architecture 'aarch64', this reader knows x86_64\n"


def test_a_machine_writes_its_architecture_into_the_trace_header(good):
    """The header of a trace the controller's machine wrote names x86_64."""
    assert TraceFile.open(good).header["arch"] == "x86_64"
