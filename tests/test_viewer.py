"""`xsplice-emu view`: the Textual timeline of a real 8-vCPU apply, driven by keys through a pilot."""

from __future__ import annotations

import asyncio
import importlib
import json
import re
import threading

import pytest
from click.testing import CliRunner
from helpers import ROOT, debian_file, hello_uploaded
from textual.binding import Binding
from textual.geometry import Region
from textual.widgets import DataTable

from xsplice_emu.cli import main
from xsplice_emu.cli.view import view
from xsplice_emu.errors import TraceFormatError
from xsplice_emu.image import load_image
from xsplice_emu.livepatch import Action
from xsplice_emu.provision.debian import xen_syms_path
from xsplice_emu.tracing import EventKind, TraceFile
from xsplice_emu.tracing.checkpoints import StateCheckpoints
from xsplice_emu.viewer import frame as frame_module
from xsplice_emu.viewer.actions import actions
from xsplice_emu.viewer.app import CHECKPOINT_DELAY_S, SCAN_REDRAW_S, TraceViewer
from xsplice_emu.viewer.canvas import MARKERS, STATE_COLOURS, STATE_GLYPHS
from xsplice_emu.viewer.figures import ARRIVALS_SHOWN, LABELS, figures
from xsplice_emu.viewer.help_screen import HelpScreen
from xsplice_emu.viewer.ruler import Ruler
from xsplice_emu.viewer.status import StatusBar
from xsplice_emu.viewer.summary_screen import SummaryScreen
from xsplice_emu.viewer.symbols import Symbols
from xsplice_emu.viewer.timeline import LABEL_WIDTH, Timeline
from xsplice_emu.viewer.times import duration, instant
from xsplice_emu.viewer.viewport import Viewport

SIZE = (120, 40)


@pytest.fixture(scope="module")
def apply_trace(image, payloads, tmp_path_factory):
    """8 vCPUs (seed 1) boot for 2 ms, apply xen_hello_world, run 1 ms more: the trace file."""
    machine, livepatch = hello_uploaded(image, vcpus=8, seed=1)
    assert livepatch.run_action("hello", Action.APPLY).rc == 0
    machine.run_for(1_000_000)
    path = tmp_path_factory.mktemp("viewer") / "apply.jsonl"
    machine.trace.write(path)
    return path


def drive(path, scenario, *, size=SIZE):
    """Run the viewer on `path` headless and hand its pilot to the async `scenario`."""
    app = TraceViewer(TraceFile.open(path))

    async def run():
        async with app.run_test(size=size) as pilot:
            await pilot.pause()
            await scenario(pilot)
    asyncio.run(run())
    return app


def shown(widget) -> str:
    """The text a widget shows on screen, line by line."""
    return "\n".join(strip.text.rstrip() for strip in widget.render_lines(Region(0, 0, *widget.size)))


def lanes(app) -> list[str]:
    return [line for line in shown(app.query_one(Timeline)).splitlines() if line]


def status(app) -> str:
    return shown(app.query_one(StatusBar))


def detail(app) -> str:
    return shown(app.query_one("#detail-body"))


def span_of(app) -> str:
    return status(app).split("span ")[1].split("  ")[0]


def test_a_lane_per_vcpu_under_a_time_ruler(apply_trace):
    """`f` shows the whole run: a time ruler, the apply's bar, and lanes host, cpu0..cpu7."""
    async def check(pilot):
        app = pilot.app
        await pilot.press("f")
        assert [line.split()[0] for line in lanes(app)] == ["host"] + [f"cpu{i}" for i in range(8)]
        ruler = shown(app.query_one(Ruler))
        assert "0.0ms" in ruler and "2.0ms" in ruler and "a" in ruler.splitlines()[1]
        assert "span 3.00" in status(app) and "filter everything" in status(app)
    drive(apply_trace, check)


def test_next_patch_shows_the_old_and_new_instructions(apply_trace):
    """p selects the patch write; its detail disassembles the original first instruction and the jmp to the payload."""
    async def check(pilot):
        await pilot.press("p")
        app = pilot.app
        text = detail(app)
        assert text.startswith("patch  cpu0")
        before = next(line for line in text.splitlines() if line.startswith("before"))
        after = next(line for line in text.splitlines() if line.startswith("after"))
        assert "<xen_extra_version>" in before and "mov eax, 0x" in before
        assert "<xen_extra_version>" in after and "jmp 0x" in after and "<payload hello>" in after
        assert "-> all parked" in text and "NMIs lost" in text and "apply hello" in text
        assert "selected patch on cpu0" in status(app)
        assert "P" in next(line for line in lanes(app) if line.startswith("cpu0"))
    drive(apply_trace, check)


