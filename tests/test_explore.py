"""`xsplice-emu explore`: classes of outcomes over seeded schedules, replayable; the same table with any number
of jobs or on a Dask cluster; a run forked from the booted machine is the run started fresh."""

from __future__ import annotations

import ctypes
import gc
import json
import mmap
import os
import re
import shlex
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import ROOT

from xsplice_emu.cli import main
from xsplice_emu.explore import cluster
from xsplice_emu.explore.campaign import BOOTED_KEPT, Campaign, booted, explore, fork_runs, run_fresh
from xsplice_emu.explore.dirty import PAGE_SIZE, WrittenPages
from xsplice_emu.scenario import load_scenario

EXPLORE = ROOT / "scenarios" / "explore"


def _explore(*args: str):
    return CliRunner().invoke(main, ["explore", *map(str, args)])


def _command(line: str):
    """A printed `xsplice-emu ...` command line, run."""
    words = shlex.split(line)
    assert words[0] == "xsplice-emu"
    return CliRunner().invoke(main, words[1:])


def _classes(result) -> list[dict]:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["classes"]


@pytest.mark.slow
def test_random_finds_a_torn_unsafe_patch_and_its_command_replays_it(payloads, tmp_path):
    """Within 50 runs: a class with the torn violation; its reproduce command fails the same way, the passing
    class's command passes; --out holds each class's replay file and trace."""
    out = tmp_path / "out"
    classes = _classes(_explore(EXPLORE / "unsafe_patch.toml", "--runs", "50", "--jobs", "2", "--json",
                                "--out", out))
    torn = next(c for c in classes if "violation torn" in c["outcome"])
    clean = next(c for c in classes if c["outcome"] == "pass")
    assert torn["count"] + clean["count"] == 50 and torn["count"] < 50
    replayed = _command(torn["reproduce"])
    assert replayed.exit_code == 1 and "violations: expected 0, got {'torn': 1}" in replayed.output
    again = _command(clean["reproduce"])
    assert again.exit_code == 0, again.output
    assert len(list(out.glob("class*.toml"))) == len(classes) == len(list(out.glob("class*.jsonl")))


CHAOS_RUNS = 40


@pytest.fixture(scope="module")
def chaos(payloads, tmp_path_factory) -> list[dict]:
    """The classes of safe_apply under chaos, seed 4, CHAOS_RUNS runs on two jobs, replay files under --out: one
    campaign for the tests that read its table, its JSON and its replay files."""
    return _classes(_explore(EXPLORE / "safe_apply.toml", "--runs", CHAOS_RUNS, "--strategy", "chaos", "--seed", "4",
                             "--jobs", "2", "--json", "--out", tmp_path_factory.mktemp("chaos")))


@pytest.mark.slow
def test_chaos_on_xens_rendezvous_finds_no_violation(chaos):
    """safe_apply under chaos: every class passes or fails on an action's EBUSY (stalls/preemptions past the
    deadline), never a violation, a guest fault or a timeout."""
    assert all(c["outcome"] == "pass" or c["outcome"].endswith(": rc EBUSY") for c in chaos)
    assert any(c["outcome"] == "pass" for c in chaos)


def test_a_dropped_flush_is_found_stale(payloads):
    """Every run of the drop_flush scenario fires the stale check, which the scenario expects."""
    classes = _classes(_explore(EXPLORE / "drop_flush.toml", "--runs", "5", "--json"))
    assert [c["outcome"] for c in classes] == ["pass: violation stale at xen_extra_version"]


@pytest.mark.long
def test_pct_finds_the_atomicity_bug_that_random_misses(payloads):
    """The lost update of call_racy_add over runs 0-299 of seed 0: PCT finds it (14 runs); random, whose
    slices never end inside the read-modify-write, does not."""
    def lost(strategy: str) -> int:
        classes = _classes(_explore(EXPLORE / "racy_counter.toml", "--runs", "300", "--strategy", strategy,
                                    "--jobs", "2", "--json"))
        return sum(c["count"] for c in classes if c["outcome"].startswith("FAIL"))
    found_by_pct, found_by_random = lost("pct"), lost("random")
    assert found_by_pct > found_by_random
    assert (found_by_pct, found_by_random) == (14, 0)  # the figures the README quotes


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["random", "pct", "chaos"])
def test_a_forked_run_is_the_run_started_fresh(payloads, strategy):
    """Same run seed, same outcome and same trace digest, forked from the booted machine or booted anew."""
    campaign = Campaign.of(load_scenario(EXPLORE / "safe_apply.toml"), strategy, 5, digests=True)
    forked = explore(campaign, 4, jobs=2).outcomes
    for outcome in forked:
        fresh, _ = run_fresh(campaign, outcome.number)
        assert fresh == outcome and fresh.digest


