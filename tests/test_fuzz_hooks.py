"""Fuzz axis "hook behaviours": payload hooks that loop, recurse, ask for xsplice work again, enable interrupts,
run softirqs, fault, or write int3 into the firmware's or another payload's text, never wedge the machine nor
leave code changed by an action that failed (`make fuzz` runs 2,000 cases).

The hooks are those of payloads/src/hook_lab_*.c, built once: each case writes what each hook does into the
payload's .data (hook_lab.h) before its actions.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

import pytest
from fuzzing import booted, check_hello
from helpers import PAYLOADS, machine_free, upload

from xsplice_emu import LivepatchError
from xsplice_emu.control.session import text_digest
from xsplice_emu.engines.controller import Livepatch
from xsplice_emu.livepatch import Action, PayloadState
from xsplice_emu.livepatch.payload import RegionKind

KINDS = ("load", "unload", "preapply", "apply", "postapply", "prerevert", "revert", "postrevert")  # enum hook_kind
BEHAVIOURS = ("behave", "veto", "loop", "recurse", "reenter", "sti", "softirqs", "fault", "poke_and_fault",
              "poke_and_veto")  # enum behaviour
MISBEHAVING = BEHAVIOURS[1:]
KEPT_POKES = {  # where an int3 stays, as in Xen, so no case asks for it: the action went on, or an action hook
    "postapply": ("poke_and_fault", "poke_and_veto"), "postrevert": ("poke_and_fault", "poke_and_veto"),
    "load": ("poke_and_veto",), "unload": ("poke_and_veto",),  # said no (Xen does not roll code back then)
    "apply": ("poke_and_veto",), "revert": ("poke_and_veto",),
}
LABS = {"hook_lab_actions": ("preapply", "apply", "postapply", "prerevert", "revert", "postrevert"),
        "hook_lab_load": ("load", "unload", "preapply", "postapply", "prerevert", "postrevert")}
TIMEOUT_NS = 2_000_000  # each action's rendezvous and hook deadline: a looping hook costs 2 virtual ms
TICK_NS = 3_000_000  # long enough for every vCPU's timer to tick


@dataclass
class Figures:
    """What a run of the axis saw."""

    cases: int = 0
    behaviours: Counter[str] = field(default_factory=Counter)
    rcs: Counter[int] = field(default_factory=Counter)  # each action's rc (a refusal: minus its errno)
    machines: int = 1
    findings: list[str] = field(default_factory=list)


class HookFuzzer:
    """Cases of misbehaving hooks against one machine (a new one after a finding). A case uploads a lab, sets
    its hooks, applies and reverts it, then lets every hook behave to revert (if still applied) and unload it.
    Another payload, xen_bye_world, stays uploaded: its text is one of the poking hooks' targets, the
    firmware's xen_major_version the other."""

    def __init__(self, image, *, seed: int):
        self.image = image
        self.rng = random.Random(seed)
        self.labs = {name: (PAYLOADS / f"{name}.livepatch").read_bytes() for name in LABS}
        self.hello = (PAYLOADS / "xen_hello_world.livepatch").read_bytes()
        self.figures = Figures()
        self._boot()

    def _boot(self) -> None:
        self.machine, self.livepatch = booted(self.image)
        upload(self.livepatch, "other", "xen_bye_world.livepatch")
        other = self.livepatch.get("other").loaded
        [self.other_text] = [(r.address, r.end) for r in other.regions if r.kind is RegionKind.TEXT]
        self.targets = (self.machine.image.address("xen_major_version"), self.other_text[0])

    def run(self, cases: int) -> Figures:
        for case in range(cases):
            try:
                self._case(f"lab{case}")
            except Exception as exc:  # a host exception, a broken invariant: note it, go on with a new machine
                self.figures.findings.append(f"case {case}: {type(exc).__name__}: {exc}")
                self.figures.machines += 1
                self._boot()
            self.figures.cases += 1
        return self.figures

    def _text(self) -> str:
        """The firmware's code and the other payload's, as guest memory holds them now."""
        return text_digest(self.machine) + self.machine.memory.digest(*self.other_text)

    def _case(self, name: str) -> None:
        lab = self.rng.choice(sorted(LABS))
        plan = {kind: self._behaviour(kind) for kind in LABS[lab]}
        self.figures.behaviours.update(plan.values())
        livepatch = self.livepatch
        livepatch.upload(name, self.labs[lab])
        self._set(name, plan)
        for action in (Action.APPLY, Action.REVERT):
            before = self._text()
            rc = self._act(livepatch, name, action)
            self.figures.rcs[rc] += 1
            if rc and self._text() != before:
                raise AssertionError(f"{name} {plan}: {action.name} failed with {rc} but changed code")
            if livepatch.get(name).state is not PayloadState.APPLIED:
                break
        self._set(name, {kind: "behave" for kind in plan})
        if livepatch.get(name).state is PayloadState.APPLIED:
            self._act(livepatch, name, Action.REVERT)
        livepatch.action(name, Action.UNLOAD)
        self._check_released(name, plan)
        check_hello(livepatch, self.hello)

    def _behaviour(self, kind: str) -> str:
        """Mostly "behave"; else a misbehaviour this kind of hook may show (not an int3 Xen would keep)."""
        if self.rng.random() < 0.6:
            return "behave"
        return self.rng.choice([b for b in MISBEHAVING if b not in KEPT_POKES.get(kind, ())])

    def _set(self, name: str, plan: dict[str, str]) -> None:
        """Write the plan, the poke target and the recursion depth into payload `name`'s .data."""
        symbols, memory = self.livepatch.get(name).loaded.symbols, self.machine.memory
        table = bytearray(len(KINDS))
        for kind, behaviour in plan.items():
            table[KINDS.index(kind)] = BEHAVIOURS.index(behaviour)
        memory.write(symbols["hook_behaviour"], bytes(table))
        memory.write_u64(symbols["hook_poke_at"], self.rng.choice(self.targets))
        memory.write(symbols["hook_depth"], self.rng.randint(1, 150).to_bytes(4, "little"))

    def _act(self, livepatch: Livepatch, name: str, action: Action) -> int:
        """Run `action` on `name`: its rc, minus the errno of a refusal."""
        try:
            result = livepatch.run_action(name, action, timeout_ns=TIMEOUT_NS)
        except LivepatchError as exc:
            return -exc.errno
        if result is None:
            raise AssertionError(f"{name}: {action.name} did not finish within twice its timeout")
        return result.rc

    def _check_released(self, name: str, plan: dict[str, str]) -> None:
        """Every vCPU released and taking its timer interrupts, NMIs back on the default callback, no action
        left pending."""
        machine, livepatch = self.machine, self.livepatch
        online = len(machine.vcpus)
        ticks = machine.per_cpu("timer_ticks")[:online]
        machine.run_for(TICK_NS)
        ticked = [after > before for before, after in zip(ticks, machine.per_cpu("timer_ticks")[:online], strict=True)]
        if not machine_free(machine) or not all(ticked):
            raise AssertionError(f"{name} {plan}: vCPUs not all released with IRQs on (ticked: {ticked})")
        if livepatch.poll() is not None or livepatch.rendezvous.busy:
            raise AssertionError(f"{name} {plan}: an action is still pending")


@pytest.mark.slow
def test_misbehaving_hooks(image, payloads, request):
    """Every case: no host exception, every vCPU released with IRQs and NMIs back, nothing pending, a failed
    action's code unchanged, and hello_world applies and reverts afterwards."""
    fuzzer = HookFuzzer(image, seed=request.config.getoption("fuzz_seed"))
    figures = fuzzer.run(request.config.getoption("fuzz_axis_cases"))
    print(f"\nfuzz hooks: {figures}")
    assert figures.findings == []
    assert set(figures.behaviours) == set(BEHAVIOURS) and len(figures.rcs) > 3
