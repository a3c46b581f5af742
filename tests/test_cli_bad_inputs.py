"""Every command, every file argument and every number, given bad input: one line, exit 1 or 2, soon.

The cases come from the click command tree, the operator verbs and the
scenario keys themselves, so a new option or key is swept without a change
here; a new command needs its valid invocation in `BASELINES`.
"""

from __future__ import annotations

import os
import random
import signal
from collections.abc import Iterator
from dataclasses import dataclass

import click
import pytest
from click.testing import CliRunner
from helpers import PAYLOADS, ROOT

from xsplice_emu.cli import main
from xsplice_emu.cli.shell import COMMANDS as SHELL
from xsplice_emu.control.verbs import VERBS
from xsplice_emu.scenario.keys import Value
from xsplice_emu.scenario.spec import MACHINE_KEYS
from xsplice_emu.scenario.steps import STEP_KINDS

SECONDS = 30
FILES = ("missing", "directory", "/dev/zero", "empty", "random", "fifo", "unmakeable")
NUMBERS = ("-1", "0", "nan", "inf", "1e300", "100000000000000000000")
HELLO = str(PAYLOADS / "xen_hello_world.livepatch")
SOURCE = str(ROOT / "payloads" / "src" / "xen_hello_world.c")

# A valid invocation of each command: its positional arguments by parameter name, and options.
# "@trace" and "@scenario" are files made by the `inputs` fixture.
BASELINES: dict[str, tuple[dict[str, list[str]], list[str]]] = {
    "boot": ({}, ["--ms", "1", "-q"]),
    "demo": ({}, []),
    "explore": ({"scenario_path": ["@scenario"]}, ["--runs", "2"]),
    "livepatch": ({"words": ["list"]}, ["--boot-ms", "1"]),
    "payload build": ({"source": [SOURCE]}, ["-o", "@out/x.livepatch"]),
    "payload build-tests": ({"directory": ["@out/tests"]}, []),
    "payload check": ({"file": [HELLO]}, []),
    "payload inspect": ({"file": [HELLO]}, []),
    "reference": ({"scenarios": ["@scenario"]}, ["--timeout", "1"]),  # QEMU, if there, is stopped at once
    "run": ({"scenarios": ["@scenario"]}, []),
    "shell": ({}, ["--boot-ms", "1"]),
    "trace export": ({"trace_path": ["@trace"]}, ["-o", "@out/x.json"]),
    "trace summary": ({"trace_path": ["@trace"]}, []),
    "trace validate": ({"trace_path": ["@trace"]}, []),
    "view": ({"trace": ["@trace"]}, []),
    # serve would answer until signalled: its socket lies in a missing directory, so every case ends at once
    "serve": ({}, ["--socket", "@missing/s.sock"]),
    # not a Xen tree (no xen/Makefile): every case ends before anything is built
    "xen build": ({}, ["--source", "@out"]),
    "xen-tools": ({}, []),
    "xenctrl-path": ({}, []),
}
STEP_BASELINES = {"livepatch": {"livepatch": "list"}, "run": {"run_ms": 1}, "stall": {"vcpu": 1, "ms": 1},
                  "nmi": {"vcpu": 1}, "call": {"vcpu": 1, "function": "xen_major_version"}, "expect": {"nmis_lost": 0},
                  "preempt": {"vcpu": 1, "us": 10}, "nmi_storm": {"vcpus": "all", "rate_khz": 10, "us": 100},
                  "drop_flush": {"vcpu": 1}}


@dataclass(frozen=True)
class Case:
    """One command line (with `@NAME` placeholders), its piped input, and whether it may succeed."""

    name: str
    argv: tuple[str, ...]
    may_pass: bool
    stdin: str = "quit\n"


def _leaves(group: click.Group, prefix: str = "") -> Iterator[tuple[str, click.Command]]:
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from _leaves(command, f"{prefix}{name} ")
        else:
            yield f"{prefix}{name}", command


def _argv(path: str, command: click.Command, *, positional: dict[str, list[str]] | None = None,
          options: list[str] = ()) -> tuple[str, ...]:
    arguments, base_options = BASELINES[path]
    arguments = arguments | (positional or {})
    words = [word for param in command.params if isinstance(param, click.Argument)
             for word in arguments.get(param.name, [])]
    return (*path.split(), *base_options, *options, *words)