def test_a_payload_rebuilt_at_the_same_path_is_what_the_next_campaign_uploads(payloads, tmp_path):
    """Two campaigns in one process, the payload file replaced in between (hello world, then bye world, at the same
    path): the second boots anew and its runs see "Bye World", not the first campaign's upload."""
    payload = tmp_path / "patch.livepatch"
    path = tmp_path / "load.toml"
    path.write_text('[machine]\nvcpus = 2\nseed = 1\n\n[[step]]\nlivepatch = "load patch.livepatch"\n\n'
                    '[[step]]\nexpect = { extra_version = "Hello World" }\n')
    verdicts = []
    for source in ("xen_hello_world", "xen_bye_world"):
        payload.write_bytes((payloads / f"{source}.livepatch").read_bytes())
        outcomes = explore(Campaign.of(load_scenario(path), "random", 1), 2, jobs=1).outcomes
        verdicts.append([outcome.passed for outcome in outcomes])
    assert verdicts == [[True, True], [False, False]]


def test_a_process_keeps_the_machines_it_booted_last_and_boots_an_older_one_again(payloads, tmp_path):
    """Campaigns of three scenarios in one process (a Dask worker serving them): it keeps the booted machines of
    the last two used, reused as they are, and boots the first's again."""
    paths = []
    for seed in (1, 2, 3):
        paths.append(tmp_path / f"s{seed}.toml")
        paths[-1].write_text(f'[machine]\nvcpus = 2\nseed = {seed}\n\n[[step]]\n'
                             f'livepatch = "load {payloads / "xen_hello_world.livepatch"}"\n')
    machines = [booted(load_scenario(path), upload_ahead=True) for path in paths]
    assert BOOTED_KEPT == 2
    assert booted(load_scenario(paths[2]), upload_ahead=True) is machines[2]
    assert booted(load_scenario(paths[1]), upload_ahead=True) is machines[1]
    again = booted(load_scenario(paths[0]), upload_ahead=True)
    assert again is not machines[0] and again.session.machine.now_ns == machines[0].session.machine.now_ns
    assert booted(load_scenario(paths[1]), upload_ahead=True) is machines[1]  # (the third's went)
    assert booted(load_scenario(paths[2]), upload_ahead=True) is not machines[2]


LOADS = {
    "applied": ("xen_hello_world.livepatch", 'expect_output = """completed\nApplying xen_hello_world... completed\n'
                '(XEN) livepatch: xen_hello_world: Verifying"""'),
    "refused": ("junk.livepatch", 'expect_rc = "EINVAL"\nexpect_output = """Uploading junk.livepatch... failed\n'
                'Error 22: Invalid argument\n(XEN) livepatch: junk: Section header"""'),
}


@pytest.mark.parametrize("case", sorted(LOADS))
def test_a_forked_load_prints_and_does_what_a_fresh_one_does(payloads, tmp_path, case):
    """A leading load, whose upload the booted machine runs ahead for every run: the same output (upload's, then
    apply's), outcome and trace digest as the run started fresh."""
    file, expectations = LOADS[case]
    (tmp_path / "junk.livepatch").write_bytes(b"junk")
    (tmp_path / "xen_hello_world.livepatch").write_bytes((payloads / "xen_hello_world.livepatch").read_bytes())
    path = tmp_path / "load.toml"
    path.write_text(f'[machine]\nvcpus = 4\nseed = 2\n\n[[step]]\nlivepatch = "load {file}"\n{expectations}\n\n'
                    '[[step]]\nrun_ms = 1\n')
    campaign = Campaign.of(load_scenario(path), "random", 5, digests=True)
    forked = explore(campaign, 3, jobs=2).outcomes
    for outcome in forked:
        fresh, _ = run_fresh(campaign, outcome.number)
        assert outcome.passed and fresh == outcome and fresh.digest


