"""`xsplice-emu run`: the example scenarios, failures, JUnit, JSON, digests and bad input."""

from __future__ import annotations

import hashlib
import importlib
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import PAYLOADS, ROOT

from xsplice_emu.cli import main
from xsplice_emu.tracing import EventKind

EXAMPLES = sorted((ROOT / "scenarios").glob("*.toml"))
HELLO = PAYLOADS / "xen_hello_world.livepatch"


def _run(*args: str):
    return CliRunner().invoke(main, ["run", *map(str, args)])


def _scenario(tmp_path: Path, text: str, name: str = "s.toml") -> Path:
    path = tmp_path / name
    path.write_text(text.replace("@HELLO", str(HELLO)))
    return path


PASSING = """
[machine]
vcpus = 2

[[step]]
livepatch = "load @HELLO"

[[step]]
expect = { extra_version = "Hello World", applied = ["xen_hello_world"] }
"""

WRONG = """
[machine]
vcpus = 2
seed = 9

[[step]]
livepatch = "load @HELLO"

[[step]]
expect = { extra_version = "Goodbye", applied = ["other"] }

[[step]]
livepatch = "revert xen_hello_world"
expect_rc = "EBUSY"
"""


def test_there_is_an_example_for_each_capability():
    """scenarios/ covers Xen's sequence, stacking, replaces, a stall timeout, an NMI in the window, rejections."""
    names = {path.stem for path in EXAMPLES}
    assert {"xen_test_sequence", "stacking", "replace", "replace_expectations", "replace_hooks",
            "timeout_under_stall", "nmi_in_window", "rejections", "hooks"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.stem)
def test_example_scenario_passes(payloads, path):
    """Every example scenario holds: exit 0, PASS."""
    result = _run(path, "-q")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("PASS ")


def test_wrong_expectation_names_step_expected_got_and_reproduction(payloads, tmp_path):
    """A failed expectation: exit 1, the step once, then each failed check (expected vs got), and the command that
    reproduces it."""
    path = _scenario(tmp_path, WRONG)
    result = _run(path, "-q")
    assert result.exit_code == 1
    lines = result.output.splitlines()
    step = lines.index('  step 2 (expect extra_version = "Goodbye", applied = ["other"]):')
    assert lines[step + 1:step + 5] == ["      extra_version on vCPUs 0-1: expected 'Goodbye', got 'Hello World'",
                                       "      applied: expected ['other'], got ['xen_hello_world']",
                                       "  step 3 (revert xen_hello_world):",
                                       "      rc: expected 'EBUSY', got '0'"]
    out = " ".join(result.output.split())
    assert f"reproduce: xsplice-emu run {path} --seed 9 --vcpus 2" in out


def test_junit_has_one_testcase_per_scenario_and_a_failure_per_expectation(payloads, tmp_path):
    """JUnit XML parses; two scenarios, one failing with three failed expectations (vCPUs that agree grouped)."""
    good, bad = _scenario(tmp_path, PASSING, "good.toml"), _scenario(tmp_path, WRONG, "bad.toml")
    report = tmp_path / "junit.xml"
    result = _run(good, bad, "--junit", report, "-q")
    assert result.exit_code == 1
    suite = ET.parse(report).getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures")) == ("2", "1")
    cases = {case.get("classname"): case for case in suite.iter("testcase")}
    assert cases["scenarios.good"].findall("failure") == []
    failures = cases["scenarios.bad"].findall("failure")
    assert len(failures) == 3  # extra_version on vCPUs 0-1 (one failure), applied, rc
    assert failures[0].get("message").startswith("step 2 (expect")


def test_same_scenario_twice_gives_the_same_digest(payloads, tmp_path):
    """Two runs of one scenario print one digest; --expect-digest holds it and catches another."""
    path = _scenario(tmp_path, PASSING)
    first, second = (json.loads(_run(path, "--json").output)[0]["digest"] for _ in range(2))
    assert first == second and len(first) == 64
    assert _run(path, "--expect-digest", first, "-q").exit_code == 0
    other = _run(path, "--expect-digest", "0" * 64, "-q")
    assert other.exit_code == 1
    assert f"digest {first} differs from the expected {'0' * 64}" in other.output


