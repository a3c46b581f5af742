"""Benchmark of a real Xen image beside the firmware (issue: bring your own Xen).

Side by side in one run, medians of --rounds: the built-in firmware alone
(the baseline) and with Debian's xen-syms-4.17 mapped by page tables. Boot
(machine + 2 virtual ms), guest MIPS on busy vCPUs (paging on: TLB walks),
apply wall time of xen_hello_world (built for each), and 1,000 calls of
xen_extra_version (the firmware's, then the real one), with the ratios.

    python bench/real_xen.py [--rounds N] [--json]
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
from xsplice_emu.debian import load_xen_syms  # noqa: E402
from xsplice_emu.livepatch import Action, Livepatch  # noqa: E402
from xsplice_emu.xen_tests import xen_test_payloads, xen_tests_for  # noqa: E402

CALLS = 1000


def boot(firmware, xen, vcpus: int) -> tuple[Machine, float]:
    gc.collect()  # free the last measurement's machine (its Unicorn instances) outside the timed part
    started = time.perf_counter()
    machine = Machine(firmware, config=MachineConfig(vcpus=vcpus, seed=1), hypervisor=xen)
    machine.run_for(2_000_000)
    return machine, time.perf_counter() - started


def mips(firmware, xen, vcpus: int) -> float:
    machine, _ = boot(firmware, xen, vcpus)
    for cpu in range(vcpus):
        machine.call(cpu, "call_set_busy", 1)
    before = machine.instructions
    started = time.perf_counter()
    machine.run_for(20_000_000)
    return (machine.instructions - before) / (time.perf_counter() - started) / 1e6


def apply_wall(firmware, xen, payload: Path, vcpus: int) -> float:
    machine, _ = boot(firmware, xen, vcpus)
    for cpu in range(vcpus):
        machine.call(cpu, "xen_major_version")
        machine.call(cpu, "call_set_busy", 1)
    machine.run_for(100_000)
    livepatch = Livepatch(machine)
    livepatch.upload("hello", payload.read_bytes())
    started = time.perf_counter()
    result = livepatch.run_action("hello", Action.APPLY)
    seconds = time.perf_counter() - started
    assert result.rc == 0, result
    return seconds


def calls(firmware, xen) -> float:
    machine, _ = boot(firmware, xen, 1)
    address = machine.hypervisor.address("xen_extra_version")
    started = time.perf_counter()
    for _ in range(CALLS):
        machine.call(0, address)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    firmware = load_image(builtin_firmware())
    xen = load_xen_syms("debian")
    payloads = {"firmware": xen_test_payloads() / "xen_hello_world.livepatch",
                "real": xen_tests_for(xen.path) / "xen_hello_world.livepatch"}
    measures = {
        "boot 8 vCPUs ms": lambda x: boot(firmware, x, 8)[1] * 1e3,
        "boot 72 vCPUs ms": lambda x: boot(firmware, x, 72)[1] * 1e3,
        "MIPS 8 busy vCPUs": lambda x: mips(firmware, x, 8),
        "apply wall 8 busy ms": lambda x: apply_wall(firmware, x, payloads["real" if x else "firmware"], 8) * 1e3,
        "apply wall 72 busy ms": lambda x: apply_wall(firmware, x, payloads["real" if x else "firmware"], 72) * 1e3,
        f"{CALLS} xen_extra_version calls ms": lambda x: calls(firmware, x) * 1e3,
    }
    report = {}
    for name, measure in measures.items():
        samples: dict[str, list[float]] = {"firmware": [], "real": []}
        for _ in range(args.rounds):  # alternate, so drift on the host hits both alike
            samples["firmware"].append(measure(None))
            samples["real"].append(measure(xen))
        base, real = statistics.median(samples["firmware"]), statistics.median(samples["real"])
        report[name] = {"firmware": round(base, 2), "real_xen": round(real, 2), "ratio": round(real / base, 3)}
    if args.json:
        print(json.dumps(report))
        return
    print(f"{'':34} {'firmware':>10} {'+ real Xen':>11} {'ratio':>7}")
    for name, row in report.items():
        print(f"{name:34} {row['firmware']:>10.2f} {row['real_xen']:>11.2f} {row['ratio']:>7.3f}")


if __name__ == "__main__":
    main()
