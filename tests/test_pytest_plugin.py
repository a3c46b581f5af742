"""The pytest plugin: a user's `pytest` collects scenario files as test items (docs/ci.md)."""

from __future__ import annotations

from importlib.metadata import entry_points

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


def test_each_scenario_is_an_item_with_its_own_verdict(pytester, payloads):
    """A passing and a failing scenario: one pass, one failure naming the expectation and the reproduce line."""
    pytester.makefile(".toml", good=PASSING, bad=PASSING.replace('"Hello World"', '"Goodbye"'))
    pytester.makefile(".toml", pyproject="[tool.other]\nx = 1\n")
    result = pytester.runpytest("-p", "no:textual-snapshot")  # that plugin shares a temp dir with the outer run
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*step 2 (expect extra_version = \"Goodbye\"): extra_version on vCPUs 0-1: "
                                 "expected 'Goodbye', got 'Hello World'*", "*reproduce: xsplice-emu run *bad.toml*"])


def test_a_malformed_scenario_fails_with_its_one_line_error(pytester):
    """A scenario file with a bad key fails its item with the loader's message; the run goes on."""
    pytester.makefile(".toml", broken="[[step]]\nrun_ms = 'soon'\n")
    result = pytester.runpytest("-p", "no:textual-snapshot")  # that plugin shares a temp dir with the outer run
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*error: *broken.toml: step 1 (run_ms): run_ms must be a duration in ms*"])