def _is_number(param: click.Parameter) -> bool:
    return isinstance(param.type, click.types._NumberParamTypeBase)


def _writes(param: click.Parameter) -> bool:
    """Whether a file parameter is a destination (overwriting an existing file there may succeed)."""
    is_option = isinstance(param, click.Option)
    return param.name == "directory" or is_option and param.name in ("trace_path", "junit_path", "output",
                                                                     "plot_path", "out_dir")


def _command_cases() -> Iterator[Case]:
    for path, command in _leaves(main):
        for param in command.params:
            if isinstance(param.type, click.Path):
                for kind in FILES:
                    may_pass = _writes(param) and kind in ("/dev/zero", "empty", "random") \
                        or param.name in ("directory", "out_dir") and kind == "directory" \
                        or path == "payload build-tests" and kind == "missing"  # made with its parents
                    if isinstance(param, click.Argument):
                        argv = _argv(path, command, positional={param.name: [f"@{kind}"]})
                    else:
                        argv = _argv(path, command, options=[param.opts[0], f"@{kind}"])
                    yield Case(f"{path} {param.opts[0]}={kind}", argv, may_pass)
            elif _is_number(param):
                for number in NUMBERS:
                    yield Case(f"{path} {param.opts[0]}={number}",
                               _argv(path, command, options=[param.opts[0], number]), number == "0")


def _verb_cases() -> Iterator[Case]:
    """The operator verbs' FILE arguments and numeric options on `livepatch`."""
    livepatch = main.commands["livepatch"]
    for verb in VERBS.values():
        names = ["p"] if "name" in verb.arguments else []
        if "file" in verb.arguments:
            for kind in FILES:
                words = [verb.name, *names, f"@{kind}"]
                yield Case(f"livepatch {verb.name} FILE={kind}",
                           _argv("livepatch", livepatch, positional={"words": words}), False)
        for option in verb.options:
            if option.type is bool:
                continue
            target = ["load", HELLO] if verb.name == "load" else ["upload", "p", HELLO, verb.name, "p"]
            for number in NUMBERS:
                words = [*target, option.flag, number]
                yield Case(f"livepatch {verb.name} {option.flag}={number}",
                           _argv("livepatch", livepatch, positional={"words": words}), number == "0")


def _shell_cases() -> Iterator[Case]:
    """Each shell command that takes a FILE, piped in: the shell ends with an error status (one that writes the
    file may write over an existing one)."""
    for command in SHELL.values():
        if "FILE" not in command.arguments:
            continue
        for kind in FILES:
            words = [command.name, *({"NAME": "p", "FILE": f"@{kind}"}.get(word, word) for word in command.arguments)]
            yield Case(f"shell {command.name} FILE={kind}", ("shell", "--boot-ms", "1"),
                       command.name in ("trace", "save") and kind in ("/dev/zero", "empty", "random"),
                       " ".join(words) + "\n")


def _toml(value: object) -> str:
    if isinstance(value, str) and value in NUMBERS:
        return value
    return f'"{value}"' if isinstance(value, str) else str(value)


def _scenario_text(machine: dict, step_key: str, step: dict) -> str:
    lines = ["[machine]", "vcpus = 2", "boot_ms = 1",
             *(f"{key} = {_toml(value)}" for key, value in machine.items()), "", "[[step]]"]
    kind = next(kind for kind in STEP_KINDS if kind.kind == step_key)
    if kind.nested:
        lines.append(f"{kind.key} = {{ {', '.join(f'{k} = {_toml(v)}' for k, v in step.items())} }}")
    else:
        lines += [f"{k} = {_toml(v)}" for k, v in step.items()]
    return "\n".join(lines) + "\n"