def test_seed_override_changes_the_digest_and_json_reports_steps(payloads, tmp_path):
    """--seed and --vcpus override the file; --json gives each step's rc and latency."""
    path = _scenario(tmp_path, PASSING)
    base = json.loads(_run(path, "--json").output)[0]
    other = json.loads(_run(path, "--json", "--seed", "5", "--vcpus", "3").output)[0]
    assert (other["seed"], other["vcpus"]) == (5, 3) and other["ok"]
    assert other["digest"] != base["digest"]
    load = base["steps"][0]
    assert (load["kind"], load["rc"], load["ok"]) == ("livepatch", "0", True)
    assert 0 < load["latency_ns"] < 1_000_000


def test_trace_file_is_the_runs_trace(payloads, tmp_path):
    """--trace writes the JSON Lines trace: a header, then the patch event of the apply."""
    path, trace = _scenario(tmp_path, PASSING), tmp_path / "t.jsonl"
    assert _run(path, "--trace", trace, "-q").exit_code == 0
    lines = [json.loads(line) for line in trace.read_text().splitlines()]
    assert lines[0]["format"] == "xsplice-emu-trace" and lines[0]["vcpus"] == 2
    assert any(line.get("kind") == EventKind.PATCH and line["function"] == "xen_extra_version" for line in lines[1:])


@pytest.mark.parametrize("text, message", [
    ("[machine\nvcpus = 2", ": not valid TOML"),
    ("colour = 1\n[[step]]\nrun_ms = 1", ":1: unknown key 'colour'"),
    ("[machine]\nvcpus = 'two'\n[[step]]\nrun_ms = 1", ":2: [machine]: vcpus must be an integer, got 'two'"),
    ("[[step]]\nrun_ms = 1\n[[step]]\nrun_ms = 'soon'",
     ":4: step 2 (run_ms): run_ms must be a duration in ms, got 'soon'"),
    ("[[step]]\nlivepatch = 'load missing.livepatch'", ":2: step 1 (livepatch): payload file"),
    ("[[step]]\nstall = { vcpu = 4, ms = 5 }", ":2: step 1 (stall): vcpu 4 is out of range: the machine has 4 vCPUs"),
    ("[[step]]\nnmi = { vcpu = 1, when = 2 }", ":2: step 1 (nmi): unknown key 'when'"),
    ("[[step]]\nnmi_storm = { vcpus = [1, 0, 1], rate_khz = 100, us = 20 }",
     ":2: step 1 (nmi_storm): vcpus names vCPU 1 more than once (1, 0, 1)"),
    ("[[step]]\nlivepatch = 'frobnicate x'", ":2: step 1 (livepatch): unknown command 'frobnicate'"),
    ("[[step]]\nlivepatch = 'list'\nexpect_rc = 'ENOPE'",
     ":3: step 1 (livepatch): expect_rc 'ENOPE' is not an errno name"),
    ("[[step]]\nrun_ms = 1\nnmi = { vcpu = 0 }", ":3: step 1: a step has exactly one kind; got run_ms and nmi"),
    ("[[step]]\nexpect = { state = { x = 'GONE' } }",
     ":2: step 1 (expect): state of x must be one of CHECKED, APPLIED, UNLOADED"),
    ("[machine]\nvcpus = 2", ": no [[step]] to run"),
    ("a = " + "[" * 3000 + "]" * 3000, ": not valid TOML: nested too deeply"),
    ("a = " + "{ b = " * 3000 + "1" + " }" * 3000, ": not valid TOML: nested too deeply"),
])
def test_malformed_scenario_is_one_line_exit_2_and_runs_nothing(tmp_path, text, message):
    """Bad input: one line naming the file, its line, the step and the closest known word, exit 2, and not even
    the good scenario runs."""
    good = _scenario(tmp_path, "[[step]]\nrun_ms = 1", "good.toml")
    bad = _scenario(tmp_path, text, "bad.toml")
    trace = tmp_path / "traces"
    result = _run(good, bad, "--trace", trace)
    assert result.exit_code == 2
    assert result.output.count("\n") == 1
    assert result.output.startswith(f"error: {bad}{message}")
    assert "PASS" not in result.output and not trace.exists()


def test_vcpus_override_is_checked_against_the_steps(tmp_path):
    """--vcpus 2 makes a stall on vCPU 3 out of range: exit 2 before running."""
    path = _scenario(tmp_path, "[machine]\nvcpus = 8\n[[step]]\nstall = { vcpu = 3, ms = 1 }")
    assert _run(path, "-q").exit_code == 0
    result = _run(path, "--vcpus", "2")
    assert result.exit_code == 2
    assert "vcpu 3 is out of range: the machine has 2 vCPUs" in result.output


