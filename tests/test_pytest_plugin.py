"""The pytest plugin: a user's `pytest` collects scenario files as test items (docs/ci.md)."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest
from helpers import PAYLOADS

pytest_plugins = ["pytester"]

HELLO = PAYLOADS / "xen_hello_world.livepatch"
PASSING = f"""
[machine]
vcpus = 2
boot_ms = 1
[[step]]
livepatch = "load {HELLO}"
[[step]]
expect = {{ extra_version = "Hello World" }}
"""


def test_the_plugin_is_registered_as_a_pytest11_entry_point():
    """Installing the package is enough: pytest finds the plugin by its entry point."""
    assert "xsplice_emu.pytest_plugin" in {point.value for point in entry_points(group="pytest11")}


@pytest.mark.slow
def test_each_scenario_is_an_item_with_its_own_verdict(pytester, payloads):
    """A passing and a failing scenario: one pass, one failure naming the expectation and the reproduce line."""
    pytester.makefile(".toml", good=PASSING, bad=PASSING.replace('"Hello World"', '"Goodbye"'))
    pytester.makefile(".toml", pyproject="[tool.other]\nx = 1\n")
    result = pytester.runpytest("-p", "no:textual-snapshot")  # that plugin shares a temp dir with the outer run
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["step 2 (expect extra_version = \"Goodbye\"):",
                                 "    extra_version on vCPUs 0-1: expected 'Goodbye', got 'Hello World'",
                                 "*reproduce: xsplice-emu run *bad.toml*"])


@pytest.mark.slow
def test_a_malformed_scenario_is_a_collection_error_with_its_one_line_error(pytester, payloads):
    """A scenario file with a bad value is a collection error giving the file's line; pytest reports it."""
    pytester.makefile(".toml", good=PASSING, broken="[[step]]\nrun_ms = 'soon'\n")
    result = pytester.runpytest("-p", "no:textual-snapshot", "--continue-on-collection-errors")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*error: *broken.toml:2: step 1 (run_ms): run_ms must be a duration in ms*"])


@pytest.mark.parametrize("text, message", [
    ("[step]\nrun_ms = 1\n", "broken.toml:1: [step] makes one table: write each step as [[step]]"),
    ("[machine]\nvcpus = 2\n", "broken.toml: no [[step]] to run"),
    ("[[steps]]\nrun_ms = 1\n", "broken.toml:1: unknown key 'steps' (did you mean 'step'?)"),
])
def test_a_step_typo_or_a_file_without_steps_is_a_collection_error(pytester, text, message):
    """`[step]`, `[[steps]]` or no step at all: collected and refused, never silently left out."""
    pytester.makefile(".toml", broken=text)
    result = pytester.runpytest("-p", "no:textual-snapshot")
    result.assert_outcomes(errors=1)
    assert message in result.stdout.str()


@pytest.mark.slow
def test_seeds_and_vcpus_options_parametrise_every_scenario(pytester, payloads):
    """--xsplice-seeds 1-2 --xsplice-vcpus 1,2: four items per scenario, each run on that seed and vCPU count."""
    pytester.makefile(".toml", good=PASSING)
    result = pytester.runpytest("-p", "no:textual-snapshot", "-v", "--xsplice-seeds", "1-2", "--xsplice-vcpus", "1,2")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["*good.toml::good[[]seed1-vcpus1[]] PASSED*",
                                 "*good.toml::good[[]seed2-vcpus2[]] PASSED*"])
    failing = pytester.makefile(".toml", three="[[step]]\nstall = { vcpu = 2, ms = 1 }\n")
    result = pytester.runpytest("-p", "no:textual-snapshot", str(failing), "--xsplice-vcpus", "2,3")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*vcpu 2 is out of range: the machine has 2 vCPUs*"])


def test_pytest_help_documents_the_options_and_a_bad_range_is_a_usage_error(pytester):
    """`pytest --help` lists both options; `--xsplice-vcpus 0` is refused before anything runs."""
    help_text = pytester.runpytest("--help").stdout.str()
    assert "--xsplice-seeds=SEEDS" in help_text and "--xsplice-vcpus=COUNTS" in help_text
    result = pytester.runpytest("--xsplice-vcpus", "0,8")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*argument --xsplice-vcpus: '0' is not within 1..256*"])


def test_a_range_of_more_seeds_than_items_can_hold_is_a_usage_error(pytester):
    """--xsplice-seeds 1-100000000000 (an item per seed and scenario) is refused at once, not a MemoryError."""
    result = pytester.runpytest("--xsplice-seeds", "1-100000000000")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*argument --xsplice-seeds: '1-100000000000' gives 100,000,000,000 or more numbers, "
                                 "each an item per scenario: at most 10,000*"])
    assert "Traceback" not in result.stderr.str()

