"""Benchmark of the safety oracle (issue: a safety oracle and fault injection).

Side by side in one run, medians of --rounds, with the oracle on and off
(--no-oracle): guest MIPS of busy vCPUs after an apply (the oracle still
watches the patched site on every vCPU that has not entered it), and the
apply wall time of xen_hello_world on busy vCPUs. Goal: within 10%.

    python bench/oracle.py [--rounds N] [--json]
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from xsplice_emu import Machine, MachineConfig, builtin_firmware, load_image  # noqa: E402
from xsplice_emu.livepatch import Action, Livepatch  # noqa: E402
from xsplice_emu.xen_tests import xen_test_payloads  # noqa: E402

PAYLOAD = xen_test_payloads() / "xen_hello_world.livepatch"


def busy_machine(image, vcpus: int, oracle: bool) -> tuple[Machine, Livepatch]:
    gc.collect()
    machine = Machine(image, config=MachineConfig(vcpus=vcpus, seed=1))
    machine.run_for(2_000_000)
    for cpu in range(vcpus):
        machine.call(cpu, "xen_major_version")
        machine.call(cpu, "call_set_busy", 1)
    machine.run_for(100_000)
    livepatch = Livepatch(machine, oracle=oracle)
    livepatch.upload("hello", PAYLOAD.read_bytes())
    return machine, livepatch


def apply_wall(image, vcpus: int, oracle: bool) -> float:
    machine, livepatch = busy_machine(image, vcpus, oracle)
    started = time.perf_counter()
    result = livepatch.run_action("hello", Action.APPLY)
    seconds = time.perf_counter() - started
    assert result is not None and result.rc == 0 and not result.violations, result
    return seconds * 1e3


def mips(image, vcpus: int, oracle: bool) -> float:
    machine, livepatch = busy_machine(image, vcpus, oracle)
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
    report = {}
    for name, measure in measures.items():
        samples: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(args.rounds):  # alternate, so drift on the host hits both alike
            samples[False].append(measure(False))
            samples[True].append(measure(True))
        off, on = statistics.median(samples[False]), statistics.median(samples[True])
        report[name] = {"oracle_off": round(off, 2), "oracle_on": round(on, 2), "ratio": round(on / off, 3)}
    if args.json:
        print(json.dumps(report))
        return
    print(f"{'':26} {'oracle off':>11} {'oracle on':>10} {'ratio':>7}")
    for name, row in report.items():
        print(f"{name:26} {row['oracle_off']:>11.2f} {row['oracle_on']:>10.2f} {row['ratio']:>7.3f}")


if __name__ == "__main__":
    main()
