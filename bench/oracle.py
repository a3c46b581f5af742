"""Benchmark of the safety oracle.

Side by side in one run, medians of --rounds, with the oracle on and off
(--no-oracle): guest MIPS of busy vCPUs after an apply (the oracle still
watches the patched site on every vCPU that has not entered it), and the
apply wall time of xen_hello_world on busy vCPUs. Goal: within 10%.

    python bench/oracle.py [--rounds N] [--json]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from side_by_side import busy_with_payload, compare, show  # noqa: E402

from xsplice_emu import builtin_firmware, load_image  # noqa: E402
from xsplice_emu.authoring.xen_tests import xen_test_payloads  # noqa: E402
from xsplice_emu.livepatch import Action  # noqa: E402

PAYLOAD = xen_test_payloads() / "xen_hello_world.livepatch"


def apply_wall(image, vcpus: int, oracle: bool) -> float:
    _, livepatch = busy_with_payload(image, vcpus, PAYLOAD, oracle=oracle)
    started = time.perf_counter()
    result = livepatch.run_action("hello", Action.APPLY)
    seconds = time.perf_counter() - started
    assert result is not None and result.rc == 0 and not result.violations, result
    return seconds * 1e3


def mips(image, vcpus: int, oracle: bool) -> float:
    machine, livepatch = busy_with_payload(image, vcpus, PAYLOAD, oracle=oracle)
    livepatch.run_action("hello", Action.APPLY)
    before = machine.instructions
    started = time.perf_counter()
    machine.run_for(20_000_000)
    return (machine.instructions - before) / (time.perf_counter() - started) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    image = load_image(builtin_firmware())
    measures = {
        "MIPS 8 busy vCPUs": lambda on: mips(image, 8, on),
        "apply wall 8 busy ms": lambda on: apply_wall(image, 8, on),
        "apply wall 72 busy ms": lambda on: apply_wall(image, 72, on),
        "apply wall 256 busy ms": lambda on: apply_wall(image, 256, on),
    }
    report = compare(measures, ("oracle_off", False), ("oracle_on", True), rounds=args.rounds)
    show(report, ("oracle off", "oracle on"), as_json=args.json)


if __name__ == "__main__":
    main()
