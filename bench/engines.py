"""Apply of Xen's hello world on each engine side by side, at 2, 8 and 72 vCPUs: host wall and CPU time of
the apply (request to completion, Xen's GET included on the xen engine; median of ROUNDS seeds, the wall's
spread, and the least CPU time: host noise only adds), the CPU time of a second apply on the same machine
(warm: its code translated), its virtual latency, and how many times the controller engine's host time the xen
engine takes. Then what the first apply translates (on another machine than the timed ones): the blocks Unicorn
made on all vCPUs, a count no host noise moves, and what translating them costs at the rate the vCPUs translate
as they run (the wall an apply gains when they dropped those blocks first, per block it made), also as a multiple
of the controller engine's apply wall: a floor under the ratio that only fewer blocks lower. The engines take
turns seed by seed (which goes first alternating), so that a change in the host's speed, which moves these
figures by up to 2x within minutes on a shared machine, falls on both. On the xen engine the rendezvous is Xen's
own check_for_livepatch_work, so its virtual latency grows with the number of CPUs.

    .venv/bin/python bench/engines.py [--oracle] [VCPUS...]      (payloads: make payloads-xen417)

With --oracle the safety oracle is on (the default of every command); without, off.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from unicorn import UC_HOOK_EDGE_GENERATED

from xsplice_emu.control.session import Session
from xsplice_emu.livepatch.states import Action

ROOT = Path(__file__).resolve().parent.parent
PAYLOAD = ROOT / "payloads" / "build-xen417" / "xen_hello_world.livepatch"
ROUNDS = 5
ENGINES = ("controller", "xen")
PAYLOADS = ("xen_hello_world", "xen_bye_world")


@dataclass(frozen=True)
class Apply:
    """One apply: host wall and CPU seconds (CPU time is what a busy machine disturbs least), virtual ns; and
    the CPU seconds of a second apply on the same machine (another payload: the rendezvous code translated)."""

    wall: float
    cpu: float
    virtual_ns: int
    warm_cpu: float


def timed(session: Session, name: str) -> tuple[float, float, int]:
    """(wall, CPU, virtual ns) of applying `name`, uploaded first."""
    session.livepatch.upload(name, PAYLOAD.with_name(f"{name}.livepatch").read_bytes())
    gc.collect()  # earlier sessions' machines freed now, not by a collection inside the timed apply
    wall, cpu = time.perf_counter(), time.process_time()
    result = session.livepatch.run_action(name, Action.APPLY)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert result is not None and result.rc == 0 and result.release_ns is not None, (name, result)
    return wall, cpu, result.release_ns


def apply_once(engine: str, vcpus: int, seed: int, *, oracle: bool) -> Apply:
    """Xen's hello world applied on a fresh session, then its bye world."""
    session = Session(vcpus=vcpus, seed=seed, xen_syms="debian", engine=engine, oracle=oracle)
    wall, cpu, virtual_ns = timed(session, "xen_hello_world")
    applied = Apply(wall, cpu, virtual_ns, timed(session, "xen_bye_world")[1])
    session.close()
    return applied


@dataclass(frozen=True)
class Translation:
    """The blocks a first apply made Unicorn translate on all vCPUs, and the microseconds one takes as they run."""

    blocks: int
    us_per_block: float

    @property
    def ms(self) -> float:
        return self.blocks * self.us_per_block / 1000


def blocks_made(session: Session, action: Callable[[], None]) -> list[tuple[int, int]]:
    """(vCPU, address) of each block Unicorn translates while `action` runs (its hook on new blocks, removed
    after: a Python call per block would be timed with them)."""
    made: list[tuple[int, int]] = []
    hooks = [(vcpu, vcpu.uc.hook_add(UC_HOOK_EDGE_GENERATED,
                                     lambda uc, new, previous, data, index=vcpu.index: made.append((index, new.pc))))
             for vcpu in session.machine.vcpus]
    action()
    for vcpu, hook in hooks:
        vcpu.uc.hook_del(hook)
    return made


def act(session: Session, name: str, action: Action) -> float:
    """Run `action` on payload `name`: its wall seconds."""
    gc.collect()
    started = time.perf_counter()
    result = session.livepatch.run_action(name, action)
    wall = time.perf_counter() - started
    assert result is not None and result.rc == 0, (name, action, result)
    return wall


