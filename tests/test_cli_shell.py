"""`xsplice-emu shell`: livepatch and scenario verbs on one live machine, and its completion."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
from click.testing import CliRunner
from helpers import PAYLOADS, ROOT
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from xsplice_emu.cli import main
from xsplice_emu.cli.shell import COMMANDS
from xsplice_emu.cli.shell_prompt import ShellCompleter, prompt_session
from xsplice_emu.control.session import Session
from xsplice_emu.errors import ConfigError
from xsplice_emu.scenario import STEP_KINDS
from xsplice_emu.scenario.faults import FAULTS, Fault
from xsplice_emu.scenario.keys import Param, Value, read_keys
from xsplice_emu.scenario.steps import VCPU, Done, Step
from xsplice_emu.tracing import EventKind


def _shell(*lines: str, vcpus: int = 4):
    return CliRunner().invoke(main, ["shell", "--vcpus", str(vcpus), "--boot-ms", "1"], input="\n".join(lines) + "\n")


def test_apply_then_info_shows_every_vcpus_new_version(payloads):
    """upload + apply at the prompt; `info` lists Hello World on each of the 3 vCPUs and the stack."""
    result = _shell(f"upload hello {PAYLOADS}/xen_hello_world.livepatch", "apply hello", "info", vcpus=3)
    assert result.exit_code == 0
    assert "Applying hello... completed" in result.stdout
    assert result.stdout.count("Hello World") == 3
    assert "applied: hello" in result.stdout


def test_stall_makes_the_next_apply_time_out_and_run_lets_it_pass(payloads):
    """`stall 2 50ms` then apply: Error 16; after `run 60ms` the apply completes."""
    result = _shell(f"upload hello {PAYLOADS}/xen_hello_world.livepatch", "stall 2 50ms", "apply hello",
                    "run 60ms", "apply hello")
    assert "Applying hello... failed" in result.stdout
    assert "Error 16: Device or resource busy" in result.stderr
    assert result.stdout.rstrip().endswith("Applying hello... completed")


def test_nmi_console_and_trace_save(payloads, tmp_path):
    """`nmi 1` then `console` shows cpu1's NMI line; `trace save` writes a trace with that NMI."""
    trace = tmp_path / "shell.jsonl"
    result = _shell("console", "nmi 1", "run 1ms", "console", f"trace save {trace}")
    assert result.exit_code == 0
    assert "cpu1: NMI received" in result.stdout
    events = [json.loads(line) for line in trace.read_text().splitlines()[1:]]
    assert any(event["kind"] == EventKind.CONSOLE and event["text"] == "cpu1: NMI received" for event in events)


def test_mistakes_are_one_line_and_the_shell_goes_on(payloads):
    """Unknown command, bad duration, vCPU out of range or named twice, unknown payload: a line each; `quit` ends
    it, exit 2."""
    result = _shell("frobnicate", "run soon", "nmi_storm 0,2,0 100 20us", "nmi 7", "apply nothing", "quit", "info")
    assert result.exit_code == 2
    assert "error: unknown command 'frobnicate'" in result.stdout
    assert "error: vcpus names vCPU 0 more than once (0, 2, 0)" in result.stdout
    assert "error: 'soon' is not a duration" in result.stdout
    assert "error: vCPU '7' is out of range: the machine has 4 (0..3)" in result.stdout
    assert "Failed to get status of nothing." in result.stderr
    assert "vCPU" not in result.stdout.split("out of range")[-1]  # `info` after quit never ran


def test_completion_of_commands_payload_names_and_files(payloads):
    """Tab completes command names, uploaded payload names after `apply`, and files after `load`."""
    session = Session(vcpus=1, seed=0, boot_ms=0.5)
    session.livepatch.upload("hello", (PAYLOADS / "xen_hello_world.livepatch").read_bytes())
    completer = ShellCompleter(session)

    def complete(text: str) -> list[str]:
        return [c.text for c in completer.get_completions(Document(text, len(text)), CompleteEvent())]

    assert complete("re") == ["revert", "replace"]
    assert complete("apply ") == ["hello"]
    assert complete("apply he") == ["hello"]
    assert complete(f"load {PAYLOADS}/xen_hello_w") == ["orld.livepatch", "orld_v1.livepatch"]  # the rest of each name
    assert complete("trace ") == ["save"]
    assert complete("help st") == ["stall"]
    assert complete("stall ") == ["0"]  # the vCPUs of the machine


@dataclass(frozen=True)
class BurstStep(Step):
    """NMIs to one vCPU, `count` of them: a kind whose `count` is declared once, as one Param."""

    vcpu: int
    count: int = 1

    kind: ClassVar = "burst"
    key: ClassVar = "burst"
    params: ClassVar = (VCPU, Param("count", Value.INTEGER, "count", "count=N", "how many NMIs", optional=True))
    summary: ClassVar = "NMIs to that vCPU, N of them."
    example: ClassVar = ("burst = { vcpu = 1, count = 3 }", "burst 1 count=3")

    def describe(self):
        return f"{self.count} NMIs to vCPU {self.vcpu}"

    def run(self, session):
        for _ in range(self.count):
            session.nmi(self.vcpu)
        return Done()


