"""How the side-by-side benchmarks (oracle.py, real_xen.py) measure: two configurations in alternating rounds,
medians and their ratio; and the busy machine with a payload uploaded that their apply measurements start from."""

from __future__ import annotations

import gc
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from xsplice_emu import Image, Machine, MachineConfig
from xsplice_emu.engines.controller import Livepatch


def booted(image: Image, vcpus: int, *, hypervisor: Image | None = None) -> tuple[Machine, float]:
    """A machine after 2 virtual ms of boot, and the host seconds that took (the last measurement's machine
    is freed first, outside the timed part)."""
    gc.collect()
    started = time.perf_counter()
    machine = Machine(image, config=MachineConfig(vcpus=vcpus, seed=1), hypervisor=hypervisor)
    machine.run_for(2_000_000)
    return machine, time.perf_counter() - started


def busy_with_payload(image: Image, vcpus: int, payload: Path, *, hypervisor: Image | None = None,
                      oracle: bool = True) -> tuple[Machine, Livepatch]:
    """A booted machine whose every vCPU has taken a call IPI (that path translated) and runs the busy load,
    with `payload` uploaded as "hello"."""
    machine, _ = booted(image, vcpus, hypervisor=hypervisor)
    for cpu in range(vcpus):
        machine.call(cpu, "xen_major_version")
        machine.call(cpu, "call_set_busy", 1)
    machine.run_for(100_000)
    livepatch = Livepatch(machine, oracle=oracle)
    livepatch.upload("hello", payload.read_bytes())
    return machine, livepatch


def compare(measures: dict[str, Callable[[Any], float]], baseline: tuple[str, Any], other: tuple[str, Any], *,
            rounds: int) -> dict[str, dict[str, float]]:
    """Each measure on the baseline's and the other's configuration, alternately (so drift on the host hits both
    alike): name -> {baseline label: median, other label: median, "ratio": other / baseline}."""
    report = {}
    for name, measure in measures.items():
        samples: dict[str, list[float]] = {baseline[0]: [], other[0]: []}
        for _ in range(rounds):
            for label, configuration in (baseline, other):
                samples[label].append(measure(configuration))
        base, then = statistics.median(samples[baseline[0]]), statistics.median(samples[other[0]])
        report[name] = {baseline[0]: round(base, 2), other[0]: round(then, 2), "ratio": round(then / base, 3)}
    return report


def show(report: dict[str, dict[str, float]], headers: tuple[str, str], *, as_json: bool) -> None:
    """The report as one JSON object, or a table with `headers` over its two configurations."""
    if as_json:
        print(json.dumps(report))
        return
    width = max(len(name) for name in report) + 2
    print(f"{'':{width}} {headers[0]:>11} {headers[1]:>11} {'ratio':>7}")
    for name, row in report.items():
        base, then, ratio = row.values()
        print(f"{name:{width}} {base:>11.2f} {then:>11.2f} {ratio:>7.3f}")
