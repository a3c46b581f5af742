"""The fault registry: a new fault kind is one entry, and the scenario loader, the shell and explore take it."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
from click.testing import CliRunner
from helpers import debian_file

from xsplice_emu.authoring.xen_tests import xen_tests_for
from xsplice_emu.cli import main
from xsplice_emu.control.session import Session
from xsplice_emu.control.verbs import parse
from xsplice_emu.engines import ENGINES
from xsplice_emu.errors import ConfigError
from xsplice_emu.explore.plan import load_replay, plan_run, settings_of, with_plan, write_replay
from xsplice_emu.provision.debian import load_xen_syms, xen_syms
from xsplice_emu.scenario import load_scenario
from xsplice_emu.scenario.faults import FAULTS, Drawn, Fault
from xsplice_emu.scenario.keys import Param, Value
from xsplice_emu.scenario.steps import VCPU, Done, Step


@dataclass(frozen=True)
class NmiPairStep(Step):
    """Two NMIs to one vCPU, GAP apart: the step of the fault kind the tests add."""

    vcpu: int
    gap_ns: int

    kind: ClassVar = "nmi_pair"
    key: ClassVar = "nmi_pair"
    params: ClassVar = (VCPU, Param("gap_us", Value.US, "gap_ns", "GAP", "the time between them"))
    summary: ClassVar = "Two NMIs to that vCPU, GAP apart."
    example: ClassVar = ("nmi_pair = { vcpu = 1, gap_us = 5 }", "nmi_pair 1 5us")

    def describe(self):
        return f"two NMIs to vCPU {self.vcpu}, {self.gap_ns} ns apart"

    def run(self, session):
        session.nmi(self.vcpu)
        session.nmi(self.vcpu, delay_ns=self.gap_ns)
        return Done()


def _draw(drawn: Drawn):
    return {"vcpu": drawn.vcpu, "gap_us": round(drawn.delay_us, 3)}, round(drawn.delay_us, 3)


@pytest.fixture
def nmi_pair(monkeypatch):
    """The new fault kind, registered as one entry for the test."""
    monkeypatch.setitem(FAULTS, "nmi_pair", Fault("nmi_pair", ("controller", "xen"), step=NmiPairStep, draw=_draw))


def _nmis(path) -> list[int]:
    """The vCPU of each NMI delivered in the trace at `path`."""
    return [event["vcpu"] for event in map(json.loads, path.read_text().splitlines()[1:]) if event["kind"] == "nmi"]


SCENARIO = """name = "two NMIs"
[machine]
vcpus = 2
[explore]
faults = ["nmi_pair"]
[[step]]
run_ms = 1
[[step]]
nmi_pair = { vcpu = 1, gap_us = 5 }
[[step]]
run_ms = 1
"""


def test_a_new_fault_kind_runs_from_a_scenario_toml(nmi_pair, tmp_path):
    """`nmi_pair = { ... }` in a scenario delivers two NMIs to that vCPU."""
    (tmp_path / "pair.toml").write_text(SCENARIO)
    result = CliRunner().invoke(main, ["run", str(tmp_path / "pair.toml"), "--trace", str(tmp_path / "t.jsonl")])
    assert result.exit_code == 0, result.output
    assert _nmis(tmp_path / "t.jsonl") == [1, 1]


def test_a_new_fault_kind_runs_from_its_shell_words(nmi_pair, tmp_path):
    """`help nmi_pair` shows its syntax; `nmi_pair 1 5us` at the shell delivers two NMIs to vCPU 1."""
    trace = tmp_path / "t.jsonl"
    lines = ["help nmi_pair", "nmi_pair 1 5us", "run 1ms", f"trace save {trace}"]
    result = CliRunner().invoke(main, ["shell", "--vcpus", "2", "--boot-ms", "1"], input="\n".join(lines) + "\n")
    assert result.exit_code == 0, result.output
    assert "nmi_pair VCPU GAP\n  Two NMIs to that vCPU, GAP apart." in result.output
    assert _nmis(trace) == [1, 1]


def test_a_shell_session_with_a_new_fault_kind_saves_as_a_scenario(nmi_pair, tmp_path):
    """`nmi_pair 1 5us` then `save FILE` at the shell: the file holds its TOML and `run` of it sends two NMIs."""
    saved = tmp_path / "saved.toml"
    result = CliRunner().invoke(main, ["shell", "--vcpus", "2", "--boot-ms", "1", "-q"],
                                input=f"nmi_pair 1 5us\nrun 1ms\nsave {saved}\n")
    assert result.exit_code == 0, result.output
    assert "nmi_pair = { vcpu = 1, gap_us = 5.0 }" in saved.read_text()
    run = CliRunner().invoke(main, ["run", str(saved), "--trace", str(tmp_path / "t.jsonl")])
    assert run.exit_code == 0, run.output
    assert _nmis(tmp_path / "t.jsonl") == [1, 1]


def test_explore_draws_a_new_fault_kind_and_replays_it(nmi_pair, tmp_path):
    """Chaos draws the new kind before an action when `[explore] faults` names it; its replay file holds it."""
    path = tmp_path / "pair.toml"
    path.write_text(SCENARIO.replace('run_ms = 1\n[[step]]\nnmi', 'livepatch = "apply hello"\n[[step]]\nnmi'))
    scenario = load_scenario(path)
    plan = next(plan for number in range(1, 50)
                if (plan := plan_run(scenario, settings_of(scenario), "chaos", 1, number)).faults)
    (fault,) = plan.faults
    assert (fault.before, fault.key, type(fault.step)) == (1, "nmi_pair", NmiPairStep)
    write_replay(tmp_path / "run.toml", scenario, plan, strategy="chaos", campaign_seed=1)
    assert "nmi_pair = { vcpu = " in (tmp_path / "run.toml").read_text()
    replayed = load_replay(tmp_path / "run.toml", scenario)
    assert replayed.steps == with_plan(scenario, plan).steps


DOC = Path(__file__).resolve().parent.parent / "docs" / "oracle.md"


def test_the_oracle_doc_lists_every_fault_kind_on_its_engines():
    """docs/oracle.md's fault table names the registry's kinds, each on the registry's engines."""
    table = DOC.read_text().split("## Faults that make it fire")[1].split("\n\n")[2]
    rows = [re.match(r"\| `(\w+)` \| ([\w, ]+) \|", line) for line in table.splitlines()[2:]]
    assert {row[1]: tuple(row[2].split(", ")) for row in rows if row} == {
        name: fault.engines for name, fault in FAULTS.items()}