@pytest.mark.parametrize("vcpus", [4, 16])
def test_runs_rewound_in_one_child_are_the_runs_forked_alone(payloads, tmp_path, vcpus):
    """Six runs that each load a patch (text changed), check it, then fault, all made by one child rewinding the
    machine between them: the same outcomes, failure lines and trace digests as six children of one run each."""
    path = tmp_path / "load_then_fault.toml"
    path.write_text(f'[machine]\nvcpus = {vcpus}\nseed = 3\n\n[[step]]\nlivepatch = "load '
                    f'{payloads / "xen_hello_world.livepatch"}"\n\n[[step]]\nexpect = {{ extra_version = '
                    '"Hello World" }\n\n[[step]]\ncall = { vcpu = 1, function = "call_fault", args = [4] }\n')
    campaign = Campaign.of(load_scenario(path), "random", 9, digests=True)
    rewound = explore(campaign, 6, runs_per_child=6).outcomes
    alone = explore(campaign, 6, runs_per_child=1).outcomes
    assert booted(campaign.scenario, upload_ahead=True).rewind is not None  # the first six were rewound
    assert rewound == alone and len({outcome.digest for outcome in alone}) == 6
    assert all(outcome.failure.startswith("call call_fault(4) on vCPU 1: vCPU 1 fault: Write to write-protected "
                                          "memory (UC_ERR_WRITE_PROT)") for outcome in alone)  # steps 1-2 passed


