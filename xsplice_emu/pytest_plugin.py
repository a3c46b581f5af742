"""A pytest plugin (entry point `pytest11`): scenario files collected as test items.

A `*.toml` file with `[[step]]` tables is one test item named after the
scenario; it passes when every expectation holds. A failure lists each failed
expectation and the command line that reproduces it; a malformed file fails
with its one-line error. `pytest -p no:xsplice_emu` turns the plugin off.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .errors import FileError, XspliceEmuError
from .files import TEXT_LIMIT, read_file
from .scenario import load_scenario, run_scenario


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.File | None:
    """A ScenarioFile for a TOML file with steps; other TOML files (pyproject.toml) are left alone."""
    if file_path.suffix == ".toml" and _has_steps(file_path):
        return ScenarioFile.from_parent(parent, path=file_path)
    return None


def _has_steps(path: Path) -> bool:
    """Whether the file has a `[[step]]` table (a malformed one too: it then fails with its error)."""
    try:
        return b"[[step]]" in read_file(path, limit=TEXT_LIMIT, what="scenario")
    except FileError:  # not a regular file (a FIFO), unreadable, too large: not collected
        return False


class ScenarioFile(pytest.File):
    """One scenario file: one item."""

    def collect(self):
        yield ScenarioItem.from_parent(self, name=self.path.stem)


class ScenarioFailed(Exception):
    """A scenario whose expectations did not all hold, or that could not be read."""


class ScenarioItem(pytest.Item):
    """Run the scenario on its own machine."""

    def runtest(self) -> None:
        try:
            result = run_scenario(load_scenario(self.path))
        except XspliceEmuError as exc:
            raise ScenarioFailed(f"error: {exc}") from None
        if not result.ok:
            lines = [f"step {step.number} ({step.command}): "
                     + (f"{check.what}: expected {check.expected!r}, got {check.got!r}" if check else step.error or "")
                     for step, check in result.failures]
            raise ScenarioFailed("\n".join([*lines, f"reproduce: {result.reproduce}", f"digest: {result.digest}"]))

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, ScenarioFailed):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, None, f"scenario {self.name}"
