"""Which files are scenarios: `is_scenario` for one file, `scenario_files` for files and directories.

A TOML file is a scenario when its top level has `step` or `machine`, or a
key that is a typo of `step` (`[[steps]]`): those are collected and then
fail with their error, never left out in silence. Other TOML files
(pyproject.toml, a tool's settings) are not scenarios. A file that is not
valid TOML is a scenario when it mentions `step`, so that it fails with the
parser's line.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from ..errors import ConfigError, FileError
from ..files import TEXT_LIMIT, read_file, read_toml

SCENARIO_KEYS = ("step", "machine")


def is_scenario(path: Path) -> bool:
    """Whether `path` is a `*.toml` scenario file (a malformed one too); unreadable files are not."""
    if path.suffix != ".toml":
        return False
    try:
        keys = read_toml(path, what="scenario").keys()
    except FileError:  # not a regular file (a FIFO), unreadable, too large
        return False
    except ConfigError:  # not valid TOML
        return b"step" in read_file(path, limit=TEXT_LIMIT, what="scenario")
    return any(key in SCENARIO_KEYS or difflib.get_close_matches(key, ["step"], cutoff=0.75) for key in keys)


def scenario_files(paths: list[str]) -> list[Path]:
    """`paths` with each directory replaced by the scenario files under it, sorted (hidden folders left out);
    ConfigError for a directory that holds none."""
    found: list[Path] = []
    for given in map(Path, paths):
        if not given.is_dir():
            found.append(given)
            continue
        inside = [path for path in sorted(given.rglob("*.toml"))
                  if not any(part.startswith(".") for part in path.relative_to(given).parts) and is_scenario(path)]
        if not inside:
            raise ConfigError(f"{given}: no scenario files in it (*.toml with [[step]] tables)")
        found += inside
    return found