def test_expect_digest_needs_one_scenario(tmp_path):
    """--expect-digest with two scenarios is a usage error."""
    path = _scenario(tmp_path, "[[step]]\nrun_ms = 1")
    result = _run(path, path, "--expect-digest", "00")
    assert result.exit_code == 2 and "needs one scenario" in result.output


def test_view_opens_the_viewer_on_the_failed_scenarios_trace(payloads, tmp_path, monkeypatch):
    """--view hands the viewer the trace of the first failed scenario, a trace of that very run, and its first
    failed step; the temporary file is gone once the viewer closes."""
    opened = []
    monkeypatch.setattr(importlib.import_module("xsplice_emu.cli.run"), "view_trace",
                        lambda path, **options: opened.append((path, path.read_bytes(), options)))
    good, bad = _scenario(tmp_path, PASSING, "good.toml"), _scenario(tmp_path, WRONG, "bad.toml")
    result = _run(good, bad, "--view", "--json")
    digest = {entry["name"]: entry["digest"] for entry in json.loads(result.output)}["bad"]
    ((path, data, options),) = opened
    assert path.name == "bad.jsonl" and not path.exists()
    assert json.loads(data.splitlines()[0])["seed"] == 9
    assert hashlib.sha256(data).hexdigest() == digest  # the digest is that of the file
    assert options["message"] == 'step 2 failed: expect extra_version = "Goodbye", applied = ["other"]'


def test_operator_options_go_before_or_after_the_name_in_a_scenario(payloads, tmp_path):
    """`apply --from-vcpu 1 NAME` and `revert NAME --from-vcpu 1` in a scenario both run and pass."""
    path = _scenario(tmp_path, """
[machine]
vcpus = 2
[[step]]
livepatch = "upload hello @HELLO"
[[step]]
livepatch = "apply --from-vcpu 1 --timeout-ms 10 hello"
[[step]]
livepatch = "revert hello --from-vcpu 1 --nodeps"
[[step]]
expect = { extra_version = "-unstable", state = { hello = "CHECKED" } }
""")
    result = _run(path, "-q")
    assert result.exit_code == 0, result.output


def test_a_malformed_file_among_several_still_gets_a_junit_report(payloads, tmp_path):
    """One bad file with --junit: the others run, the report has an <error> for it, exit 2."""
    good = _scenario(tmp_path, PASSING, "good.toml")
    bad = _scenario(tmp_path, "[machine\n", "bad.toml")
    junit = tmp_path / "report.xml"
    result = _run(bad, good, "--junit", junit)
    assert result.exit_code == 2
    cases = {case.get("classname"): case for case in ET.parse(junit).getroot().iter("testcase")}
    assert "not valid TOML" in cases["scenarios.bad"].find("error").get("message")
    assert cases["scenarios.good"].findall("failure") == []


