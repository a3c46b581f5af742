"""Benchmark of exploration campaigns.

Runs per second of two 8-vCPU scenarios, side by side in one run: "apply"
(upload, then apply xen_hello_world) and "load" (the natural way: load it,
then expect its extra version). Each on a freshly booted machine (the
baseline), forked from one booted machine with --jobs 1 and 2, and on a Dask
LocalCluster of two worker processes; the same at 72 vCPUs.

    python bench/explore.py [--runs N] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from xsplice_emu.authoring.xen_tests import xen_test_payloads  # noqa: E402
from xsplice_emu.explore.campaign import Campaign, explore, run_fresh  # noqa: E402
from xsplice_emu.scenario import load_scenario  # noqa: E402

MACHINE = """
[machine]
vcpus = {vcpus}
seed = 1
"""
SCENARIOS = {
    "apply": """
[[step]]
livepatch = "upload hello {payload}"

[[step]]
livepatch = "apply hello"
""",
    "load": """
[[step]]
livepatch = "load {payload}"

[[step]]
expect = {{ extra_version = "Hello World" }}
""",
}
FRESH_RUNS = 10


def campaign(name: str, vcpus: int, folder: Path) -> Campaign:
    path = folder / f"{name}{vcpus}.toml"
    payload = xen_test_payloads() / "xen_hello_world.livepatch"
    path.write_text(MACHINE.format(vcpus=vcpus) + SCENARIOS[name].format(payload=payload))
    return Campaign.of(load_scenario(path), "random", 0)


def fresh_rate(chosen: Campaign) -> float:
    started = time.perf_counter()
    for number in range(FRESH_RUNS):
        run_fresh(chosen, number)
    return FRESH_RUNS / (time.perf_counter() - started)


def dask_rate(chosen: Campaign, runs: int) -> float:
    from distributed import LocalCluster

    from xsplice_emu.explore.cluster import explore_on_dask
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        return explore_on_dask(chosen, runs, cluster.scheduler_address).runs_per_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000, help="runs per forked measurement (72 vCPUs: a fifth)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    report = {}
    with tempfile.TemporaryDirectory() as folder:
        for vcpus, runs in ((8, args.runs), (72, max(20, args.runs // 5))):
            for name in SCENARIOS:
                chosen = campaign(name, vcpus, Path(folder))
                row = {"fresh": fresh_rate(chosen)}
                for jobs in (1, 2):
                    row[f"jobs {jobs}"] = explore(chosen, runs, jobs=jobs).runs_per_s
                row["dask 2 workers"] = dask_rate(chosen, runs)
                report[f"{vcpus} vCPUs {name}" if name != "apply" else f"{vcpus} vCPUs"] = {
                    key: round(value, 1) for key, value in row.items()}
    if args.json:
        print(json.dumps(report))
        return
    print(f"{'runs/s':15} {'fresh':>8} {'jobs 1':>8} {'jobs 2':>8} {'dask 2':>8} {'jobs 2 / fresh':>15} "
          f"{'jobs 2 / jobs 1':>16}")
    for name, row in report.items():
        print(f"{name:15} {row['fresh']:>8.1f} {row['jobs 1']:>8.1f} {row['jobs 2']:>8.1f} "
              f"{row['dask 2 workers']:>8.1f} {row['jobs 2'] / row['fresh']:>15.1f} "
              f"{row['jobs 2'] / row['jobs 1']:>16.2f}")


if __name__ == "__main__":
    main()
