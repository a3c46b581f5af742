"""Xen's own semantics, as real Xen 4.17 shows them: where rc is written, what the sysctl answers, the order
records revert in, and the lines Xen prints."""

from __future__ import annotations

import errno

import pytest
from helpers import built, extra_versions, upload

from xsplice_emu import LivepatchError
from xsplice_emu.control.session import Session, text_digest
from xsplice_emu.control.verbs import parse
from xsplice_emu.livepatch import Action, PayloadState
from xsplice_emu.tracing.kinds import EventKind

VETO_THREE = """
#include <xsplice_payload.h>
static const char extra[] = "xen_extra_version";
const char *vetoed(void) { return "Vetoed"; }
static int pre_apply_hook(livepatch_payload_t *payload) { return 3; }
LIVEPATCH_PREAPPLY_HOOK(pre_apply_hook);
LIVEPATCH_FUNC(vetoed_func) = {
    .version = LIVEPATCH_PAYLOAD_VERSION, .name = extra, .new_addr = vetoed, .old_addr = xen_extra_version,
    .new_size = XSPLICE_NEW_SIZE(vetoed), .old_size = XSPLICE_OLD_SIZE(xen_extra_version),
};
"""


def test_rc_is_written_in_the_window_without_anyone_polling(patching):
    """The machine runs the apply to its end on its own: the payload's rc reads 0 with nobody polling."""
    machine, livepatch = patching(2)
    upload(livepatch, "hello", "xen_hello_world.livepatch")
    livepatch.action("hello", Action.APPLY)
    assert livepatch.get("hello").rc == -errno.EAGAIN
    machine.run_for(5_000_000)
    assert livepatch.get("hello").rc == 0 and livepatch.get("hello").state is PayloadState.APPLIED


def test_a_timeout_writes_ebusy_into_rc_with_nobody_polling(patching):
    """A vCPU stalled past the deadline: the payload's rc reads -EBUSY once the master gives up, unpolled."""
    machine, livepatch = patching(3)
    upload(livepatch, "hello", "xen_hello_world.livepatch")
    machine.post_call(2, "call_stall_irqs_off", 50_000_000)
    machine.run_for(10_000)
    livepatch.action("hello", Action.APPLY, timeout_ns=5_000_000)
    machine.run_for(8_000_000)
    assert livepatch.get("hello").rc == -errno.EBUSY and livepatch.get("hello").state is PayloadState.CHECKED
    assert "livepatch: hello: Timed out on semaphore in CPU quiesce phase 1/2" in livepatch.rendezvous.log


def test_after_the_tool_gave_up_the_action_ends_and_the_payload_is_not_stuck(payloads):
    """The tool stops waiting (EAGAIN); once the host runs the vCPU the work was queued on again the apply
    completes: `list` shows APPLIED with no rc, and `revert` works, where the testbed used to show -EAGAIN for
    ever and refuse everything."""
    session = Session(vcpus=4, seed=1, boot_ms=1, base=payloads)
    session.command(parse("upload hello xen_hello_world.livepatch"))
    assert session.command(parse("apply hello --timeout-ms 5 --preempt-requester-ms 20")).errno == errno.EAGAIN
    session.advance(30_000_000)
    listed = session.command(parse("list")).text
    assert f"{'hello':<40}| APPLIED    | LIVEPATCH_RULEZ\n" in listed
    reverted = session.command(parse("revert hello"))
    assert reverted.exit_code == 0 and extra_versions(session.machine) == {"-unstable"}


def test_replace_checks_the_hypervisor_build_id_whatever_nodeps_says(patching):
    """REPLACE of bye (which depends on hello) with NODEPS: EINVAL and Xen's line, nothing replaced."""
    machine, livepatch = patching(2)
    upload(livepatch, "xen_hello_world", "xen_hello_world.livepatch")
    upload(livepatch, "bye", "xen_bye_world.livepatch")
    assert livepatch.run_action("xen_hello_world", Action.APPLY).rc == 0
    text = text_digest(machine)
    with pytest.raises(LivepatchError) as refused:
        livepatch.action("bye", Action.REPLACE, nodeps=True)
    assert refused.value.errno == errno.EINVAL
    assert refused.value.xen_log == ("livepatch: bye: check against hypervisor build-id failed",)
    assert livepatch.rendezvous.log[-1] == "livepatch: bye: check against hypervisor build-id failed"
    assert livepatch.applied == ["xen_hello_world"] and text_digest(machine) == text
    assert extra_versions(machine) == {"Hello World"}


def test_records_revert_first_to_last_leaving_the_first_jump_and_the_oracle_says_residue(patching):
    """Two records on xen_extra_version: applied it reads "Second"; reverted the payload is CHECKED but "First"
    stays (Xen's forward revert), and the oracle reports one `residue` violation on the master."""
    machine, livepatch = patching(2)
    upload(livepatch, "two", "xen_two_records.livepatch")
    text = text_digest(machine)
    assert livepatch.run_action("two", Action.APPLY).rc == 0 and extra_versions(machine) == {"Second"}
    result = livepatch.run_action("two", Action.REVERT)
    assert result.rc == 0 and livepatch.get("two").state is PayloadState.CHECKED and livepatch.applied == []
    assert extra_versions(machine) == {"First"} and text_digest(machine) != text
    assert result.violations["residue"] == 1
    [event] = [e for e in machine.trace.events if e.kind == EventKind.VIOLATION]
    assert (event.fields["check"], event.fields["symbol"], event.fields["action"]) == (
        "residue", "xen_extra_version", "revert two")