@pytest.mark.slow
def test_an_action_request_shows_its_latencies(apply_trace):
    """Searching for action_requested selects it; the detail gives rc, master and request -> parked -> release."""
    async def check(pilot):
        await pilot.press("slash", *"action_requested", "enter")
        text = detail(pilot.app)
        assert text.startswith("action_requested  host")
        assert re.search(r"\brc +0\b", text) and re.search(r"\bmaster +cpu0\b", text)
        assert re.search(r"-> all parked +\d+ ns", text) and re.search(r"-> release +\d\.\d{3} µs", text)
        assert re.search(r"NMIs lost +0", text)
    drive(apply_trace, check)


@pytest.mark.slow
def test_search_for_a_vcpu_keeps_only_its_lane(apply_trace):
    """/ cpu5 leaves the host lane and cpu5's, and n steps through cpu5's events only."""
    async def check(pilot):
        await pilot.press("slash", *"cpu5", "enter")
        app = pilot.app
        assert [line.split()[0] for line in lanes(app)] == ["host", "cpu5"]
        assert "filter cpu5" in status(app)
        for _ in range(3):
            assert " on cpu5 at " in status(app)
            await pilot.press("n")
        await pilot.press("escape")
        assert len(lanes(app)) == 9
    drive(apply_trace, check)


def test_zoom_shrinks_and_fit_restores_the_visible_span(apply_trace):
    """+ halves the visible span, - doubles it back, and f fits the whole run again."""
    async def check(pilot):
        app = pilot.app
        await pilot.press("f")
        whole = app.viewport.span_ns
        await pilot.press("plus")
        assert app.viewport.span_ns == pytest.approx(whole / 2, abs=1)
        await pilot.press("plus", "right")
        assert app.viewport.span_ns == pytest.approx(whole / 4, abs=1) and app.viewport.start_ns > 0
        assert span_of(app) == duration(app.viewport.span_ns) == f"{app.viewport.span_ns / 1e3:.3f} µs"
        await pilot.press("minus")
        assert app.viewport.span_ns == pytest.approx(whole / 2, abs=2)
        await pilot.press("f")
        assert app.viewport.span_ns == whole and span_of(app) == f"{whole / 1e6:.3f} ms"
    drive(apply_trace, check)


@pytest.mark.slow
def test_jumps_by_kind_and_bookmarks(apply_trace):
    """i and I step through the IPIs, p to the patch after them; b bookmarks an IPI and ' comes back to it."""
    async def check(pilot):
        app = pilot.app
        await pilot.press("i", "i")
        assert detail(app).startswith("ipi ")
        second = app.selected
        await pilot.press("b", "i", "I")
        assert app.selected == second
        await pilot.press("p")
        assert detail(app).startswith("patch ") and app.selected > second
        await pilot.press("apostrophe")
        assert app.selected == second and "bookmark 1 of 1" in status(app)
        await pilot.press("a")
        assert "no abort event after this point" in status(app)
    drive(apply_trace, check)


def test_summary_screen_lists_each_action(apply_trace):
    """s opens one row per action: apply hello, rc 0, master cpu0, no violations, and the arrival order of the 7
    others."""
    async def check(pilot):
        await pilot.press("s")
        await pilot.pause()
        screen = pilot.app.screen
        assert isinstance(screen, SummaryScreen)
        row = screen.query_one(DataTable).get_row_at(0)
        assert row[1:4] == ["apply hello", "0", "cpu0"]
        assert row[9] == "0"
        order = shown(screen.query_one("#more")).split("arrival order")[1].split()
        assert sorted(order) == sorted(f"cpu{i}" for i in range(1, 8))
        await pilot.press("escape")
        assert not isinstance(pilot.app.screen, SummaryScreen)
    drive(apply_trace, check)


