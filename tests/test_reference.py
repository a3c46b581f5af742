"""Real Xen as the reference: planning a scenario for dom0, reading QEMU's console, the differences, and (when
QEMU can be had) Xen's maintainers' sequence on Debian's Xen 4.17 under QEMU against the testbed."""

from __future__ import annotations

import base64
import shutil

import pytest
from click.testing import CliRunner
from helpers import ROOT, debian_file

from xsplice_emu.cli import main
from xsplice_emu.errors import ToolchainError
from xsplice_emu.reference import compare_scenario, default_smp
from xsplice_emu.reference.compare import Difference, Observed, differ
from xsplice_emu.reference.packages import QEMU, reference_files
from xsplice_emu.reference.plan import place, plan, working_directory
from xsplice_emu.reference.qemu import _parse
from xsplice_emu.scenario import load_scenario

MIXED = """
[machine]
vcpus = 2
[[step]]
livepatch = "list"
[[step]]
stall = { vcpu = 1, ms = 5 }
[[step]]
call = { vcpu = 0, function = "xen_minor_version" }
[[step]]
livepatch = "apply hello --timeout-ms 5"
[[step]]
livepatch = "apply hello --nodeps"
[[step]]
run_ms = 2
[[step]]
expect = { extra_version = "x" }
"""


def test_steps_the_reference_cannot_run_are_skipped_with_the_reason(tmp_path):
    """A stall, a call and a testbed-only option are skipped saying why; --nodeps goes to the real tool."""
    path = tmp_path / "mixed.toml"
    path.write_text(MIXED)
    steps = plan(load_scenario(path))
    assert [step.skipped for step in steps[:4]] == [
        None, "a stall needs the testbed's control of a vCPU",
        "a call runs a hypervisor function on one vCPU, which only the testbed can do",
        "the real tool has no --timeout-ms"]
    assert steps[0].tool == ("list",) and steps[4].tool == ("apply", "hello", "--nodeps")
    assert steps[5].sleep_us == 2000 and steps[6].reads and steps[7].reads  # the implicit violations check too


def test_payloads_are_placed_where_the_tool_finds_them_by_the_scenarios_own_names():
    """dom0's working directory is deep enough for `../../x`; each name resolves from it to its place."""
    cwd = working_directory(("../../payloads/a.livepatch", "b.livepatch"))
    assert str(cwd) == "/scenario/d/d"
    assert str(place("../../payloads/a.livepatch", cwd)) == "/scenario/payloads/a.livepatch"
    assert str(place("./b.livepatch", cwd)) == "/scenario/d/d/b.livepatch"


def _mark(step: int | str, what: str, value: bytes | str = "") -> str:
    text = base64.b64encode(value).decode() if isinstance(value, bytes) else value
    return f"@@ref {step} {what} {text}".rstrip()


def test_the_console_becomes_step_records_with_xens_lines_in_order_and_no_timestamps():
    """Markers open steps; Xen's lines go to the open step without prefix or timestamp; boot lines go nowhere."""
    lines = ["(XEN) [    0.100000] Xen version 4.17", _mark("-", "ready"), _mark(1, "begin"),
             "(XEN) [    6.816285] livepatch: hello: Applying 1 functions", "[    7.1] a dom0 kernel line",
             "(XEN) livepatch: hello finished APPLY with rc=0", _mark(1, "status", "0"),
             _mark(1, "out", b"Applying hello... completed\n"), _mark(2, "begin"),
             _mark(2, "extra", b"Hello Again Wor\n"), _mark(2, "status", "1"), _mark(2, "err", b"Error 22: x\n"),
             _mark("-", "done")]
    run = _parse([(index / 10, line) for index, line in enumerate(lines)], smp=2)
    first, second = run.steps[1], run.steps[2]
    assert first.xen == ("livepatch: hello: Applying 1 functions", "livepatch: hello finished APPLY with rc=0")
    assert (first.stdout, first.stderr, first.status) == ("Applying hello... completed\n", "", 0)
    assert first.seconds == pytest.approx(0.4) and run.ready_s == pytest.approx(0.1)
    assert (second.versions, second.stderr, second.status) == ({"extra": "Hello Again Wor"}, "Error 22: x\n", 1)


def test_a_console_that_stops_before_dom0_is_done_is_one_line():
    """QEMU ending before dom0's last marker is a ToolchainError naming the last console line."""
    with pytest.raises(ToolchainError, match=r"^dom0 did not finish its steps \(last console line: "
                                             r"'\(XEN\) Entering ACPI S5 state.'\)$"):
        _parse([(0.0, _mark("-", "ready")), (1.0, "(XEN) Entering ACPI S5 state.")], smp=2)


def test_differences_name_each_field_and_errno_only_where_the_tool_printed_one():
    """Each differing field is one Difference; an errno the real tool never printed is not compared."""
    reference = Observed("a\n", "", 1, None, ("x",), seconds=0.1)
    testbed = Observed("a\n", "", 2, 22, ("y",), virtual_ns=5)
    assert differ(3, reference, testbed) == (Difference(3, "exit status", 1, 2), Difference(3, "Xen's log", ("x",),
                                                                                           ("y",)))
    readings = differ(4, Observed(versions={"extra": "Hello Again Wor"}, states={"r": "APPLIED"}),
                      Observed(versions={"extra": "Hello Again World!"}, states={"r": "APPLIED"}))
    assert readings == (Difference(4, "extra version", "Hello Again Wor", "Hello Again World!"),)


def test_reference_without_a_scenario_is_one_line():
    """`xsplice-emu reference` alone says what it needs, exit status 2, and runs nothing."""
    result = CliRunner().invoke(main, ["reference"])
    assert (result.exit_code, result.output) == (2, "error: reference needs a SCENARIO (or --install)\n")


@pytest.mark.long
def test_the_maintainers_sequence_on_real_xen_matches_the_testbeds_tool_output(tmp_path):
    """On Debian's Xen under QEMU every step runs and the tool's output, exit status, errno and payload states
    equal the testbed's; the differences are only Xen's log wording and the 16-byte extraversion reading."""
    if shutil.which(QEMU) is None:
        pytest.skip(f"{QEMU} is not installed (`xsplice-emu reference --install` installs it)")
    debian_file(lambda: reference_files().xen)
    tree = tmp_path / "tree"
    shutil.copytree(ROOT / "scenarios" / "xen417", tree / "scenarios" / "xen417")
    (tree / "payloads").mkdir()
    built = CliRunner().invoke(main, ["payload", "build-tests", str(tree / "payloads" / "build-xen417"),
                                      "--against", "debian"])
    assert built.exit_code == 0, built.output
    comparison = compare_scenario(tree / "scenarios" / "xen417" / "xen_test_sequence.toml",
                                  smp=min(2, default_smp()))
    steps = {step.planned.number: step.reference for step in comparison.steps}
    assert all(reference is not None for reference in steps.values())
    assert (steps[3].stderr, steps[3].status, steps[3].errno) == (
        "Failed to get status of xen_hello_world.\nError 2: No such file or directory\n", 1, 2)
    assert steps[4].xen[-1] == "livepatch: xen_hello_world finished APPLY with rc=0"
    assert steps[17].versions["extra"] == "Hello Again Wor" and steps[17].states == {
        "xen_hello_world": "CHECKED", "xen_bye_world": "CHECKED", "xen_replace": "APPLIED"}
    assert {difference.what for difference in comparison.differences} <= {"Xen's log", "extra version"}
