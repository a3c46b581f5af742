"""Apply of Xen's hello world on each engine side by side, at 2, 8 and 72 vCPUs: host wall time of the apply
(request to completion, Xen's GET included on the xen engine) and its virtual latency. On the xen engine the
rendezvous is Xen's own check_for_livepatch_work, so its virtual latency grows with the number of CPUs.

    .venv/bin/python bench/engines.py [--oracle] [VCPUS...]      (payloads: make payloads-xen417)

With --oracle the safety oracle is on (the default of every command); without, off.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

from xsplice_emu.control.session import Session
from xsplice_emu.livepatch.states import Action

ROOT = Path(__file__).resolve().parent.parent
PAYLOAD = ROOT / "payloads" / "build-xen417" / "xen_hello_world.livepatch"
ROUNDS = 3


def apply_once(engine: str, vcpus: int, seed: int, *, oracle: bool) -> tuple[float, int]:
    """(host seconds, virtual ns) of one apply on a fresh session."""
    session = Session(vcpus=vcpus, seed=seed, xen_syms="debian", engine=engine, oracle=oracle)
    session.livepatch.upload("xen_hello_world", PAYLOAD.read_bytes())
    started = time.perf_counter()
    result = session.livepatch.run_action("xen_hello_world", Action.APPLY)
    host = time.perf_counter() - started
    assert result is not None and result.rc == 0 and result.release_ns is not None, (engine, vcpus, result)
    return host, result.release_ns


def main(counts: list[int], *, oracle: bool) -> None:
    print(f"{'vCPUs':>5} {'engine':>10} {'host ms':>9} {'virtual us':>11}   oracle {'on' if oracle else 'off'}")
    for vcpus in counts:
        for engine in ("controller", "xen"):
            runs = [apply_once(engine, vcpus, seed, oracle=oracle) for seed in range(1, ROUNDS + 1)]
            host = statistics.median(run[0] for run in runs) * 1000
            virtual = statistics.median(run[1] for run in runs) / 1000
            print(f"{vcpus:>5} {engine:>10} {host:>9.1f} {virtual:>11.1f}", flush=True)


if __name__ == "__main__":
    arguments = sys.argv[1:]
    main([int(arg) for arg in arguments if arg != "--oracle"] or [2, 8, 72], oracle="--oracle" in arguments)