def test_question_mark_lists_the_keys(apply_trace):
    """? shows every key with what it does, and the lane colours."""
    async def check(pilot):
        await pilot.press("question_mark")
        screen = pilot.app.screen
        assert isinstance(screen, HelpScreen)
        text = "\n".join(shown(static) for static in screen.query("Static"))
        for words in ("zoom in", "next patch", "previous NMI", "search", "bookmark", "summary", "parked"):
            assert words in text
    drive(apply_trace, check)


def test_main_screen_snapshot(apply_trace, snap_compare):
    """The apply framed as it opens, its patch write selected with `p`: lanes, ruler, detail and status."""
    app = TraceViewer(TraceFile.open(apply_trace))
    assert snap_compare(app, press=["p"], terminal_size=SIZE)


def _variant(tmp_path, source, name, edit):
    lines = source.read_text().splitlines(keepends=True)
    path = tmp_path / name
    path.write_text("".join(edit(lines)))
    return path


@pytest.mark.parametrize("name, edit, says", [
    ("truncated.jsonl", lambda lines: lines[:-1] + [lines[-1][:20]], "truncated line"),
    ("version.jsonl", lambda lines: [lines[0].replace('"version":4', '"version":9')] + lines[1:],
     "version 9"),
    ("unknown.jsonl", lambda lines: lines[:30] + [lines[30].replace('"kind":"', '"kind":"bogus_')] + lines[31:],
     "unknown event kind"),
])
def test_a_bad_trace_is_one_line_and_status_2(apply_trace, tmp_path, name, edit, says):
    """Truncated, wrong version, unknown event: `view` prints the reader's one line naming the line, exits 2."""
    path = _variant(tmp_path, apply_trace, name, edit)
    result = CliRunner().invoke(view, [str(path)])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and result.output.startswith(f"error: {path}:")
    assert says in result.output and "Traceback" not in result.output


def test_a_bad_line_met_while_browsing_ends_the_viewer_with_it(apply_trace, tmp_path):
    """A trace read lazily whose lines go bad further on: the viewer stops and returns the reader's error."""
    path = _variant(tmp_path, apply_trace, "late.jsonl",
                    lambda lines: lines[:-3] + [lines[-3].replace('"kind":"', '"kind":"bogus_')] + lines[-2:])

    async def nothing(pilot):
        pass
    app = drive(path, nothing)
    assert isinstance(app.return_value, TraceFormatError) and app.return_code == 2
    assert f"{path}:" in str(app.return_value) and "unknown event kind" in str(app.return_value)


def test_a_click_on_a_lane_selects_the_event_there(apply_trace):
    """Clicking cpu0's lane where the patch marker is selects the patch write."""
    async def check(pilot):
        app = pilot.app
        patch = app.trace.find({EventKind.PATCH})
        timeline = app.query_one(Timeline)
        column = app.viewport.column(app.trace.time_of(patch), timeline.canvas_width)
        await pilot.click(Timeline, offset=(LABEL_WIDTH + column, 1))
        assert app.selected == patch and detail(app).startswith("patch  cpu0")
    drive(apply_trace, check)


def test_a_view_with_too_many_events_asks_to_zoom_in(apply_trace, monkeypatch):
    """Over the per-screen event budget the lanes show an overview (event density) and say so; jumping to an
    event zooms in to it."""
    monkeypatch.setattr(frame_module, "BUDGET", 40)

    async def check(pilot):
        app = pilot.app
        await pilot.press("f")
        assert "overview" in status(app) and "zoom in (+) to see the lanes" in status(app)
        cpu0 = next(line for line in lanes(app) if line.startswith("cpu0"))
        assert set(cpu0[LABEL_WIDTH:]) & set("░▒▓█")
        await pilot.press("p")
        assert "zoom in" not in status(app) and "P" in next(line for line in lanes(app) if line.startswith("cpu0"))
        assert app.trace.index_at(app.viewport.end_ns) - app.trace.index_at(app.viewport.start_ns) <= 40
    drive(apply_trace, check)


