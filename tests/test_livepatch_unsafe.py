"""Unsafe targets: refused by default, accepted with a warning when the user allows it."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import PAYLOADS

from xsplice_emu.control.session import Session
from xsplice_emu.control.verbs import parse
from xsplice_emu.errors import ConfigError
from xsplice_emu.scenario.steps import LivepatchStep

WARNING = "nmi: WARNING: patching do_nmi although it handles NMIs (allow-unsafe)"


def test_api_allow_unsafe_accepts_with_a_warning(patching):
    """Livepatch.upload(allow_unsafe=True) accepts a do_nmi payload and logs the warning."""
    machine, livepatch = patching(1)
    livepatch.upload("nmi", (PAYLOADS / "bad" / "do_nmi.livepatch").read_bytes(), allow_unsafe=True)
    assert [p.name for p in livepatch.list()] == ["nmi"] and WARNING in livepatch.rendezvous.notes


def test_operator_allow_unsafe_prints_the_warning(payloads):
    """`upload nmi bad/do_nmi.livepatch --allow-unsafe` prints the warning as the testbed's, not (XEN)."""
    session = Session(vcpus=1, seed=1, boot_ms=1, base=payloads)
    refused = session.command(parse("upload nmi bad/do_nmi.livepatch"))
    assert refused.errno_name == "EPERM"
    outcome = session.command(parse("upload nmi bad/do_nmi.livepatch --allow-unsafe"))
    assert outcome.exit_code == 0 and f"(testbed) {WARNING}\n" in outcome.text and "(XEN)" not in outcome.text


def test_scenario_key_allow_unsafe(payloads):
    """A livepatch step's allow_unsafe = true adds --allow-unsafe to upload/load, and is refused elsewhere."""
    base = Path(payloads)
    step = LivepatchStep.from_toml({"livepatch": "load bad/do_nmi.livepatch", "allow_unsafe": True},
                                   vcpus=1, base=base)
    assert step.request.params["allow_unsafe"] and step.describe().endswith("--allow-unsafe")
    with pytest.raises(ConfigError, match="allow_unsafe applies to upload and load"):
        LivepatchStep.from_toml({"livepatch": "apply nmi", "allow_unsafe": True}, vcpus=1, base=base)
