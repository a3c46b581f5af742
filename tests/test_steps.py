"""The step registry: every kind reads the same from TOML and from a shell line; one duration parser."""

from __future__ import annotations

import shlex
import subprocess
import sys

import pytest

from xsplice_emu.duration import parse_duration
from xsplice_emu.errors import ConfigError
from xsplice_emu.scenario import STEP_KINDS, load_scenario
from xsplice_emu.scenario.steps import ExpectStep

KINDS = {kind.kind: kind for kind in STEP_KINDS}


@pytest.mark.parametrize("kind", STEP_KINDS, ids=lambda kind: kind.kind)
def test_each_kind_reads_the_same_from_toml_and_from_the_shell(kind, tmp_path):
    """A kind's example as a [[step]] and as a shell line give equal steps with one report line."""
    path = tmp_path / "s.toml"
    path.write_text(f"[machine]\nvcpus = 4\n[[step]]\n{kind.example[0]}\n")
    from_toml, *implicit = load_scenario(path).steps
    assert implicit == ([] if "violations" in kind.example[0] else [ExpectStep({"violations": 0})])
    words = shlex.split(kind.example[1])
    assert words[0] in kind.commands()
    from_shell = kind.from_words(words, vcpus=4)
    assert type(from_toml) is kind
    assert from_shell == from_toml
    assert from_shell.describe() == from_toml.describe()


@pytest.mark.parametrize("line, message", [
    ("expect", "expect has nothing to check"),
    ("expect colour=red", "expect has no check 'colour'"),
    ("expect nmis_lost=many", "nmis_lost must be an integer, got 'many'"),
    ("expect state.x=GONE", "state of x must be one of CHECKED, APPLIED, UNLOADED, got 'GONE'"),
    ("expect text_unchanged!=true", "expect has no check 'text_unchanged!'"),
    ("stall 1", "stall takes 2 to 3 arguments: stall VCPU DURATION [DELAY]"),
    ("call 1 f 0xZZ", "args: '0xZZ' is neither a number nor a symbol"),
    ("call 1 f 1 2 3", "call takes at most two arguments: call VCPU FUNCTION [ARG [ARG]] [expect=N] [delay=DURATION]"),
    ("nmi_storm 0,1 fast 10us", "rate_khz must be a rate in kHz, more than 0 and at most 10000, got 'fast'"),
])
def test_bad_shell_steps_are_one_clear_error(line, message):
    """A malformed step at the shell names what is wrong, the same way TOML would."""
    kind = KINDS[line.split()[0]]
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        kind.from_words(shlex.split(line), vcpus=4)


@pytest.mark.parametrize("text, ns", [("5ms", 5_000_000), ("20us", 20_000), ("1s", 1_000_000_000),
                                      ("300ns", 300), ("2.5", 2_500_000)])
def test_durations_read_with_their_unit_a_bare_number_is_ms(text, ns):
    """5ms, 20us, 1s, 300ns, and a bare number in ms."""
    assert parse_duration(text) == ns


@pytest.mark.parametrize("text", ["soon", "5 ms", "-1ms", "1h", ""])
def test_what_is_not_a_duration_is_a_config_error(text):
    """Anything else is a ConfigError quoting the text."""
    with pytest.raises(ConfigError, match="is not a duration"):
        parse_duration(text)


def test_the_library_parsers_do_not_import_click():
    """Importing the verbs and the scenario package leaves click out of sys.modules: it belongs to cli/."""
    code = "import sys, xsplice_emu.control.verbs, xsplice_emu.scenario; print('click' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
