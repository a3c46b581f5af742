"""Apply of Xen's hello world on each engine side by side, at 2, 8 and 72 vCPUs: host wall and CPU time of
the apply (request to completion, Xen's GET included on the xen engine; median of ROUNDS seeds, the wall's
spread), its virtual latency, and how many times the controller engine's host time the xen engine takes. On
the xen engine the rendezvous is Xen's own check_for_livepatch_work, so its virtual latency grows with the
number of CPUs.

    .venv/bin/python bench/engines.py [VCPUS...]      (payloads: make all, which builds payloads/build-xen417)
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from xsplice_emu.livepatch.states import Action
from xsplice_emu.session import Session

ROOT = Path(__file__).resolve().parent.parent
PAYLOAD = ROOT / "payloads" / "build-xen417" / "xen_hello_world.livepatch"
ROUNDS = 5


@dataclass(frozen=True)
class Apply:
    """One apply: host wall and CPU seconds (CPU time is what a busy machine disturbs least), virtual ns."""

    wall: float
    cpu: float
    virtual_ns: int


def apply_once(engine: str, vcpus: int, seed: int) -> Apply:
    """One apply of Xen's hello world on a fresh session."""
    session = Session(vcpus=vcpus, seed=seed, xen_syms="debian", engine=engine, oracle=False)
    session.livepatch.upload("xen_hello_world", PAYLOAD.read_bytes())
    wall, cpu = time.perf_counter(), time.process_time()
    result = session.livepatch.run_action("xen_hello_world", Action.APPLY)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert result is not None and result.rc == 0 and result.release_ns is not None, (engine, vcpus, result)
    return Apply(wall, cpu, result.release_ns)


def main(counts: list[int]) -> None:
    print(f"{'vCPUs':>5} {'engine':>10} {'wall ms':>9} {'(min-max)':>15} {'CPU ms':>8} {'virtual us':>11} "
          f"{'xen/controller wall':>20} {'CPU':>6}")
    for vcpus in counts:
        walls: dict[str, float] = {}
        cpus: dict[str, float] = {}
        for engine in ("controller", "xen"):
            runs = [apply_once(engine, vcpus, seed) for seed in range(1, ROUNDS + 1)]
            wall = [run.wall * 1000 for run in runs]
            walls[engine] = statistics.median(wall)
            cpus[engine] = statistics.median(run.cpu * 1000 for run in runs)
            virtual = statistics.median(run.virtual_ns for run in runs) / 1000
            ratios = (f"{walls['xen'] / walls['controller']:.1f}x", f"{cpus['xen'] / cpus['controller']:.1f}x") \
                if engine == "xen" else ("", "")
            spread = f"({min(wall):.1f}-{max(wall):.1f})"
            print(f"{vcpus:>5} {engine:>10} {walls[engine]:>9.1f} {spread:>15} {cpus[engine]:>8.1f} {virtual:>11.1f} "
                  f"{ratios[0]:>20} {ratios[1]:>6}", flush=True)


if __name__ == "__main__":
    main([int(arg) for arg in sys.argv[1:]] or [2, 8, 72])