def translated(engine: str, vcpus: int) -> Translation:
    """What the first apply on a fresh session translates, and what a translation costs as the vCPUs make them:
    ROUNDS times on that session, a second payload applied (then reverted) with its path translated, and applied
    again after every vCPU dropped the first apply's blocks, which Unicorn translates anew as they run: the wall
    that adds (median), over the blocks such an apply makes (counted in an apply of its own). Asking Unicorn for
    a dropped block (`ctl_request_cache`) is no measure: on Xen's halted vCPUs it makes blocks of one
    instruction, where running they hold about five."""
    session = Session(vcpus=vcpus, seed=1, xen_syms="debian", engine=engine, oracle=False)
    first_payload, payload = PAYLOADS
    for name in PAYLOADS:
        session.livepatch.upload(name, PAYLOAD.with_name(f"{name}.livepatch").read_bytes())
    first = blocks_made(session, lambda: act(session, first_payload, Action.APPLY))
    machine_vcpus = session.machine.vcpus

    def drop() -> None:
        for index, address in first:
            machine_vcpus[index].flush(address, address + 1)

    def cycle(*, dropped: bool) -> float:
        """Apply (its wall) and revert `payload`, its first apply's blocks dropped first on every vCPU or not."""
        if dropped:
            drop()
        wall = act(session, payload, Action.APPLY)
        act(session, payload, Action.REVERT)
        return wall
    cycle(dropped=False)
    drop()
    again = len(blocks_made(session, lambda: act(session, payload, Action.APPLY)))
    act(session, payload, Action.REVERT)
    added = []
    for _ in range(ROUNDS):
        warm = cycle(dropped=False)
        added.append(cycle(dropped=True) - warm)
    session.close()
    return Translation(len(first), statistics.median(added) / again * 1e6)


def alternated(vcpus: int, *, oracle: bool) -> dict[str, list[Apply]]:
    """Each engine's applies, seed by seed, the engines taking turns at going first."""
    runs: dict[str, list[Apply]] = {engine: [] for engine in ENGINES}
    for seed in range(1, ROUNDS + 1):
        for engine in ENGINES if seed % 2 else ENGINES[::-1]:
            runs[engine].append(apply_once(engine, vcpus, seed, oracle=oracle))
    return runs


def main(counts: list[int], *, oracle: bool, as_json: bool) -> None:
    report: dict[str, float] = {}
    if not as_json:
        print(f"{'vCPUs':>5} {'engine':>10} {'wall ms':>8} {'(min-max)':>15} {'CPU ms':>7} {'least':>6} {'warm':>6} "
              f"{'virtual us':>10} {'xen/controller: wall':>21} {'CPU':>5} {'least':>5} {'warm':>5} "
              f"{'blocks':>7} {'us each':>7} {'translating ms':>14} {'/ controller wall':>17}   "
              f"oracle {'on' if oracle else 'off'}")
    for vcpus in counts:
        figures: dict[str, tuple[float, float, float, float]] = {}
        by_engine = alternated(vcpus, oracle=oracle)
        for engine in ENGINES:
            runs = by_engine[engine]
            wall = [run.wall * 1000 for run in runs]
            cpu_ms = [run.cpu * 1000 for run in runs]
            figures[engine] = (statistics.median(wall), statistics.median(cpu_ms), min(cpu_ms),
                               statistics.median(run.warm_cpu * 1000 for run in runs))
            virtual = statistics.median(run.virtual_ns for run in runs) / 1000
            median_wall, cpu, least, warm = figures[engine]
            translation = translated(engine, vcpus)
            floor = translation.ms / figures["controller"][0]
            report |= {f"{vcpus} {engine} wall ms": median_wall, f"{vcpus} {engine} CPU ms": cpu,
                       f"{vcpus} {engine} least CPU ms": least, f"{vcpus} {engine} warm CPU ms": warm,
                       f"{vcpus} {engine} virtual us": virtual, f"{vcpus} {engine} blocks": translation.blocks,
                       f"{vcpus} {engine} us a block": translation.us_per_block,
                       f"{vcpus} {engine} translating / controller wall": floor}
            if as_json:
                continue
            ratios = [f"{x / c:.1f}x" for x, c in zip(figures["xen"], figures["controller"], strict=True)] \
                if engine == "xen" else ["", "", "", ""]
            spread = f"({min(wall):.1f}-{max(wall):.1f})"
            print(f"{vcpus:>5} {engine:>10} {median_wall:>8.1f} {spread:>15} {cpu:>7.1f} {least:>6.1f} {warm:>6.1f} "
                  f"{virtual:>10.1f} {ratios[0]:>21} {ratios[1]:>5} {ratios[2]:>5} {ratios[3]:>5} "
                  f"{translation.blocks:>7} {translation.us_per_block:>7.2f} {translation.ms:>14.1f} "
                  f"{floor:>16.2f}x", flush=True)
    if as_json:
        print(json.dumps({key: round(value, 2) for key, value in report.items()}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("vcpus", type=int, nargs="*", default=[2, 8, 72], help="machine sizes (default 2 8 72)")
    parser.add_argument("--oracle", action="store_true", help="with the safety oracle on")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    main(args.vcpus, oracle=args.oracle, as_json=args.json)
