"""The options every command that runs a machine shares, spelled and shown the same way everywhere."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner
from helpers import ROOT

from xsplice_emu.cli import main

MACHINE_COMMANDS = ("boot", "livepatch", "run", "serve", "shell")


@pytest.mark.parametrize("command", MACHINE_COMMANDS)
def test_every_command_that_runs_a_machine_has_the_clock_the_trace_and_quiet(command):
    """--clock-mhz, --timer-hz, --trace and -q are in the help of each command that boots a machine, and the
    seed's range reads 0..2^63-1."""
    shown = CliRunner().invoke(main, [command, "--help"], terminal_width=200).output
    assert all(option in shown for option in ("--clock-mhz", "--timer-hz", "--trace", "-q, --quiet"))
    assert "0..2^63-1" in shown and "9223372036854775807" not in shown


@pytest.mark.parametrize("args", [
    ["livepatch", "--clock-mhz", "500", "--timer-hz", "250", "--boot-ms", "1", "--trace", "{trace}", "list"],
    ["run", str(ROOT / "scenarios" / "hooks.toml"), "--clock-mhz", "500", "--timer-hz", "250", "--trace", "{trace}"],
    ["shell", "--clock-mhz", "500", "--timer-hz", "250", "--boot-ms", "1", "-q", "--trace", "{trace}"],
])
def test_the_clock_options_set_the_machines_clock(payloads, tmp_path, args):
    """The machine runs at the clock and timer rate given (the trace's header says 500 MHz and 250 Hz)."""
    trace = tmp_path / "t.jsonl"
    result = CliRunner().invoke(main, [arg.format(trace=trace) for arg in args], input="run 1ms\n")
    header = json.loads(trace.read_text().splitlines()[0])
    assert (header["options"]["clock_hz"], header["options"]["timer_hz"]) == (500_000_000, 250), result.output


def test_quiet_livepatch_prints_what_xens_tool_prints_only(payloads):
    """livepatch -q leaves out Xen's (XEN) lines and the testbed's remarks; the tool's output stays."""
    hello = str(ROOT / "payloads" / "build" / "xen_hello_world.livepatch")
    loud = CliRunner().invoke(main, ["livepatch", "--boot-ms", "1", "load", hello])
    quiet = CliRunner().invoke(main, ["livepatch", "-q", "--boot-ms", "1", "load", hello])
    assert "(XEN) " in loud.output and "(XEN) " not in quiet.output
    assert quiet.exit_code == 0 and "Applying xen_hello_world... completed" in quiet.stdout


@pytest.mark.parametrize("bench", sorted(path.name for path in (ROOT / "bench").glob("*.py")
                                         if "argparse" in path.read_text()))
def test_no_benchmark_help_speaks_of_issues(bench):
    """The benchmarks' --help describes what they measure, not the issue that asked for them."""
    shown = subprocess.run([sys.executable, str(ROOT / "bench" / bench), "--help"], capture_output=True, text=True,
                           check=True, timeout=60).stdout
    assert "issue" not in shown.lower()


@pytest.mark.parametrize("seed, taken", [(2**63 - 1, True), (2**63, False)])
def test_a_seed_option_and_a_scenarios_seed_take_the_same_range(tmp_path, seed, taken):
    """`run --seed N` and `[machine] seed = N` both take 2^63-1 and both refuse 2^63 (one range: Value.INTEGER)."""
    scenario = tmp_path / "s.toml"
    scenario.write_text("[machine]\nvcpus = 1\nboot_ms = 0\n[[step]]\nrun_ms = 0\n")
    by_option = CliRunner().invoke(main, ["run", str(scenario), "--seed", str(seed), "-q"])
    scenario.write_text(f"[machine]\nvcpus = 1\nboot_ms = 0\nseed = {seed}\n[[step]]\nrun_ms = 0\n")
    by_key = CliRunner().invoke(main, ["run", str(scenario), "-q"])
    assert (by_option.exit_code, by_key.exit_code) == ((0, 0) if taken else (2, 2)), by_option.output + by_key.output
