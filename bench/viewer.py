"""Benchmark of the trace viewer: open a 1-million-event trace and show its first screen.

The trace is bench/trace.py's: a real run (16 vCPUs, apply + revert cycles)
replicated, shifted in time, up to --events events. Timed in one process,
headless (`App.run_test`, a 160x50 terminal): TraceFile.open, then the app
until its first screen is drawn (lanes, ruler, status). Target: under 2 s.

    python bench/viewer.py [--json] [--events N]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from xsplice_emu.tracing import StateCheckpoints, TraceFile  # noqa: E402
from xsplice_emu.viewer.app import TraceViewer  # noqa: E402
from xsplice_emu.viewer.frame import CHUNK  # noqa: E402

SIZE = (160, 50)


def _trace_bench():
    """bench/trace.py as a module (its name would shadow the standard library's `trace`)."""
    spec = importlib.util.spec_from_file_location("bench_trace", ROOT / "bench" / "trace.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def _first_screen(trace: TraceFile) -> tuple[TraceViewer, float]:
    """The app and the moment its first screen was painted (its shutdown is not counted)."""
    app = TraceViewer(trace)
    async with app.run_test(size=SIZE) as pilot:
        while app.frame is None:
            await pilot.pause()
        await pilot.pause()
        painted = time.perf_counter()
    return app, painted


async def _empty_app() -> None:
    """Baseline: a Textual app with nothing in it, started headless at the same size."""
    from textual.app import App
    async with App().run_test(size=SIZE) as pilot:
        await pilot.pause()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the generated trace")
    args = parser.parse_args()
    generator = _trace_bench()
    generator.OUT.mkdir(exist_ok=True)
    seed, big = generator.OUT / "viewer-seed.jsonl", generator.OUT / "viewer-big.jsonl"
    seed_events = generator.real_run(seed)
    generator.replicate(seed, big, args.events)

    started = time.perf_counter()
    trace = TraceFile.open(big)
    opened = time.perf_counter()
    app, shown = asyncio.run(_first_screen(trace))
    frame = app.frame
    checkpoints = time.perf_counter()
    StateCheckpoints(trace, every=CHUNK).build()
    checkpoints = time.perf_counter() - checkpoints
    bare = time.perf_counter()
    asyncio.run(_empty_app())
    bare = time.perf_counter() - bare
    report = {
        "events": len(trace),
        "generated_by": f"replicating a real run's {seed_events} events (16 vCPUs) shifted in time",
        "file_mb": round(big.stat().st_size / 1e6, 1),
        "open_s": round(opened - started, 3),
        "first_screen_s": round(shown - opened, 3),
        "open_and_first_screen_s": round(shown - started, 3),
        "first_screen_events": len(frame.events),
        "first_screen_span_ns": frame.viewport.span_ns,
        "background_checkpoints_s": round(checkpoints, 2),
        "baseline_empty_textual_app_s": round(bare, 3),
        "first_screen_vs_empty_app": round((shown - opened) / bare, 1),
    }
    if args.json:
        print(json.dumps(report))
        return
    print(f"trace: {report['events']:,} events, {report['file_mb']} MB ({report['generated_by']}), {big}")
    print(f"open: {report['open_s']:.3f} s; first screen ({report['first_screen_events']:,} events in "
          f"{frame.viewport.span_ns / 1e6:.3f} virtual ms, headless {SIZE[0]}x{SIZE[1]}): "
          f"{report['first_screen_s']:.3f} s; together {report['open_and_first_screen_s']:.3f} s (target < 2 s)")
    print("then, in the background, state checkpoints for exact lanes everywhere: "
          f"{report['background_checkpoints_s']:.2f} s")
    print("baseline in this run: an empty Textual app starts headless in "
          f"{report['baseline_empty_textual_app_s']:.3f} s "
          f"(the first screen takes {report['first_screen_vs_empty_app']}x that)")


if __name__ == "__main__":
    main()
