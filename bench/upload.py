"""Benchmark of payload uploads: whether their cost grows with the payloads already loaded.

Prints, for each vCPU count, the host time of one upload and of its unload with 0 payloads loaded, then with more
loaded, and each against the first (measured in the same run): the target is the same cost, within 2x, whatever
is loaded. Each figure is the best of --cycles uploads and unloads (a single one of ~1 ms is mostly host noise).
The payloads are xen_hello_world with its build-id and its new symbol renamed, so that each loads.

    python bench/upload.py [--json] [--vcpus 4,72] [--loaded 0,100,300,1000] [--cycles 5]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from xsplice_emu import Machine, MachineConfig, builtin_firmware, load_image  # noqa: E402
from xsplice_emu.authoring.build import payload_build_id  # noqa: E402
from xsplice_emu.engines.controller import Livepatch  # noqa: E402
from xsplice_emu.livepatch import Action  # noqa: E402

PAYLOAD = ROOT / "payloads" / "build" / "xen_hello_world.livepatch"
NEW_SYMBOL = b"livepatch_xen_hello_world"


def variant(data: bytes, build_id: bytes, number: int) -> bytes:
    """The payload with build-id `number` and its new symbol renamed after it (same lengths)."""
    return (data.replace(build_id, number.to_bytes(len(build_id), "big"))
            .replace(NEW_SYMBOL, NEW_SYMBOL[:-5] + b"%05d" % number))


def measure(image, vcpus: int, loaded_counts: list[int], cycles: int) -> dict[str, dict[str, float]]:
    """Host ms of one upload and its unload (the best of `cycles`), on one machine, as more payloads are loaded."""
    machine = Machine(image, config=MachineConfig(vcpus=vcpus, seed=1))
    machine.run_for(2_000_000)
    livepatch = Livepatch(machine)
    data = PAYLOAD.read_bytes()
    build_id = payload_build_id(PAYLOAD)
    figures = {}
    number = 1
    for count in loaded_counts:
        while len(livepatch.payloads) < count:
            livepatch.upload(f"p{number}", variant(data, build_id, number))
            number += 1
        upload_s = unload_s = float("inf")
        for _ in range(cycles):
            started = time.perf_counter()
            livepatch.upload("probe", variant(data, build_id, number))
            uploaded = time.perf_counter()
            livepatch.action("probe", Action.UNLOAD)
            upload_s, unload_s = min(upload_s, uploaded - started), min(unload_s, time.perf_counter() - uploaded)
            number += 1
        figures[str(count)] = {"upload_ms": round(upload_s * 1000, 3), "unload_ms": round(unload_s * 1000, 3)}
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--vcpus", default="4,72", help="vCPU counts, comma separated")
    parser.add_argument("--loaded", default="0,100,300,1000", help="payloads loaded, ascending, comma separated")
    parser.add_argument("--cycles", type=int, default=5, help="uploads and unloads per figure; the best counts")
    args = parser.parse_args()
    image = load_image(builtin_firmware())
    loaded_counts = [int(count) for count in args.loaded.split(",")]
    report = {n: measure(image, int(n), loaded_counts, args.cycles) for n in args.vcpus.split(",")}
    if args.json:
        print(json.dumps(report))
        return
    for n, figures in report.items():
        base = figures[str(loaded_counts[0])]
        for count, f in figures.items():
            ratio = (f["upload_ms"] + f["unload_ms"]) / (base["upload_ms"] + base["unload_ms"])
            print(f"{n:>3} vCPUs, {count:>4} loaded: upload {f['upload_ms']:8.2f} ms, unload {f['unload_ms']:7.2f} ms, "
                  f"x{ratio:.2f} of {loaded_counts[0]} loaded")
    print("target: at most x2 whatever is loaded")


if __name__ == "__main__":
    main()