def test_256_lanes_scroll_to_the_selected_event(apply_trace, tmp_path):
    """In a 256-vCPU trace (two vCPUs a row), jumping to a patch on cpu250 scrolls its row into view; one a row (c),
    its lane is there with the patch marked."""
    header = json.loads(apply_trace.read_text().splitlines()[0])
    events = [{"t": cpu, "vcpu": cpu, "kind": EventKind.CPU_START, "by": None if cpu == 0 else 0}
              for cpu in range(256)]
    events.append({"t": 1_000, "vcpu": 250, "kind": EventKind.PATCH, "payload": "hello",
                   "function": "xen_extra_version", "address": 0x102420, "old": "b8d9301000", "new": "e9db6b5200"})
    path = tmp_path / "wide.jsonl"
    path.write_text("".join(json.dumps(record, separators=(",", ":")) + "\n"
                            for record in [{**header, "vcpus": 256, "events": len(events)}, *events]))

    async def check(pilot):
        app = pilot.app
        assert len(app.query_one(Timeline).rows) == 257 and "250+251" not in shown(app.query_one(Timeline))
        await pilot.press("p")
        await pilot.pause()
        assert any(line.startswith("250+251") for line in lanes(app))
        await pilot.press("c")
        await pilot.pause()
        lane = next(line for line in lanes(app) if line.startswith("cpu250"))
        assert "P" in lane
    drive(path, check)


def test_another_firmware_shows_bare_addresses_and_says_why(apply_trace, tmp_path):
    """When no image in the build cache has the trace's build-id, the patch site has no names and a note."""
    path = _variant(tmp_path, apply_trace, "other.jsonl",
                    lambda lines: [re.sub(r'_build_id":"\w+"', '_build_id":"00ff"', lines[0]), *lines[1:]])

    async def check(pilot):
        await pilot.press("p")
        text = detail(pilot.app)
        before = next(line for line in text.splitlines() if line.startswith("before"))
        assert "mov eax" in before and "<" not in before
        assert "no image with build-id 00ff in the build cache: addresses without names" in text
    drive(path, check)


def _quiet_viewport(trace: TraceFile) -> Viewport:
    """2.5 to 2.9 virtual ms of the apply trace: every vCPU idles in `hlt` the whole time."""
    return Viewport.fit(trace.start_ns, trace.end_ns).showing(2_500_000, 400_000)


def test_checkpoints_make_a_long_traces_lanes_exact(apply_trace, monkeypatch):
    """Lazily read (tiny lookback), the idle vCPUs' state is unknown; resumed from checkpoints, all are halted."""
    monkeypatch.setattr(frame_module, "WHOLE", 100)
    monkeypatch.setattr(frame_module, "LOOKBACK", 1)
    monkeypatch.setattr(frame_module, "CHUNK", 1)
    source = frame_module.FrameSource(TraceFile.open(apply_trace))
    viewport = _quiet_viewport(source.trace)

    def known_vcpus():
        lanes = source.frame(viewport).lanes
        return {vcpu for vcpu, spans in lanes.items() if spans and spans[0].start_ns <= viewport.start_ns}

    assert len(known_vcpus()) < 8 and not source.exact
    source.checkpoints.build()
    source.forget()
    assert known_vcpus() == set(range(8)) and source.exact
    assert {spans[0].label for spans in source.frame(viewport).lanes.values()} == {"halted"}


@pytest.mark.slow
def test_viewer_builds_checkpoints_in_the_background(apply_trace, monkeypatch):
    """A trace over WHOLE events: a worker builds the checkpoints, then no lane of a quiet stretch is blank."""
    monkeypatch.setattr(frame_module, "WHOLE", 100)
    monkeypatch.setattr(frame_module, "LOOKBACK", 1)
    monkeypatch.setattr(frame_module, "CHUNK", 1)
    first_screen_checked = threading.Event()
    build = StateCheckpoints.build

    def after_the_first_screen_is_checked(checkpoints, **options):
        first_screen_checked.wait(10)  # on a busy host the scan may start before the check below runs
        build(checkpoints, **options)
    monkeypatch.setattr(StateCheckpoints, "build", after_the_first_screen_is_checked)

    async def check(pilot):
        app = pilot.app
        assert not app.source.exact
        first_screen_checked.set()
        for _ in range(100):  # the scan starts CHECKPOINT_DELAY_S after the first screen
            if app.source.exact:
                break
            await pilot.pause(0.1)
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.source.exact
        app.viewport = _quiet_viewport(app.trace)
        app.redraw()
        vcpu_lanes = [line for line in lanes(app) if line.startswith("cpu")]
        assert len(vcpu_lanes) == 8 and not any("·" in line for line in vcpu_lanes)
    drive(apply_trace, check)


