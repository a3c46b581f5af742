"""REPLACE as current Xen does it, and the payload's own rc as `list` shows it."""

from __future__ import annotations

import errno

import pytest
from helpers import extra_versions, upload

from xsplice_emu import LivepatchError
from xsplice_emu.control.session import Session
from xsplice_emu.control.verbs import parse
from xsplice_emu.livepatch import Action, PayloadState


def test_replace_checks_expectations_after_reverting_the_stack(patching):
    """hello applied, then replace by a payload expecting the original bytes: Xen applies it."""
    machine, livepatch = patching(2)
    upload(livepatch, "hello", "xen_hello_world.livepatch")
    upload(livepatch, "expect", "xen_expectations.livepatch")
    assert livepatch.run_action("hello", Action.APPLY).rc == 0
    assert livepatch.run_action("expect", Action.REPLACE).rc == 0
    assert livepatch.applied == ["expect"] and livepatch.get("hello").state is PayloadState.CHECKED
    assert extra_versions(machine) == {"Hello World"}


def test_replace_failing_expectations_leaves_nothing_applied(patching):
    """An expectation unmet once the stack is reverted: EINVAL, nothing applied, Xen's INSECURE line."""
    machine, livepatch = patching(2)
    upload(livepatch, "hello", "xen_hello_world.livepatch")
    upload(livepatch, "fail", "xen_expectations_fail.livepatch")
    assert livepatch.run_action("hello", Action.APPLY).rc == 0
    assert livepatch.run_action("fail", Action.REPLACE).rc == -errno.EINVAL
    assert livepatch.applied == [] and livepatch.get("hello").state is PayloadState.CHECKED
    assert livepatch.get("fail").rc == -errno.EINVAL
    assert extra_versions(machine) == {"-unstable"}
    assert ("livepatch: fail: SYSTEM MIGHT BE INSECURE: Replace action has been aborted after reverting ALL "
            "payloads!") in livepatch.rendezvous.log


@pytest.mark.parametrize("hooked", ["new", "applied"])
def test_replace_with_vetoing_hooks_is_eopnotsupp(patching, hooked):
    """Pre/post hooks on the new payload or on an applied one: REPLACE refused with EOPNOTSUPP."""
    machine, livepatch = patching(2)
    upload(livepatch, "hooks", "xen_prepost_hooks.livepatch")
    upload(livepatch, "replace", "xen_replace_world.livepatch")
    if hooked == "applied":
        assert livepatch.run_action("hooks", Action.APPLY).rc == 0
    with pytest.raises(LivepatchError, match="not supported on livepatches with vetoing hooks") as refused:
        livepatch.action("hooks" if hooked == "new" else "replace", Action.REPLACE)
    assert refused.value.errno == errno.EOPNOTSUPP
    assert livepatch.applied == (["hooks"] if hooked == "applied" else [])


def test_refused_reapply_shows_einval_in_list(payloads):
    """A reverted payload with .data refused on re-apply: list shows (22, Invalid argument) beside it."""
    session = Session(vcpus=2, seed=1, boot_ms=1, base=payloads)
    for line in ("load xen_hello_world.livepatch", "revert xen_hello_world"):
        assert session.command(parse(line)).exit_code == 0
    assert session.command(parse("apply xen_hello_world")).errno == errno.EINVAL
    listed = session.command(parse("list")).text
    assert "xen_hello_world                         | CHECKED (22, Invalid argument)    | LIVEPATCH_RULEZ\n" in listed


def test_preapply_veto_shows_its_errno_in_list(payloads):
    """A pre-apply hook's veto (-EBUSY) stays as the payload's rc: list shows (16, Device or resource busy)."""
    session = Session(vcpus=2, seed=1, boot_ms=1, base=payloads)
    session.command(parse("upload fail xen_prepost_hooks_fail.livepatch"))
    assert session.command(parse("apply fail")).errno == errno.EBUSY
    assert "fail" + " " * 36 + "| CHECKED (16, Device or resource busy)    | \n" in session.command(parse("list")).text