def test_a_parameter_declared_once_is_a_toml_key_a_shell_word_help_and_completion(monkeypatch):
    """`count` declared once: a TOML key (read and written), the shell word `count=N` (same check, same message),
    a line of `help burst` and a completion after `burst 1 `."""
    monkeypatch.setitem(FAULTS, "burst", Fault("burst", ("controller", "xen"), step=BurstStep))
    assert BurstStep.from_toml(read_keys({"vcpu": 1, "count": 3}, BurstStep.keys), vcpus=2, base=Path(".")) == \
        BurstStep.from_words(["burst", "1", "count=3"], vcpus=2) == BurstStep(1, 3)
    assert (BurstStep(1, 3).toml_values(), BurstStep(1).toml_values()) == ({"vcpu": 1, "count": 3}, {"vcpu": 1})
    with pytest.raises(ConfigError, match="^count must be an integer, got 'x'$"):
        read_keys({"vcpu": 1, "count": "x"}, BurstStep.keys)
    with pytest.raises(ConfigError, match="^count must be an integer, got 'x'$"):
        BurstStep.from_words(["burst", "1", "count=x"], vcpus=2)
    help_lines = _shell("help burst", vcpus=2).stdout.splitlines()
    assert help_lines[2:5] == ["burst VCPU [count=N]", "  NMIs to that vCPU, N of them.",
                               "  VCPU             a vCPU of the machine, from 0; in a scenario: vcpu"]
    assert "  count=N          how many NMIs; in a scenario: count" in help_lines
    completer = ShellCompleter(Session(vcpus=2, seed=0, boot_ms=0.5))

    def complete(text: str) -> list[str]:
        return [c.text for c in completer.get_completions(Document(text, len(text)), CompleteEvent())]

    assert (complete("bu"), complete("burst "), complete("burst 1 "), complete("burst 1 c")) == \
        (["burst"], ["count=", "0", "1"], ["count="], ["count="])


def test_each_kind_runs_at_the_shell_prompt():
    """Every kind's example line is a command the shell takes: no line of it is bad input (exit 1, not 2)."""
    lines = [kind.example[1] for kind in STEP_KINDS]
    result = _shell(*lines)
    assert result.exit_code == 1  # the examples' expectations fail on a fresh machine
    assert "error:" not in result.stdout
    assert "pass NMIs lost: 0" in result.stdout  # the expect example's last check


def test_expect_at_the_shell_prints_pass_and_fail_per_check():
    """`expect` at the prompt: one line per check, pass or FAIL with what it got."""
    result = _shell('expect "extra_version=-unstable" state.hello=APPLIED minor_version!=99', vcpus=2)
    assert "pass extra_version on all 2 vCPUs: '-unstable'" in result.stdout
    assert "FAIL state of hello: expected 'APPLIED', got 'UNLOADED'" in result.stdout
    assert "pass minor_version on all 2 vCPUs" in result.stdout


@pytest.mark.slow
def test_help_of_each_command_shows_its_syntax_and_summary():
    """`help CMD` for every command prints that command's syntax, summary and details, and nothing else."""
    for command in COMMANDS.values():
        result = _shell(f"help {command.name}")
        assert result.exit_code == 0
        shown = result.stdout.split("\n", 2)[2]  # after the banner and the echoed command
        lines = [command.syntax, *(f"  {line}" for line in (command.summary, *command.details))]
        assert shown == "\n".join(lines) + "\n"


def test_help_of_a_step_kind_shows_its_example_in_both_forms():
    """`help stall` gives the syntax, a shell example and the same step in a scenario file."""
    result = _shell("help stall")
    assert "stall VCPU DURATION [DELAY]" in result.stdout
    assert "e.g. stall 2 50ms 10us" in result.stdout
    assert "in a scenario: stall = { vcpu = 2, ms = 50, delay_us = 10 }" in result.stdout


def test_options_before_or_after_the_payload_name(payloads):
    """`apply hello --from-vcpu 2` and `revert --from-vcpu 1 hello` at the prompt both complete."""
    result = _shell(f"upload hello {PAYLOADS}/xen_hello_world.livepatch", "apply hello --from-vcpu 2",
                    "revert --from-vcpu 1 --timeout-ms 10 hello")
    assert "Applying hello... completed" in result.stdout
    assert "Reverting hello... completed" in result.stdout
    assert "error:" not in result.stdout


