"""Benchmark of a real Xen image beside the firmware.

Side by side in one run, medians of --rounds: the built-in firmware alone
(the baseline) and with Debian's xen-syms-4.17 mapped by page tables. Boot
(machine + 2 virtual ms), guest MIPS on busy vCPUs (paging on: TLB walks),
apply wall time of xen_hello_world (built for each), and 1,000 calls of
xen_extra_version (the firmware's, then the real one), with the ratios.

    python bench/real_xen.py [--rounds N] [--json]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from side_by_side import booted, busy_with_payload, compare, show  # noqa: E402

from xsplice_emu import builtin_firmware, load_image  # noqa: E402
from xsplice_emu.authoring.xen_tests import xen_test_payloads, xen_tests_for  # noqa: E402
from xsplice_emu.livepatch import Action  # noqa: E402
from xsplice_emu.provision.debian import load_xen_syms  # noqa: E402

CALLS = 1000


def mips(firmware, xen, vcpus: int) -> float:
    machine, _ = booted(firmware, vcpus, hypervisor=xen)
    for cpu in range(vcpus):
        machine.call(cpu, "call_set_busy", 1)
    before = machine.instructions
    started = time.perf_counter()
    machine.run_for(20_000_000)
    return (machine.instructions - before) / (time.perf_counter() - started) / 1e6


def apply_wall(firmware, xen, payload: Path, vcpus: int) -> float:
    _, livepatch = busy_with_payload(firmware, vcpus, payload, hypervisor=xen)
    started = time.perf_counter()
    result = livepatch.run_action("hello", Action.APPLY)
    seconds = time.perf_counter() - started
    assert result is not None and result.rc == 0, result
    return seconds


def calls(firmware, xen) -> float:
    machine, _ = booted(firmware, 1, hypervisor=xen)
    started = time.perf_counter()
    for _ in range(CALLS):
        machine.call(0, "xen_extra_version")
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
        "boot 8 vCPUs ms": lambda x: booted(firmware, 8, hypervisor=x)[1] * 1e3,
        "boot 72 vCPUs ms": lambda x: booted(firmware, 72, hypervisor=x)[1] * 1e3,
        "MIPS 8 busy vCPUs": lambda x: mips(firmware, x, 8),
        "apply wall 8 busy ms": lambda x: apply_wall(firmware, x, payloads["real" if x else "firmware"], 8) * 1e3,
        "apply wall 72 busy ms": lambda x: apply_wall(firmware, x, payloads["real" if x else "firmware"], 72) * 1e3,
        f"{CALLS} xen_extra_version calls ms": lambda x: calls(firmware, x) * 1e3,
    }
    report = compare(measures, ("firmware", None), ("real_xen", xen), rounds=args.rounds)
    show(report, ("firmware", "+ real Xen"), as_json=args.json)


if __name__ == "__main__":
    main()
