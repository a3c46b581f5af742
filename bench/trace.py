"""Benchmark of trace files.

Builds a trace of --events events (default 1 million) under /tmp: a real run
(16 vCPUs, one busy, three apply + revert cycles of xen_hello_world) whose
events are replicated, shifted in time, until the count is reached (the
output says so). Then times, in one process:
- open: TraceFile.open (header check and the index of line times; target
  with the first screen under 2 s),
- first screen: the events of the first --screen-us of virtual time and
  their per-vCPU lanes (what a timeline shows first),
- validate: every line parsed and checked against the schema,
- export: Chrome Trace Event JSON, in events per second.

    python bench/trace.py [--json] [--events N] [--screen-us US]
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

from xsplice_emu import Machine, MachineConfig, builtin_firmware, load_image  # noqa: E402
from xsplice_emu.engines.controller import Livepatch  # noqa: E402
from xsplice_emu.livepatch import Action  # noqa: E402
from xsplice_emu.tracing import TraceFile, export_chrome, lane_spans  # noqa: E402

PAYLOAD = ROOT / "payloads" / "build" / "xen_hello_world.livepatch"
OUT = Path(tempfile.gettempdir()) / "xsplice-emu-trace-bench"


def real_run(path: Path) -> int:
    """16 vCPUs, vCPU 3 busy, three apply + revert cycles; the trace goes to `path`. Returns its event count."""
    machine = Machine(load_image(builtin_firmware()), config=MachineConfig(vcpus=16, seed=1))
    machine.run_for(2_000_000)
    machine.call(3, "call_set_busy", 1)
    livepatch = Livepatch(machine)
    livepatch.upload("hello", PAYLOAD.read_bytes())
    for cycle in range(3):
        assert livepatch.run_action("hello", Action.APPLY).rc == 0
        machine.run_for(1_000_000)
        assert livepatch.run_action("hello", Action.REVERT).rc == 0
        machine.run_for(1_000_000)
        if cycle < 2:
            livepatch.action("hello", Action.UNLOAD)  # a payload with .data is applied again only after a reload
            livepatch.upload("hello", PAYLOAD.read_bytes())
    machine.trace.write(path)
    return len(machine.trace.events)


def replicate(seed: Path, target: Path, events: int) -> None:
    """Write `events` events: copies of `seed`'s, each copy shifted past the one before."""
    header, *lines = seed.read_text().splitlines()
    records = [(int(line[5:line.index(",", 5)]), line[line.index(",", 5):]) for line in lines]
    period = records[-1][0] + 1_000_000
    header = {**json.loads(header), "events": events}
    with target.open("w") as out:
        out.write(json.dumps(header, separators=(",", ":")) + "\n")
        written, shift = 0, 0
        while written < events:
            chunk = records[:events - written]
            out.write("".join(f'{{"t":{t + shift}{rest}\n' for t, rest in chunk))
            written += len(chunk)
            shift += period


def json_round_trip(source: Path, target: Path) -> None:
    """The least any JSON-to-JSON exporter does: parse every line and write it out again."""
    with source.open() as lines, target.open("w") as out:
        for line in lines:
            out.write(json.dumps(json.loads(line)))


def timed(function):
    started = time.perf_counter()
    result = function()
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the generated trace")
    parser.add_argument("--screen-us", type=float, default=10_000, help="virtual time shown on the first screen")
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    seed, big, chrome = OUT / "seed.jsonl", OUT / "big.jsonl", OUT / "big.json"
    seed_events, seed_seconds = timed(lambda: real_run(seed))
    _, generate_seconds = timed(lambda: replicate(seed, big, args.events))
    trace, open_seconds = timed(lambda: TraceFile.open(big))
    screen_ns = int(args.screen_us * 1000)

    def first_screen():
        shown = trace.window(trace.start_ns, trace.start_ns + screen_ns)
        return len(shown), lane_spans(shown, end_ns=trace.start_ns + screen_ns)

    (screen_events, _), screen_seconds = timed(first_screen)
    _, validate_seconds = timed(trace.validate)
    exported, export_seconds = timed(lambda: export_chrome(trace, chrome))
    _, read_seconds = timed(lambda: big.read_bytes().split(b"\n"))
    _, round_trip_seconds = timed(lambda: json_round_trip(big, chrome.with_suffix(".baseline.json")))
    report = {
        "events": len(trace),
        "generated_by": f"replicating a real run's {seed_events} events (16 vCPUs, 3 apply+revert cycles) "
                        "shifted in time",
        "file_mb": round(big.stat().st_size / 1e6, 1),
        "real_run_s": round(seed_seconds, 2),
        "generate_s": round(generate_seconds, 2),
        "open_s": round(open_seconds, 3),
        "first_screen_s": round(screen_seconds, 3),
        "first_screen_events": screen_events,
        "open_and_first_screen_s": round(open_seconds + screen_seconds, 3),
        "validate_s": round(validate_seconds, 2),
        "export_s": round(export_seconds, 2),
        "export_events_per_s": round(exported / export_seconds),
        "chrome_json_mb": round(chrome.stat().st_size / 1e6, 1),
        "baseline_read_split_s": round(read_seconds, 3),
        "open_vs_read_split": round(open_seconds / read_seconds, 1),
        "baseline_json_round_trip_events_per_s": round(len(trace) / round_trip_seconds),
        "export_vs_json_round_trip": round(round_trip_seconds / export_seconds, 2),
    }
    if args.json:
        print(json.dumps(report))
        return
    print(f"trace: {report['events']:,} events, {report['file_mb']} MB ({report['generated_by']}), {big}")
    print(f"open (header + index): {report['open_s']:.3f} s; first screen ({args.screen_us:g} us, "
          f"{screen_events} events + lanes): {report['first_screen_s']:.3f} s; "
          f"together {report['open_and_first_screen_s']:.3f} s (target < 2 s)")
    print(f"validate: {report['validate_s']:.2f} s ({report['events'] / validate_seconds:,.0f} events/s)")
    print(f"export: {report['export_s']:.2f} s, {report['export_events_per_s']:,} events/s "
          f"-> {report['chrome_json_mb']} MB of Chrome JSON")
    print(f"baselines in this run: reading + splitting the file {report['baseline_read_split_s']:.3f} s "
          f"(open takes {report['open_vs_read_split']}x that); json.loads + json.dumps of every line "
          f"{report['baseline_json_round_trip_events_per_s']:,} events/s "
          f"(export runs at {report['export_vs_json_round_trip']}x that)")


if __name__ == "__main__":
    main()