def test_the_kernel_reports_exactly_the_pages_written_since_it_was_last_asked():
    """WrittenPages over a 1 MiB mapping: the runs of pages stored into (one byte is enough), then none."""
    mapping = mmap.mmap(-1, 256 * PAGE_SIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    address = ctypes.addressof(ctypes.c_char.from_buffer(mapping))
    written = WrittenPages()
    try:
        written.track(address, len(mapping))
        assert written.take() == []
        for page in (3, 4, 200):
            mapping[page * PAGE_SIZE + 7] = 1
        assert written.take() == [(address + 3 * PAGE_SIZE, address + 5 * PAGE_SIZE),
                                  (address + 200 * PAGE_SIZE, address + 201 * PAGE_SIZE)]
        assert written.take() == []
    finally:
        written.close()


@pytest.mark.long
def test_jobs_and_a_dask_cluster_give_the_same_classes(payloads):
    """--jobs 1, --jobs 2 and a LocalCluster of two worker processes: byte-identical classes."""
    distributed = pytest.importorskip("distributed")
    path = EXPLORE / "unsafe_patch.toml"

    def classes(*args: str) -> list[dict]:
        """The classes, each replay file named without its (temporary) folder."""
        found = _classes(_explore(path, "--runs", "60", "--seed", "9", "--json", *args))
        return [c | {"reproduce": c["reproduce"].rsplit("/", 1)[1]} for c in found]
    one, two = classes("--jobs", "1"), classes("--jobs", "2")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        dask = classes("--dask", cluster.scheduler_address)
    assert one == two == dask and len(one) == 2


@pytest.mark.slow
def test_plot_writes_a_png(payloads, tmp_path):
    path = tmp_path / "mix.png"
    _classes(_explore(EXPLORE / "unsafe_patch.toml", "--runs", "10", "--json", "--plot", path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("args, message", [
    (["--runs", "0"], "error: --runs must be 1..10,000,000, not 0"),
    pytest.param(["--runs", "5", "--dask", "tcp://127.0.0.1:9"],
                 "error: --dask tcp://127.0.0.1:9: cannot reach a Dask scheduler", marks=pytest.mark.slow),
])
def test_bad_runs_and_an_unreachable_cluster_are_one_line(payloads, args, message, monkeypatch):
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT", "0.5s")  # Dask tries a refused port again until then
    result = _explore(EXPLORE / "unsafe_patch.toml", *args)
    assert result.exit_code == 2 and result.output.count("\n") == 1 and result.output.startswith(message)


def test_an_out_folder_that_cannot_be_made_is_one_line(payloads):
    """--out whose parent exists but refuses a new folder (/proc makes none, whoever asks): one line, exit 2, and
    no campaign run."""
    result = _explore(EXPLORE / "unsafe_patch.toml", "--runs", "2", "--out", "/proc/xsplice-emu-out")
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert result.output.startswith("error: /proc/xsplice-emu-out: cannot make the directory: "), result.output


@pytest.mark.parametrize("table, message", [
    ("[explore]\nfaults = [\"meteor\"]\n", "[explore]: faults: meteor is not one of preempt, stall, nmi_storm"),
    ("[explore]\nmin_us = 5\nmax_us = 1\n", "[explore]: need 0 < min_us <= max_us, not 5..1"),
    ("[explore]\ncolour = 1\n", "[explore]: unknown key 'colour' (allowed: faults, min_us, max_us, window_us, "
                                    "nmi_rate_khz, pct_depth, pct_steps)"),
    ("[explore]\npct_depth = 0\n", "[explore]: pct_depth must be 1..16, not 0"),
])
def test_a_malformed_explore_table_is_one_line(payloads, tmp_path, table, message):
    path = tmp_path / "s.toml"
    path.write_text((EXPLORE / "unsafe_patch.toml").read_text().replace("../../payloads", str(ROOT / "payloads"))
                    + "\n" + table)
    result = _explore(path, "--runs", "3")
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert result.output == f"error: {path}: {message}\n"


def test_stop_on_violation_ends_the_campaign_at_the_first_one(payloads):
    """--stop-on violation with one job: runs 0 and 1 are clean, run 2 is torn, and no run starts after it."""
    result = _explore(EXPLORE / "unsafe_patch.toml", "--runs", "200", "--stop-on", "violation", "--json")
    report = json.loads(result.stdout)
    assert result.exit_code == 0 and report["runs"] == 3
    assert [(c["outcome"], c["count"]) for c in report["classes"]] == [
        ("pass", 2), ("FAIL: violation torn at xen_extra_version", 1)]


def test_a_run_that_fired_no_check_is_classified_without_building_its_trace(payloads):
    """Classifying a clean run leaves its trace's events unbuilt (at 72 vCPUs, building them took 5 ms of a
    29 ms run); a run that fired one still names where (above)."""
    campaign = Campaign.of(load_scenario(EXPLORE / "unsafe_patch.toml"), "random", 1)
    outcome, result = run_fresh(campaign, 0)
    assert outcome.passed and outcome.violations == () and result.session.violations == Counter()
    assert result.session.machine.trace._pending and not result.session.machine.trace._events


REPLAY_1511 = """
[schedule]
seed = 6579829745070056719
strategy = "random"

[[fault]]
before_step = 6
preempt = { vcpu = 0, us = 37511.395, delay_us = 12.528 }

[[fault]]
before_step = 9
preempt = { vcpu = 4, us = 20298.554, delay_us = 36.5 }
"""


def test_a_master_preempted_inside_a_hook_is_not_timed_out(payloads, tmp_path):
    """Run 1511 of `make explore-demo`'s chaos campaign: the host deschedules the master (vCPU 0) for 37.5 ms
    while it runs xen_hello_world's load hook. The hook's deadline counts only time the vCPU could run, so the
    apply completes (rc 0, released 37.5 ms after the request) instead of failing -ETIMEDOUT."""
    replay = tmp_path / "run1511.toml"
    replay.write_text(REPLAY_1511)
    result = CliRunner().invoke(main, ["run", str(EXPLORE / "safe_apply.toml"), "--replay", str(replay)])
    assert result.exit_code == 0, result.output
    assert "│    6 │ apply hello" in result.output and "37.5257 ms" in result.output


@pytest.mark.slow
def test_a_campaign_left_early_leaves_no_child_behind(payloads):
    """Stop reading the outcomes after the first: the running children are killed and reaped, and the garbage
    collector is as before."""
    campaign = Campaign.of(load_scenario(EXPLORE / "unsafe_patch.toml"), "random", 0)
    before = _children()
    runs = fork_runs(campaign, range(50), jobs=2)
    next(runs)
    assert len(_children() - before) >= 1  # the other job's child
    runs.close()
    assert _children() == before and gc.get_freeze_count() == 0


def _children() -> set[int]:
    """This process's child processes, zombies included (from /proc)."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid():
                found.add(int(entry))
    return found


@pytest.mark.slow
def test_a_chaos_replay_file_holds_its_faults_and_replays_its_class(chaos):
    """--out: each class's replay file writes the drawn faults as steps; `run --replay` gives that class's
    action rcs again."""
    assert {c["outcome"] for c in chaos} == {"pass", "FAIL: apply hello: rc EBUSY"}
    for outcome_class in chaos:
        replay = Path(shlex.split(outcome_class["reproduce"])[-1])
        assert "[[fault]]" in replay.read_text()
        result = _command(outcome_class["reproduce"])
        assert result.exit_code == (0 if outcome_class["outcome"] == "pass" else 1)
        assert ("got 'EBUSY'" in result.output) == ("EBUSY" in outcome_class["outcome"])


@pytest.mark.slow
def test_a_campaign_without_out_leaves_nothing_in_tmp(payloads, tmp_path, monkeypatch):
    """Without --out, the replay files go to one folder of the cache that the next campaign replaces, and the
    temporary directory stays empty."""
    temporary, cache = tmp_path / "tmp", tmp_path / "cache"
    temporary.mkdir()
    monkeypatch.setenv("TMPDIR", str(temporary))
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    tempfile.tempdir = None  # read TMPDIR again
    try:
        for seed in ("1", "2"):
            result = CliRunner().invoke(main, ["explore", str(EXPLORE / "safe_apply.toml"), "--runs", "2",
                                               "--seed", seed])
            assert result.exit_code == 0, result.output
    finally:
        tempfile.tempdir = None
    assert list(temporary.iterdir()) == []
    replays = sorted((cache / "xsplice-emu" / "explore-last").iterdir())
    assert replays and all(f"--replay {path}" in result.output for path in replays)


def test_a_replay_keeps_the_scenarios_step_numbers(payloads, tmp_path):
    """Run 1511's replay: the scenario's steps keep their numbers (apply hello is step 6 as in the file), each
    inserted fault is numbered after the step it comes before (6a, 9a), and the host time is not negative."""
    replay = tmp_path / "run1511.toml"
    replay.write_text(REPLAY_1511)
    result = CliRunner().invoke(main, ["run", str(EXPLORE / "safe_apply.toml"), "--replay", str(replay), "--json"])
    steps = json.loads(result.stdout)[0]["steps"]
    assert [(s["step"], s["command"].split()[0]) for s in steps[4:10]] == [
        ("5", "call"), ("6a", "preempt"), ("6", "apply"), ("7", "revert"), ("8", "unload"), ("9a", "preempt")]
    assert json.loads(result.stdout)[0]["host_seconds"] >= 0


@pytest.mark.slow
def test_a_class_says_what_failed(payloads):
    """The lost update of racy_counter under PCT is named by the check that saw it (the value vCPU 0's call
    returned), not by the actions' rcs."""
    classes = _classes(_explore(EXPLORE / "racy_counter.toml", "--runs", "60", "--strategy", "pct", "--json"))
    assert [(c["outcome"], c["count"]) for c in classes] == [
        ("pass", 58), ("FAIL: call_racy_count on vCPU 0: got 3", 2)]


@pytest.mark.slow
def test_json_gives_each_class_its_share_and_the_faults_drawn(chaos):
    """--json under chaos: each class's share is its count over the runs, and the faults drawn in its runs,
    by kind, add up to every fault the campaign's plans hold."""
    campaign = Campaign.of(load_scenario(EXPLORE / "safe_apply.toml"), "chaos", 4)
    drawn = Counter(fault.key for number in range(CHAOS_RUNS) for fault in campaign.plan(number).faults)
    assert all(c["share"] == round(c["count"] / CHAOS_RUNS, 4) for c in chaos)
    assert sum((Counter(c["faults"]) for c in chaos), Counter()) == drawn and drawn.total() > CHAOS_RUNS / 2


@pytest.mark.slow
def test_a_campaign_away_from_a_terminal_prints_a_line_every_tenth(payloads):
    """Piped (no terminal), 20 runs: stderr has one progress line at each 10% up to 90%, and stdout only the
    table."""
    result = _explore(EXPLORE / "unsafe_patch.toml", "--runs", "20")
    lines = result.stderr.splitlines()
    assert [line.split(" (")[0] for line in lines] == [f"explored {tenth}0%" for tenth in range(1, 10)]
    assert lines[0].startswith("explored 10% (2 of 20 runs, ") and "explored" not in result.stdout


@pytest.mark.slow
def test_the_plot_has_counts_ranges_and_a_panel_per_class_without_faults(payloads):
    """Chaos: bins named by their range in us or ms, each bar's total written on it, the totals adding up to the
    runs. Random (no fault drawn): one bar per class, each with its count, not one bar named 'none'."""
    from xsplice_emu.explore.plot import figure
    chaos = explore(Campaign.of(load_scenario(EXPLORE / "safe_apply.toml"), "chaos", 4), 12)
    mix = figure(chaos).axes[0]
    names = [label.get_text() for label in mix.get_xticklabels()]
    assert all(name == "no fault" or re.fullmatch(r"[\d.]+-[\d.]+ (us|ms)", name) for name in names)
    assert any(name.endswith(" ms") for name in names)
    assert sum(int(text.get_text()) for text in mix.texts if text.get_text().isdigit()) == 12
    plain = explore(Campaign.of(load_scenario(EXPLORE / "unsafe_patch.toml"), "random", 0), 10)
    mix = figure(plain).axes[0]
    assert [label.get_text() for label in mix.get_yticklabels()] == [c.label for c in plain.classes]
    assert [text.get_text().split()[0] for text in mix.texts] == [str(c.count) for c in plain.classes]