def test_scenarios_with_the_same_stem_get_unique_trace_files_and_junit_names(payloads, tmp_path):
    """a/s.toml and b/s.toml: traces a-s.jsonl and b-s.jsonl, JUnit classnames scenarios.a-s and scenarios.b-s."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = _scenario(tmp_path / "a", PASSING), _scenario(tmp_path / "b", PASSING)
    junit = tmp_path / "report.xml"
    result = _run(first, second, "--trace", tmp_path / "traces", "--junit", junit)
    assert result.exit_code == 0
    assert sorted(path.name for path in (tmp_path / "traces").iterdir()) == ["a-s.jsonl", "b-s.jsonl"]
    assert {case.get("classname") for case in ET.parse(junit).getroot().iter("testcase")} == \
        {"scenarios.a-s", "scenarios.b-s"}


def test_a_jsonl_trace_for_several_scenarios_is_refused_before_running(payloads, tmp_path):
    """--trace x.jsonl with two scenarios: exit 2 at once, nothing made."""
    scenario = _scenario(tmp_path, PASSING)
    result = _run(scenario, scenario, "--trace", tmp_path / "x.jsonl")
    assert result.exit_code == 2 and "need a directory" in result.stderr
    assert not (tmp_path / "x.jsonl").exists()


def test_the_quiet_digest_is_accepted_by_expect_digest(payloads, tmp_path):
    """`run -q` prints 16 hex digits; `--expect-digest` with them passes."""
    scenario = _scenario(tmp_path, PASSING)
    digest = _run(scenario, "-q").stdout.split("digest ")[1].strip()
    assert len(digest) == 16
    assert _run(scenario, "--expect-digest", digest).exit_code == 0


def test_a_firmware_that_is_not_an_image_is_a_malformed_scenario(tmp_path):
    """`firmware = "/bin/ls"`: the scenario is malformed, exit 2, naming the firmware."""
    scenario = _scenario(tmp_path, '[machine]\nfirmware = "/bin/ls"\n[[step]]\nrun_ms = 1\n')
    result = _run(scenario)
    assert result.exit_code == 2
    assert "[machine]: firmware: /bin/ls:" in result.stderr


def test_a_stall_is_its_own_event_in_the_trace(payloads, tmp_path):
    """A `stall` step leaves a `stall` event on that vCPU with its length, not only an anonymous IPI."""
    scenario = _scenario(tmp_path, "[machine]\nvcpus = 2\n[[step]]\nstall = { vcpu = 1, ms = 2 }\n"
                                   "[[step]]\nrun_ms = 3\n")
    trace = tmp_path / "t.jsonl"
    assert _run(scenario, "--trace", trace).exit_code == 0
    events = [json.loads(line) for line in trace.read_text().splitlines()[1:]]
    assert [(e["vcpu"], e["ns"]) for e in events if e["kind"] == "stall"] == [(1, 2_000_000)]


def test_a_directory_runs_every_scenario_under_it_and_leaves_other_toml_alone(payloads, tmp_path):
    """`run DIR`: the scenario files under it, nested ones too, run; pyproject.toml is not one; an empty DIR is an
    error."""
    _scenario(tmp_path, PASSING, "a.toml")
    (tmp_path / "nested").mkdir()
    _scenario(tmp_path / "nested", "[[step]]\nrun_ms = 1", "b.toml")
    _scenario(tmp_path, "[project]\nname = 'x'", "pyproject.toml")
    result = _run(tmp_path, "-q")
    assert result.exit_code == 0, result.output
    assert [line.split()[:2] for line in result.output.splitlines()] == [
        ["PASS", str(tmp_path / "a.toml")], ["PASS", str(tmp_path / "nested" / "b.toml")], ["2", "of"]]
    (tmp_path / "empty").mkdir()
    result = _run(tmp_path / "empty")
    assert (result.exit_code, result.output) == (2, f"error: {tmp_path / 'empty'}: no scenario files in it (*.toml "
                                                    "with [[step]] tables)\n")


def test_a_scenario_run_closes_its_machine_and_keeps_what_it_recorded(payloads, tmp_path):
    """`run_scenario` frees its machine's emulators as it returns: the result still gives the trace, its digest
    and guest memory (the patched function's jump), and running the machine again is a one-line MachineError."""
    from xsplice_emu.errors import MachineError
    from xsplice_emu.scenario import load_scenario, run_scenario

    result = run_scenario(load_scenario(_scenario(tmp_path, PASSING)))
    assert result.ok
    machine = result.session.machine
    assert machine.closed
    assert len(machine.trace.digest) == 64 and machine.trace.of_kind(EventKind.PATCH)
    patched = machine.address("xen_extra_version")
    assert machine.memory.read(patched, 1) == machine.arch.jump(patched, 0)[:1]  # the jump's opcode
    with pytest.raises(MachineError, match="closed"):
        result.session.advance(1000)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="Linux's /proc tells a process's memory")
def test_scenarios_run_one_after_another_hold_one_machine_at_a_time(payloads, tmp_path):
    """Five 72-vCPU scenarios run in one process (the collector off: it frees reference cycles only when it
    runs) end with about the memory one took: each run's machine was freed as it ended (without, ~60 MB more a
    run)."""
    scenario = _scenario(tmp_path, PASSING.replace("vcpus = 2", "vcpus = 72"))
    script = ("import gc, sys\n"
              "from xsplice_emu.scenario import load_scenario, run_scenario\n"
              "def resident():\n"
              "    status = dict(l.split(':', 1) for l in open('/proc/self/status') if ':' in l)\n"
              "    return int(status['VmRSS'].split()[0]) // 1024\n"
              "gc.disable()\n"
              "after = []\n"
              "for _ in range(5):\n"
              "    assert run_scenario(load_scenario(sys.argv[1])).ok\n"
              "    after.append(resident())\n"
              "print(*after)\n")
    after = [int(mb) for mb in subprocess.run([sys.executable, "-c", script, str(scenario)], capture_output=True,
                                              text=True, check=True).stdout.split()]
    assert after[-1] - after[0] < 40, after