def test_actions_on_a_payload_in_the_wrong_state_return_zero_and_change_nothing(patching):
    """APPLY or REPLACE of an APPLIED payload and REVERT of a CHECKED one: the sysctl returns 0, nothing moves;
    UNLOAD of an APPLIED one is EINVAL."""
    machine, livepatch = patching(2)
    upload(livepatch, "hello", "xen_hello_world.livepatch")
    upload(livepatch, "nop", "xen_nop.livepatch")
    assert livepatch.action("nop", Action.REVERT) == 0 and livepatch.get("nop").rc == 0
    assert livepatch.run_action("hello", Action.APPLY).rc == 0
    text = text_digest(machine)
    assert livepatch.action("hello", Action.APPLY) == 0
    assert livepatch.action("hello", Action.REPLACE) == 0
    assert livepatch.poll() is None and livepatch.applied == ["hello"] and text_digest(machine) == text
    with pytest.raises(LivepatchError) as refused:
        livepatch.action("hello", Action.UNLOAD)
    assert refused.value.errno == errno.EINVAL


def test_a_positive_pre_apply_veto_is_returned_as_is(patching, tmp_path):
    """A pre-apply hook returning 3: the sysctl returns 3, rc is 3, Xen's lines, nothing applied."""
    machine, livepatch = patching(2)
    livepatch.upload("vetoed", built(tmp_path, "vetoed", VETO_THREE))
    text = text_digest(machine)
    assert livepatch.action("vetoed", Action.APPLY) == 3
    assert livepatch.get("vetoed").rc == 3 and livepatch.applied == [] and text_digest(machine) == text
    assert livepatch.rendezvous.log[-2:] == ["livepatch: vetoed: Calling pre-apply hook function",
                                             "livepatch: vetoed: pre-apply hook failed (rc=3), aborting!"]


def test_the_tool_shows_xens_lines_with_the_hooks_printk_in_order_and_the_testbeds_apart(payloads):
    """`load` then `revert` of hello on the firmware: the (XEN) lines are Xen's, the hooks' printk lines among
    them in order, the payload's .modinfo after the records; an EEXIST upload's reason is a (testbed) line; the
    trace's log events are the same lines."""
    session = Session(vcpus=2, seed=1, boot_ms=1, base=payloads)
    loaded = session.command(parse("load xen_hello_world.livepatch"))
    assert [line for line in loaded.text.splitlines() if line.startswith("(XEN) ")] == [
        "(XEN) livepatch: xen_hello_world: Verifying enabled expectations for all functions",
        "(XEN) livepatch: xen_hello_world: Applying 1 functions",
        "(XEN) xen_hello_world: hi_func: Hi! (called 1 times)",
        "(XEN) xen_hello_world: load hook executing",
        "(XEN) livepatch: module metadata:",
        "(XEN) livepatch:   LIVEPATCH_RULEZ",
        "(XEN) livepatch: xen_hello_world finished APPLY with rc=0"]
    again = session.command(parse("load xen_hello_world.livepatch"))
    assert "(XEN)" not in again.text
    assert "(testbed) xen_hello_world: a payload of that name is already loaded\n" in again.text
    reverted = session.command(parse("revert xen_hello_world"))
    assert [line for line in reverted.text.splitlines() if line.startswith("(XEN) ")] == [
        "(XEN) livepatch: xen_hello_world: Reverting",
        "(XEN) xen_hello_world: check_fnc: hi_func called 1 times",
        "(XEN) xen_hello_world: hi_func: Hi! (called 2 times)",
        "(XEN) xen_hello_world: unload hook executing",
        "(XEN) livepatch: xen_hello_world finished REVERT with rc=0"]
    logged = [e.fields["text"] for e in session.machine.trace.events if e.kind == EventKind.LOG]
    assert logged == session.livepatch.rendezvous.log and len(logged) == 12


def test_an_unmet_expectation_prints_xens_three_lines(patching):
    """APPLY of xen_expectations_fail: EINVAL and Xen's Verifying / expectation failed / aborting lines."""
    machine, livepatch = patching(2)
    upload(livepatch, "fail", "xen_expectations_fail.livepatch")
    with pytest.raises(LivepatchError) as refused:
        livepatch.action("fail", Action.APPLY)
    assert refused.value.errno == errno.EINVAL
    verifying, failed, aborting = livepatch.rendezvous.log[-3:]
    assert verifying == "livepatch: fail: Verifying enabled expectations for all functions"
    assert failed.startswith("livepatch: xen_extra_version: expectation failed: expected:")
    assert aborting == "livepatch: fail: expectations of xen_extra_version failed (rc=-22), aborting!"