def _scenario_cases() -> Iterator[Case]:
    """Every number a scenario file takes, and the files it names."""
    numeric = (Value.MS, Value.US, Value.INTEGER, Value.VCPU, Value.ERRNO, Value.KHZ, Value.VIOLATIONS)
    for key in MACHINE_KEYS:
        if key.value in numeric:
            for number in NUMBERS:
                yield Case(f"scenario [machine] {key.name}={number}",
                           ("run", _scenario_text({key.name: number}, "run", STEP_BASELINES["run"])),
                           number == "0")
    for kind in STEP_KINDS:
        for key in kind.keys:
            if key.value in numeric:
                for number in NUMBERS:
                    step = STEP_BASELINES[kind.kind] | {key.name: number}
                    yield Case(f"scenario {kind.kind}.{key.name}={number}",
                               ("run", _scenario_text({}, kind.kind, step)), number == "0")
    for kind_of_file in FILES:
        for key in ("firmware", "xen_syms"):
            yield Case(f"scenario {key}={kind_of_file}",
                       ("run", _scenario_text({key: f"@{kind_of_file}"}, "run", STEP_BASELINES["run"])), False)
        yield Case(f"scenario load FILE={kind_of_file}",
                   ("run", _scenario_text({}, "livepatch", {"livepatch": f"load @{kind_of_file}"})), False)


CASES = [*_command_cases(), *_verb_cases(), *_shell_cases(), *_scenario_cases()]


@pytest.fixture(scope="module")
def valid(tmp_path_factory, payloads) -> dict[str, str]:
    """A valid trace and a valid scenario, made once."""
    root = tmp_path_factory.mktemp("valid")
    scenario = root / "scenario.toml"
    scenario.write_text(_scenario_text({}, "run", STEP_BASELINES["run"]))
    trace = root / "trace.jsonl"
    assert CliRunner().invoke(main, ["boot", "--ms", "1", "-q", "--trace", str(trace)]).exit_code == 0
    return {"trace": str(trace), "scenario": str(scenario)}


@pytest.fixture(scope="module")
def random_bytes() -> bytes:
    """3 MiB of seeded random bytes, drawn once: drawing them took half of each case's time."""
    return random.Random(12).randbytes(3 << 20)


@pytest.fixture
def inputs(request, tmp_path, valid, random_bytes) -> dict[str, str]:
    """Fresh bad files for each case (a case may overwrite one), and an output folder; the 3 MiB of random bytes
    only for a case that names them (writing them took a third of each case's time)."""
    case = request.node.callspec.params["case"]
    (tmp_path / "directory").mkdir()
    (tmp_path / "empty").write_bytes(b"")
    if any("@random" in word for word in (*case.argv, case.stdin)):
        (tmp_path / "random").write_bytes(random_bytes)
    (tmp_path / "out").mkdir()
    os.mkfifo(tmp_path / "fifo")  # no writer: opening it to read would wait for ever
    return {"missing": str(tmp_path / "missing" / "x"), "directory": str(tmp_path / "directory"),
            "/dev/zero": "/dev/zero", "empty": str(tmp_path / "empty"), "random": str(tmp_path / "random"),
            "out": str(tmp_path / "out"), "fifo": str(tmp_path / "fifo"),
            "unmakeable": "/proc/xsplice-emu-unmakeable", **valid}


def _fill(text: str, inputs: dict[str, str]) -> str:
    for name in sorted(inputs, key=len, reverse=True):
        text = text.replace(f"@{name}", inputs[name])
    return text


def _timeout(signum, frame):
    raise TimeoutError(f"still running after {SECONDS} s")


def test_every_command_is_swept():
    """Each command of the CLI has a valid invocation here, so its options are swept."""
    assert {path for path, _ in _leaves(main)} == set(BASELINES)


@pytest.mark.slow  # the sweep of every option with every bad value: ~670 cases, 11 s here, like a fuzz axis
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input_is_one_line_and_a_clear_exit(case: Case, inputs, tmp_path):
    """No traceback, exit 2 (bad input) or 1 (failed), within 30 s; 0 only for a value that is valid."""
    argv = [_fill(word, inputs) for word in case.argv]
    if argv[0] == "run" and "\n" in argv[1]:
        scenario = tmp_path / "s.toml"
        scenario.write_text(argv[1])
        argv[1] = str(scenario)
    previous = signal.signal(signal.SIGALRM, _timeout)
    signal.alarm(SECONDS)
    try:
        result = CliRunner().invoke(main, argv, input=_fill(case.stdin, inputs))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    allowed = (0, 1, 2) if case.may_pass else (1, 2)
    assert result.exit_code in allowed, result.output
    if result.exit_code == 2:
        assert "error:" in result.output.lower(), result.output