@pytest.fixture(scope="module")
def xen_payloads():
    """Debian's Xen 4.17 and Xen's test payloads built against it (skipped, with the reason, when it cannot be
    fetched)."""
    xen = load_xen_syms(debian_file(xen_syms))
    return xen, xen_tests_for(xen.path)


@pytest.mark.slow
def test_an_action_fault_is_refused_exactly_on_the_engines_it_does_not_exist_on(payloads, xen_payloads):
    """`apply --unsafe` / `--from-irq` / `--preempt-requester-ms 1` run where the registry says the fault exists,
    and are refused with EOPNOTSUPP, changing nothing, on the other engines."""
    xen, built = xen_payloads
    sessions = {"controller": lambda: Session(vcpus=2, seed=1, base=payloads),
                "xen": lambda: Session(vcpus=2, seed=1, xen_syms=xen.path, engine="xen", base=built)}
    assert set(sessions) == set(ENGINES)
    for name, fault in FAULTS.items():
        if fault.option is None:
            continue
        for engine, session_of in sessions.items():
            session = session_of()
            assert session.command(parse(["upload", "hello", "xen_hello_world.livepatch"])).exit_code == 0
            value = [] if fault.option.type is bool else ["1"]
            outcome = session.command(parse(["apply", "hello", fault.option.flag, *value]))
            refused = outcome.errno_name == "EOPNOTSUPP"
            assert refused == (engine not in fault.engines), (name, engine, outcome.text)
            assert session.livepatch.applied == ([] if refused else ["hello"]), (name, engine)


def test_explore_refuses_a_fault_kind_the_scenarios_engine_lacks(monkeypatch, tmp_path, xen_payloads):
    """`[explore] faults` naming a kind not on the scenario's engine: one line naming the kind and the engine."""
    monkeypatch.setitem(FAULTS, "nmi_pair", Fault("nmi_pair", ("controller",), step=NmiPairStep, draw=_draw))
    path = tmp_path / "pair.toml"
    path.write_text(SCENARIO.replace("vcpus = 2", f'vcpus = 2\nengine = "xen"\nxen_syms = "{xen_payloads[0].path}"'))
    with pytest.raises(ConfigError, match=r"\[explore\]: faults: nmi_pair does not exist on the xen engine$"):
        settings_of(load_scenario(path))