@pytest.mark.parametrize("size", [(160, 50), (120, 40)])
def test_the_viewer_opens_framing_the_first_action(apply_trace, size):
    """The first screen frames the apply (its bar on the ruler, the patch write on a lane), not the whole run."""
    async def check(pilot):
        app = pilot.app
        assert "apply hello" in shown(app.query_one(Ruler))
        assert any("P" in line for line in lanes(app) if line.startswith("cpu"))
        assert app.viewport.span_ns < app.trace.end_ns / 10
    drive(apply_trace, check, size=size)


@pytest.mark.parametrize("size", [(160, 50), (120, 40)])
def test_p_from_the_whole_run_brings_the_patch_into_view_at_a_readable_zoom(apply_trace, size):
    """From the fit view, `p` selects the patch and frames its action: the patch is drawn and in view."""
    async def check(pilot):
        app = pilot.app
        await pilot.press("f", "p")
        patch = app.trace.time_of(app.selected)
        assert detail(app).startswith("patch ")
        assert app.viewport.start_ns <= patch < app.viewport.end_ns
        assert app.viewport.span_ns < app.trace.end_ns / 10
        assert any("P" in line for line in lanes(app) if line.startswith("cpu"))
    drive(apply_trace, check, size=size)


def test_the_detail_pane_says_none_and_flags_in_words(apply_trace):
    """An IPI's detail shows no Python reprs: no `None`, no `True`/`False`."""
    async def check(pilot):
        await pilot.press("i")
        text = detail(pilot.app)
        assert "None" not in text and "True" not in text and "False" not in text
    drive(apply_trace, check)


def test_lanes_read_without_colour_parked_and_running_differ(apply_trace):
    """A text capture (glyphs only) of the apply: a follower's lane runs (`=`) then parks (`_`), the master's
    lane shows the patch window (`#`) instead: lanes differ without colour."""
    async def check(pilot):
        app = pilot.app
        follower = next(line for line in lanes(app) if line.startswith("cpu1"))[LABEL_WIDTH:]
        master = next(line for line in lanes(app) if line.startswith("cpu0"))[LABEL_WIDTH:]
        assert "=" in follower and "_" * 10 in follower
        assert "#" * 10 in master and "#" not in follower
    drive(apply_trace, check, size=(160, 50))


def test_an_ipi_is_marked_on_its_receivers_lane_too(apply_trace):
    """The master's kicks: `›` on the sender's lane, `‹` on each receiver's."""
    async def check(pilot):
        app = pilot.app
        await pilot.press("i")
        sender = app.trace.event(app.selected)
        receiver = next(line for line in lanes(app) if line.startswith(f"cpu{sender.fields['to']}"))
        assert "‹" in receiver
    drive(apply_trace, check, size=(160, 50))


@pytest.mark.parametrize("size", [(80, 30), (120, 40), (200, 50)])
def test_the_status_line_fits_on_one_line(apply_trace, size):
    """With the patch selected, the status line never wraps between 80 and 200 columns and keeps the span."""
    async def check(pilot):
        await pilot.press("p")
        facts = status(pilot.app).splitlines()[0]
        assert "span " in facts and "selected patch" in facts
        assert len(facts) <= size[0]
        assert "bookmarks" in facts or size[0] < 200
    drive(apply_trace, check, size=size)