def test_piped_commands_are_echoed_and_a_failure_sets_the_exit_status(payloads):
    """Piped input: each command shows after the prompt; a failed operator command makes the exit status 1."""
    result = _shell("list", "apply nothing", "list")
    assert result.stdout.count("xsplice> list") == 2 and "xsplice> apply nothing" in result.stdout
    assert result.exit_code == 1


def test_trace_save_to_a_bad_place_keeps_the_shell_alive(payloads, tmp_path):
    """`trace save` into a missing directory or onto a directory: one error line, the machine goes on."""
    result = _shell(f"trace save {tmp_path}/missing/x.jsonl", f"trace save {tmp_path}", "info")
    assert f"no directory {tmp_path}/missing" in result.stdout
    assert "it is a directory" in result.stdout
    assert "payloads: none" in result.stdout and result.exit_code == 2


def test_a_wrong_value_on_every_vcpu_is_one_failure(payloads):
    """A version wrong the same way on 4 vCPUs: one FAIL line naming vCPUs 0-3, not four."""
    result = _shell('expect "extra_version=Hello World"')
    assert "FAIL extra_version on vCPUs 0-3: expected 'Hello World', got '-unstable'" in result.stdout
    assert result.stdout.count("FAIL") == 1


def test_call_prints_the_value_help_of_a_verb_shows_both_forms_and_a_typo_suggests():
    """`call 0 xen_minor_version` prints 7; `help apply` its example at the prompt and in TOML; `aply` suggests
    `apply` (exit status 2: bad input)."""
    result = _shell("call 0 xen_minor_version", "help apply", "aply hello", vcpus=2)
    assert "call xen_minor_version() on vCPU 0 = 7 (0x7)" in result.stdout
    assert "  e.g. apply hello\n  in a scenario: livepatch = \"apply hello\"\n" in result.stdout
    assert "error: unknown command 'aply' (did you mean 'apply'?)" in result.stdout
    assert result.exit_code == 2


@pytest.mark.slow
def test_tab_completes_a_unique_word_and_history_is_kept_under_xdg_cache_home(payloads, tmp_path, monkeypatch):
    """At the prompt, `hel` Tab becomes `help` (`re` Tab, revert or replace, stays); the line goes to
    $XDG_CACHE_HOME/xsplice-emu/shell_history."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    session = Session(vcpus=1, seed=0, boot_ms=0.5)

    def typed(keys: str) -> str:
        with create_pipe_input() as keyboard:
            keyboard.send_text(keys + "\t")
            threading.Timer(0.5, keyboard.send_text, ["\n"]).start()  # after the completion has run
            return prompt_session(session, input=keyboard, output=DummyOutput()).prompt("xsplice> ")

    assert (typed("hel"), typed("re")) == ("help", "re")
    assert "help" in (tmp_path / "xsplice-emu" / "shell_history").read_text()


def test_save_writes_a_scenario_that_gives_the_sessions_trace(payloads, tmp_path, monkeypatch):
    """A session of every step kind (a payload by a relative path, `info`, a refused apply, durations that are
    not round in ms) saved with `save`: `run` of the file, from another folder, gives the shell's trace byte for
    byte, and fails only where the shell's session failed (the expectation a dropped flush breaks on vCPU 1)."""
    monkeypatch.chdir(ROOT)
    scenario, shell_trace, run_trace = tmp_path / "s.toml", tmp_path / "shell.jsonl", tmp_path / "run.jsonl"
    options = ["-q", "--seed", "5", "--boot-ms", "1.5", "--timer-hz", "500"]
    result = CliRunner().invoke(main, ["shell", *options], input="\n".join([
        "upload hello payloads/build/xen_hello_world.livepatch", "call 0 xen_minor_version", "stall 1 2ms 10us",
        "run 1.2345ms", "apply hello", "info", "nmi 2 3us", "nmi_storm 0,1 100 200us 5us", "preempt 3 300us",
        "drop_flush 1", "revert hello", "run 0.000333", "apply nope", 'expect "extra_version=-unstable"',
        f"trace save {shell_trace}", f"save {scenario}"]) + "\n")
    assert f"wrote {scenario} (14 steps" in result.output
    monkeypatch.chdir(tmp_path)
    again = CliRunner().invoke(main, ["run", str(scenario), "-q", "--trace", str(run_trace)])
    assert "FAIL extra_version on vCPU 1: expected '-unstable', got 'Hello World'" in result.output
    assert again.exit_code == 1 and "step 14 (expect extra_version = \"-unstable\")" in again.output
    assert again.output.count("step ") == 1
    assert run_trace.read_bytes() == shell_trace.read_bytes()


def test_commands_other_than_the_shell_at_a_terminal_do_not_import_prompt_toolkit():
    """prompt_toolkit (~0.15 s to import) is loaded only for the shell's prompt: the CLI imports without it."""
    script = "import sys, xsplice_emu.cli; print('prompt_toolkit' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"
