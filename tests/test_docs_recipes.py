"""Every shell and Python block of README.md and docs/*.md runs, as a reader would run it.

The blocks of one page run in order in one temporary directory laid out as
a checkout (its scenarios and payload sources copied, the rest linked, this
checkout's .venv first on PATH), so a block may use what an earlier one
made. A comment line just before a block marks it:

    <!-- recipe: slow (why) -->    runs only with --slow-recipes (downloads, QEMU, long runs)
    <!-- recipe: skip (why) -->    never runs (interactive, or the whole suite)
    <!-- recipe: file NAME -->     the block is written to NAME (a scenario the next block runs)

```sh and ```python blocks run; other languages (toml, yaml, text) are
text unless written to a file. Every code block is fenced and names its
language, so no recipe escapes this test.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUNNABLE = {"sh": ["bash", "-euo", "pipefail", "-c"], "python": [sys.executable, "-c"]}
MARKER = re.compile(r"<!-- recipe: (slow|skip|file) (.+?) -->")
LINKED = ("Makefile", "pyproject.toml", "setup.py", "firmware", "xenctrl", "xsplice_emu", "README.md", "docs")
BLOCK_TIMEOUT_S = 300
LONG_PAGES = {"ci.md"}  # runs every scenario twice more (run and pytest), as test_scenarios does: make test-long


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    language: str
    text: str
    marker: tuple[str, str] | None

    def __str__(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """The fenced code blocks of `page`, each with the recipe marker on the line before its fence."""
    lines = page.read_text().splitlines()
    found, number = [], 0
    while number < len(lines):
        fence = re.match(r"```(\S*)", lines[number])
        if not fence:
            number += 1
            continue
        end = next(n for n in range(number + 1, len(lines)) if lines[n].startswith("```"))
        before = MARKER.match(lines[number - 1]) if number else None
        found.append(Block(page, number + 1, fence.group(1), "\n".join(lines[number + 1:end]) + "\n",
                           before.groups() if before else None))
        number = end + 1
    return found


@pytest.fixture
def checkout(tmp_path, payloads):
    """A temporary directory laid out as this checkout, without its build outputs."""
    for name in LINKED:
        (tmp_path / name).symlink_to(ROOT / name)
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    shutil.copytree(ROOT / "scenarios", tmp_path / "scenarios", ignore=shutil.ignore_patterns("__pycache__"))
    for source in ("include", "src"):
        shutil.copytree(ROOT / "payloads" / source, tmp_path / "payloads" / source)
    return tmp_path


@pytest.mark.slow
@pytest.mark.parametrize("page", [pytest.param(page, marks=pytest.mark.long) if page.name in LONG_PAGES else page
                                  for page in PAGES], ids=lambda page: page.name)
def test_every_recipe_on_the_page_runs(page, checkout, request):
    """Each shell and Python block of the page exits 0 when run in order in a fresh checkout-like directory."""
    slow = request.config.getoption("--slow-recipes")
    environment = {**os.environ, "PATH": f"{checkout / '.venv' / 'bin'}:{os.environ['PATH']}",
                   "XDG_CACHE_HOME": os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache"))}
    for block in blocks(page):
        kind, argument = block.marker or ("", "")
        if kind == "file":
            (checkout / argument).write_text(block.text)
            continue
        if block.language not in RUNNABLE or kind == "skip" or kind == "slow" and not slow:
            continue
        result = subprocess.run([*RUNNABLE[block.language], block.text], cwd=checkout, env=environment,
                                capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S, stdin=subprocess.DEVNULL)
        assert result.returncode == 0, f"{block} exits {result.returncode}:\n{block.text}\n{result.stdout[-3000:]}" \
                                       f"\n{result.stderr[-3000:]}"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_code_block_is_fenced_with_its_language(page):
    """No indented code block (this test would not see it) and no fence without a language."""
    inside = False
    previous = ""
    for number, line in enumerate(page.read_text().splitlines(), 1):
        if line.startswith("```"):
            assert inside or line != "```", f"{page.name}:{number}: a fence without a language"
            inside = not inside
        elif not inside:
            assert not (line.startswith("    ") and not previous.strip()), \
                f"{page.name}:{number}: an indented code block; fence it (```sh) so that it is run"
        previous = line


def test_markers_are_known_and_each_slow_or_skipped_block_says_why():
    """A marker is slow, skip or file, with a reason or a name, and stands right before a fenced block."""
    for page in PAGES:
        lines = page.read_text().splitlines()
        for number, line in enumerate(lines):
            if line.startswith("<!-- recipe"):
                assert MARKER.fullmatch(line), f"{page.name}:{number + 1}: malformed marker {line!r}"
                assert lines[number + 1].startswith("```"), f"{page.name}:{number + 1}: marker not before a fence"
