"""A pytest plugin (entry point `pytest11`): scenario files collected as test items.

A scenario file (`scenario.discovery`: a `*.toml` file with `[[step]]` or
`[machine]` tables) is checked when collected: a malformed one (a `[step]`
typo, no steps, an unknown key) is a collection error with its one-line
message. Each file gives one item, or one per seed and vCPU count given by
`--xsplice-seeds` and `--xsplice-vcpus`; an item passes when every
expectation holds, and a failure lists each failed expectation and the
command line that reproduces it. A scenario that needs what the host cannot
provide (a Debian build that cannot be fetched) is skipped with the reason.
`pytest -p no:xsplice_emu` turns the plugin off.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import pytest

from .errors import XspliceEmuError
from .platform import NR_CPUS
from .scenario import load_scenario, run_scenario
from .scenario.discovery import is_scenario
from .scenario.keys import Value
from .scenario.spec import ScenarioUnavailable

SEED_MAX = Value.INTEGER.bounds[1]
MAX_NUMBERS = 10_000
"""Seeds (or vCPU counts) one option may give: each is an item per scenario (`explore` runs bigger campaigns)."""


def pytest_addoption(parser: pytest.Parser) -> None:
    """--xsplice-seeds and --xsplice-vcpus: a CI matrix over every scenario item."""
    group = parser.getgroup("xsplice-emu", "xsplice-emu scenarios (*.toml files with [[step]] tables)")
    group.addoption("--xsplice-seeds", metavar="SEEDS", type=lambda text: _numbers(text, 0, SEED_MAX),
                    help="Run every scenario once per seed, overriding its own: numbers and ranges, e.g. 1-20 or "
                         "0,5,9-12 (each 0..2^63-1).")
    group.addoption("--xsplice-vcpus", metavar="COUNTS", type=lambda text: _numbers(text, 1, NR_CPUS),
                    help=f"Run every scenario once per vCPU count, overriding its own: e.g. 1,8,72 "
                         f"(each 1..{NR_CPUS}).")


def _numbers(text: str, least: int, most: int) -> list[int]:
    """`1-3,7` as [1, 2, 3, 7]; ArgumentTypeError (pytest's usage error naming the option) when malformed."""
    numbers: list[int] = []
    for part in text.split(","):
        first, dash, last = part.strip().partition("-")
        if not (first.isdigit() and (last.isdigit() or not dash)):
            raise argparse.ArgumentTypeError(f"{part!r} is not a number or a range N-M")
        low, high = int(first), int(last) if dash else int(first)
        if not least <= low <= high <= most:
            raise argparse.ArgumentTypeError(f"{part!r} is not within {least}..{most} (or is a range M-N with M > N)")
        given = len(numbers) + high - low + 1
        if given > MAX_NUMBERS:
            raise argparse.ArgumentTypeError(f"{text!r} gives {given:,} or more numbers, each an item per scenario: "
                                             f"at most {MAX_NUMBERS:,}")
        numbers += range(low, high + 1)
    return numbers


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.File | None:
    """A ScenarioFile for a scenario file; other TOML files (pyproject.toml) are left alone."""
    if is_scenario(file_path):
        return ScenarioFile.from_parent(parent, path=file_path)
    return None


class ScenarioFile(pytest.File):
    """One scenario file: checked whole, then one item per seed and vCPU count asked for (else one)."""

    def collect(self):
        try:
            load_scenario(self.path)
        except ScenarioUnavailable as exc:
            pytest.skip(str(exc))
        except XspliceEmuError as exc:
            raise self.CollectError(f"error: {exc}") from None
        seeds = self.config.getoption("xsplice_seeds") or [None]
        counts = self.config.getoption("xsplice_vcpus") or [None]
        for seed, vcpus in itertools.product(seeds, counts):
            labels = [f"{label}{value}" for label, value in (("seed", seed), ("vcpus", vcpus)) if value is not None]
            name = self.path.stem + (f"[{'-'.join(labels)}]" if labels else "")
            yield ScenarioItem.from_parent(self, name=name, seed=seed, vcpus=vcpus)


class ScenarioFailed(Exception):
    """A scenario whose expectations did not all hold, or that could not be read."""


class ScenarioItem(pytest.Item):
    """Run the scenario on its own machine (its seed or vCPU count overridden if asked)."""

    def __init__(self, *, seed: int | None, vcpus: int | None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.vcpus = vcpus

    def runtest(self) -> None:
        try:
            result = run_scenario(load_scenario(self.path, seed=self.seed, vcpus=self.vcpus))
        except XspliceEmuError as exc:
            raise ScenarioFailed(f"error: {exc}") from None
        if not result.ok:
            raise ScenarioFailed("\n".join([*result.failure_lines(), f"reproduce: {result.reproduce}",
                                            f"digest: {result.digest}"]))

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, ScenarioFailed):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, None, f"scenario {self.name}"