@pytest.mark.slow
def test_the_background_scan_shows_its_progress(apply_trace, monkeypatch):
    """While the scan for exact lanes runs, the status line says how far it got."""
    monkeypatch.setattr(frame_module, "WHOLE", 100)
    monkeypatch.setattr(frame_module, "CHUNK", 1)
    release = threading.Event()

    async def check(pilot):
        app = pilot.app
        checkpoints = app.source.checkpoints

        def half_then_wait(*, cancelled):
            checkpoints._states[len(app.trace) // 2] = {}
            release.wait(10)
        monkeypatch.setattr(checkpoints, "build", half_then_wait)
        await pilot.pause(CHECKPOINT_DELAY_S + SCAN_REDRAW_S + 0.2)
        assert "scanning the trace for exact lanes: 50%" in status(app)
        release.set()
        await app.workers.wait_for_complete()
    drive(apply_trace, check)


def test_view_without_a_terminal_says_so_instead_of_waiting(apply_trace):
    """`view` with its input and output not a terminal (a pipe, CI) is one line and exit 2, not a hang."""
    result = CliRunner().invoke(view, [str(apply_trace)])
    assert result.exit_code == 2
    assert result.output.strip().startswith("error: the viewer needs a terminal")


def test_v_jumps_to_the_safety_oracles_violations(payloads, tmp_path):
    """In the trace of an unsafe patch, v selects the first violation (its check and symbol in the detail
    pane) and V comes back to it from the next."""
    path = tmp_path / "unsafe.jsonl"
    result = CliRunner().invoke(main, ["run", str(ROOT / "scenarios" / "fault_patch_from_irq.toml"), "-q",
                                       "--trace", str(path)])
    assert result.exit_code == 0, result.output

    async def check(pilot):
        app = pilot.app
        await pilot.press("v")
        first = app.selected
        assert detail(app).startswith("violation ") and "schedule.c#busy_chunk+0x70" in detail(app)
        await pilot.press("v", "V")
        assert app.selected == first
    drive(path, check)


def test_m_lands_on_a_lost_nmi_and_says_it_was_lost(payloads, tmp_path):
    """In nmi_in_window's trace, m selects the NMI sent into the patching window: the detail pane and the status
    line say it was lost (swallowed), not merely delivered."""
    path = tmp_path / "nmi.jsonl"
    result = CliRunner().invoke(main, ["run", str(ROOT / "scenarios" / "nmi_in_window.toml"), "-q",
                                       "--trace", str(path)])
    assert result.exit_code == 0, result.output
    lost = TraceFile.open(path).find({EventKind.NMI_LOST})

    async def check(pilot):
        app = pilot.app
        await pilot.press("m")
        assert app.selected == lost - 1
        assert detail(app).startswith("nmi (lost) ") and EventKind.NMI_LOST.meaning in " ".join(detail(app).split())
        assert "selected nmi (lost) on cpu" in status(app)
    drive(path, check)


FAILS_AFTER_A_WHILE = """
[machine]
vcpus = 4
seed = 3

[[step]]
livepatch = "load @HELLO"

[[step]]
run_ms = 20

[[step]]
livepatch = "revert xen_hello_world"

[[step]]
expect = { extra_version = "Hello World" }
"""


def test_run_view_opens_on_the_failing_step(payloads, tmp_path, monkeypatch):
    """`run --view` on a scenario whose last step fails opens on that step (its version calls, after the
    revert), saying which step failed: not on the whole 20 ms run nor on the first action."""
    scenario = tmp_path / "fails.toml"
    hello = ROOT / "payloads" / "build" / "xen_hello_world.livepatch"
    scenario.write_text(FAILS_AFTER_A_WHILE.replace("@HELLO", str(hello)))
    shown = []

    def view_headless(path, *, step, message):
        trace = TraceFile.open(path)
        app = TraceViewer(trace, step=step, message=message)

        async def run():
            async with app.run_test(size=SIZE) as pilot:
                await pilot.pause()
                shown.append((app.viewport, status(app), list(actions(trace))))
        asyncio.run(run())
    monkeypatch.setattr(importlib.import_module("xsplice_emu.cli.run"), "view_trace", view_headless)
    result = CliRunner().invoke(main, ["run", str(scenario), "-q", "--view"])
    assert result.exit_code == 1, result.output
    ((viewport, line, (_, revert)),) = shown
    assert revert.released_ns < viewport.end_ns and viewport.span_ns < 100_000  # the step after the revert
    assert 'step 4 failed: expect extra_version = "Hello World"' in line


@pytest.fixture(scope="module")
def trace_72(image, payloads, tmp_path_factory):
    """72 vCPUs (seed 1) apply xen_hello_world: the trace file."""
    machine, livepatch = hello_uploaded(image, vcpus=72, seed=1)
    assert livepatch.run_action("hello", Action.APPLY).rc == 0
    path = tmp_path_factory.mktemp("viewer") / "72.jsonl"
    machine.trace.write(path)
    return path


@pytest.mark.slow
def test_72_vcpus_open_two_a_row_at_120x40(trace_72):
    """At 72 vCPUs and 120x40 one lane a row would not fit: the viewer opens with two vCPUs a row, 69 lanes in
    view and the status line saying so; c gives one a row (35 lanes, 38 off screen) and back."""
    def visible(app) -> int:
        rows = lanes(app)
        return sum(2 if re.match(r"\d+\+\d+ ", row) else 1 for row in rows)

    async def check(pilot):
        app = pilot.app
        assert visible(app) == 69 and "lanes two vCPUs a row, 4 off screen (c: one a row)" in status(app)
        await pilot.press("c")
        await pilot.pause()
        assert visible(app) == 35 and "lanes 38 off screen (scroll, or c: two a row)" in status(app)
        await pilot.press("c")
        await pilot.pause()
        assert visible(app) == 69
    drive(trace_72, check, size=(120, 40))


def test_8_vcpus_stay_one_a_row(apply_trace):
    """Lanes that fit one a row are drawn one a row, markers and all, and the status line says nothing of them."""
    async def check(pilot):
        assert [line.split()[0] for line in lanes(pilot.app)] == ["host"] + [f"cpu{i}" for i in range(8)]
        assert "lanes" not in status(pilot.app)
    drive(apply_trace, check)


def screen_text(app) -> str:
    """A text capture of the whole screen, as the terminal shows it."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


def whole(item: str, text: str) -> bool:
    """Whether `item` is on one line of `text` (its words as far apart as the layout puts them)."""
    pattern = " +".join(map(re.escape, item.split()))
    return any(re.search(pattern, line) for line in text.splitlines())


def cut(items, text: str) -> list[str]:
    """The items that are not whole on a line of `text`."""
    return [item for item in items if not whole(item, text)]


@pytest.mark.slow
@pytest.mark.parametrize("size", [(80, 24), (120, 40), (200, 60)])
def test_every_screen_keeps_its_items_whole(trace_72, size):
    """At 80x24, 120x40 and 200x60, on the lanes, the detail pane, the summary (s) and the keys (?): the footer's
    keys, every figure of the action (label and value), every event field, every key and legend entry is on one
    line, neither wrapped in the middle nor cut."""
    bindings = [b for b in TraceViewer.BINDINGS if isinstance(b, Binding)]
    keys = [f"{b.key_display or b.key} {b.description}" for b in bindings]
    legend = [*(f"{STATE_GLYPHS[state]} {state.value}" for state in STATE_COLOURS),
              *(f"{char} {kind}" for kind, char in MARKERS.items()),
              "│ action request and release", "┆ deadline (master's kick + timeout)", "· state unknown"]

    async def check(pilot):
        app = pilot.app
        assert cut([key for key, b in zip(keys, bindings, strict=True) if b.show], screen_text(app)) == []
        await pilot.press("p")
        event, action = app.trace.event(app.selected), actions(app.trace).__next__()
        text = screen_text(app) + "\n" + detail(app)
        arrived = [f"cpu{arrival.vcpu}" for arrival in action.arrivals]
        assert cut([f"patch cpu0 {instant(event.time_ns)}", f"event {app.selected}, line",
                    *(f"{name} {event.fields[name]}" for name in ("payload", "function", "old", "new")),
                    *(f"{label} {value}" for label, value in figures(action).items()),
                    f"arrival order {arrived[0]}", *arrived[:ARRIVALS_SHOWN]], text) == []
        await pilot.press("s")
        await pilot.pause()
        screen = app.screen
        table, more = shown(screen.query_one(DataTable)), shown(screen.query_one("#more"))
        in_table = [label for label in LABELS if whole(label, table.splitlines()[0])]
        assert in_table == list(LABELS[:len(in_table)]) and len(in_table) >= 6
        assert cut(in_table, table) == [] and cut([figures(action)[label] for label in in_table], table) == []
        left_out = [f"{label} {value}" for label, value in figures(action).items() if label not in in_table]
        assert cut(left_out, more) == []
        assert cut([f"arrival order {arrived[0]}", *arrived], more) == []
        await pilot.press("escape", "question_mark")
        await pilot.pause()
        help_text = "\n".join(shown(static) for static in app.screen.query("Static"))
        assert cut(keys + legend, help_text) == []
    drive(trace_72, check, size=size)


def test_a_real_xen_traces_addresses_are_named_from_its_image():
    """A trace of Debian's Xen (its build-id in the header) gets Xen's own function names, without building anything."""
    xen = load_image(debian_file(lambda: xen_syms_path("debian")))
    symbols = Symbols.for_header({"hypervisor_build_id": xen.build_id.hex(), "firmware_build_id": "00ff"},
                                 arch=xen.arch)
    address = xen.address("xen_extra_version") + 3
    assert symbols.describe(address) == f"{address:#x} <xen_extra_version+0x3>"
