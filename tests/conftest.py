"""Shared fixtures: the built-in firmware, built once per session. Every Trace made in the
suite checks each event at its emit site (XSPLICE_EMU_CHECK_EVENTS=1). The tiers: a test marked
`long` is `slow` too, so `-m "not slow"` (make test-fast) leaves both out and `-m "not long"` (make
test) leaves out only the long; the summary names any test outside the long tier over its budget."""

from __future__ import annotations

import os
import shutil

import pytest
from helpers import PAYLOADS

from xsplice_emu import Machine, MachineConfig, builtin_firmware, load_image
from xsplice_emu.authoring.xen_tests import xen_test_payloads
from xsplice_emu.engines.controller import Livepatch
from xsplice_emu.tracing.trace import CHECK_EVENTS

INNER_LOOP_BUDGET_S = 10  # no test outside the slow tier takes longer on an idle machine (README: Tests)


def pytest_addoption(parser):
    """--fuzz-cases and --fuzz-seed for tests/test_fuzz.py (`make fuzz` runs 10,000), --fuzz-axis-cases for
    tests/test_fuzz_*.py (`make fuzz` runs 2,000 each), --slow-recipes for tests/test_docs_recipes.py (`make
    recipes`), --xen-build for tests/test_xen_bugs.py (`make xen-bugs`: builds Xen, minutes)."""
    parser.addoption("--fuzz-cases", type=int, default=300, help="mutated payloads to try")
    parser.addoption("--fuzz-seed", type=int, default=1, help="seed of the mutator")
    parser.addoption("--fuzz-axis-cases", type=int, default=200,
                     help="cases for each of the other fuzz axes (tests/test_fuzz_*.py: names, hooks, sessions)")
    parser.addoption("--slow-recipes", action="store_true",
                     help="also run the README's and docs' blocks marked slow (downloads, QEMU, long runs)")
    parser.addoption("--xen-build", action="store_true",
                     help="build Xen 4.17.7 and its buggy variants from source (XEN_SOURCE, else Debian's source)")


def pytest_configure(config):
    """Turn on the emit-site event check for the whole suite."""
    os.environ[CHECK_EVENTS] = "1"


def pytest_collection_modifyitems(items):
    """Mark every long test slow too: the inner loop (`-m "not slow"`) never runs one."""
    for item in items:
        if item.get_closest_marker("long"):
            item.add_marker(pytest.mark.slow)


def pytest_terminal_summary(terminalreporter):
    """Name each test of the inner loop (not slow, not long) whose call took over INNER_LOOP_BUDGET_S, with the load
    average.

    A report, not a failure: on the 2 shared cores the same test takes 2-3 times longer under load, so a
    timing check would fail runs for what other jobs do. The rule is kept by reading this section."""
    over = [report for reports in terminalreporter.stats.values() for report in reports
            if getattr(report, "when", None) == "call" and report.duration > INNER_LOOP_BUDGET_S
            and "slow" not in report.keywords]
    if over:
        load = ", ".join(f"{figure:.2f}" for figure in os.getloadavg())
        terminalreporter.section(f"over {INNER_LOOP_BUDGET_S} s outside the slow tier (load average {load})")
        for report in sorted(over, key=lambda report: -report.duration):
            terminalreporter.write_line(f"{report.duration:6.2f}s {report.nodeid}: speed it up or mark it slow")


@pytest.fixture(scope="session")
def image():
    """The built-in firmware image."""
    return load_image(builtin_firmware())


@pytest.fixture
def boot(image):
    """Make a machine with the built-in firmware and run it for `ms` virtual ms."""
    def make(vcpus: int = 2, *, seed: int = 0, ms: float = 3, **options) -> Machine:
        machine = Machine(image, config=MachineConfig(vcpus=vcpus, seed=seed, **options))
        machine.run_for(int(ms * 1_000_000))
        return machine
    return make


@pytest.fixture(scope="session")
def payloads(image):
    """payloads/build: Xen's test payloads, copied from the cache (built there when their sources changed)."""
    shutil.copytree(xen_test_payloads(), PAYLOADS, dirs_exist_ok=True)
    return PAYLOADS


@pytest.fixture
def patching(image, payloads):
    """A booted machine with its livepatch controller."""
    def make(vcpus: int = 4, *, seed: int = 1) -> tuple[Machine, Livepatch]:
        machine = Machine(image, config=MachineConfig(vcpus=vcpus, seed=seed))
        machine.run_for(2_000_000)
        return machine, Livepatch(machine)
    return make

