"""Run benchmarks side by side on this tree and on another git revision.

    python bench/compare.py --against HEAD~1 [--rounds 3] [--same-bench] [--args "--runs 200"] bench/machine.py

The other revision is checked out into a temporary git worktree with its own
firmware and payloads (built by that revision's own code); each round runs
every benchmark's `--json` on both trees, alternating (each goes first in
every other round), so host noise hits both alike. With --same-bench, this
tree's benchmark scripts replace the other revision's, so both are measured
by the same code. For every number both report, it prints the median of
each side and the ratio this/that.
Host timings vary +-20 % run to run: read a ratio against that noise, and
run more rounds to narrow it.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
XEN417_PAYLOADS = Path("payloads/build-xen417")


def prepare(tree: Path) -> None:
    """Build the tree's firmware and payloads/build with its own code (older trees: their Makefiles), and Xen's test
    payloads against Debian's Xen (payloads/build-xen417, for the xen engine's benchmarks) where this tree has them."""
    cli = tree / "xsplice-emu.sh"
    cli.write_text(f'#!/bin/sh\nPYTHONPATH={tree} exec {sys.executable} -c '
                   '"import sys; from xsplice_emu.cli import main; sys.argv[0] = \'xsplice-emu\'; main()" "$@"\n')
    cli.chmod(0o755)
    if (tree / "payloads" / "Makefile").exists():
        subprocess.run(["make", "-s", "-C", str(tree / "firmware")], check=True)
        command = ["make", "-s", "-C", str(tree / "payloads"), f"XSPLICE_EMU={cli}"]
    else:
        command = [str(cli), "payload", "build-tests", str(tree / "payloads" / "build")]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, cwd=tree)  # `python -c` imports from the cwd first
    if (ROOT / XEN417_PAYLOADS).is_dir():
        subprocess.run([str(cli), "payload", "build-tests", str(tree / XEN417_PAYLOADS), "--against", "debian"],
                       check=True, stdout=subprocess.DEVNULL, cwd=tree)


def run(tree: Path, bench: str, arguments: list[str]) -> dict[str, float]:
    """One `--json` run of `bench` (with `arguments`) in `tree`, flattened to {"a.b.c": number}."""
    done = subprocess.run([sys.executable, str(tree / bench), "--json", *arguments], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(tree)}, cwd=tree)
    if done.returncode:
        sys.exit(f"{tree / bench} failed (exit {done.returncode}):\n{done.stderr.strip()}")
    return dict(_numbers(json.loads(done.stdout.strip().splitlines()[-1])))


def _numbers(value, prefix: str = ""):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _numbers(item, f"{prefix}{key}.")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield prefix.rstrip("."), float(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", required=True, help="git revision to compare with")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--same-bench", action="store_true", help="run this tree's benchmark scripts on both")
    parser.add_argument("--args", default="", help="more arguments for every benchmark, as one string")
    parser.add_argument("benches", nargs="+", help="benchmark scripts, relative to the tree")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="xsplice-bench-") as tmp:
        other = Path(tmp) / "tree"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(other), args.against],
                       check=True)
        try:
            prepare(other)
            if args.same_bench:
                for bench in args.benches:
                    shutil.copyfile(ROOT / bench, other / bench)
            for bench in args.benches:
                mine: dict[str, list[float]] = {}
                theirs: dict[str, list[float]] = {}
                for round_number in range(args.rounds):
                    sides = ((ROOT, mine), (other, theirs))
                    for tree, sink in sides if round_number % 2 == 0 else reversed(sides):  # who goes first, in turn
                        for key, number in run(tree, bench, shlex.split(args.args)).items():
                            sink.setdefault(key, []).append(number)
                print(f"{bench}: median of {args.rounds} rounds, this tree vs {args.against}")
                for key in [k for k in mine if k in theirs]:
                    a, b = statistics.median(mine[key]), statistics.median(theirs[key])
                    ratio = f"{a / b:6.3f}" if b else "     -"
                    print(f"  {key:<40} {a:>12.3f} {b:>12.3f}  ratio {ratio}")
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(other)], check=False)


if __name__ == "__main__":
    main()
