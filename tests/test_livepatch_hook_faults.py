"""Payload hooks that fault, never return, or leave functions half applied: the action fails, what it did is put
back, and the machine goes on."""

from __future__ import annotations

import errno

import pytest
from helpers import built, extra_versions, hello_still_applies

from xsplice_emu import LivepatchError, builtin_firmware
from xsplice_emu.authoring.build import build_payload
from xsplice_emu.control.session import text_digest
from xsplice_emu.livepatch import Action, PayloadState
from xsplice_emu.machine import VcpuState
from xsplice_emu.tracing import EventKind

# Two records; the apply hook patches the first by hand through Xen's helpers, then does what BEHAVIOUR says.
HOOKED = """
#include <xsplice_payload.h>
void check_for_xsplice_work(void);
void do_softirq(void);
static const char extra[] = "xen_extra_version", minor[] = "xen_minor_version";
const char *hooked_extra(void) { return "Hooked"; }
unsigned int hooked_minor(void) { return 99; }
static int apply_hook(livepatch_payload_t *payload)
{
    common_livepatch_apply(&payload->funcs[0], &payload->fstate[0]);
    BEHAVIOUR;
    return 0;
}
LIVEPATCH_APPLY_HOOK(apply_hook);
LIVEPATCH_FUNC(hooked_funcs[]) = { {
    .version = LIVEPATCH_PAYLOAD_VERSION, .name = extra, .new_addr = hooked_extra, .old_addr = xen_extra_version,
    .new_size = XSPLICE_NEW_SIZE(hooked_extra), .old_size = XSPLICE_OLD_SIZE(xen_extra_version),
}, {
    .version = LIVEPATCH_PAYLOAD_VERSION, .name = minor, .new_addr = hooked_minor, .old_addr = xen_minor_version,
    .new_size = XSPLICE_NEW_SIZE(hooked_minor), .old_size = XSPLICE_OLD_SIZE(xen_minor_version),
} };
"""


@pytest.mark.parametrize("behaviour, code, says", [
    ("*(volatile int *)8 = 0", errno.EFAULT, "faulted"),                      # a NULL-page store
    ("for (;;) ;", errno.ETIMEDOUT, "did not return within 30 ms"),           # never comes back
    ("(void)0", errno.EINVAL, "'xen_minor_version' with inconsistent applied state: partially applied"),
    ("check_for_xsplice_work()", errno.EDEADLK, "re-entered check_for_xsplice_work (refused)"),
    ("__asm__ __volatile__(\"sti\"); for (;;) do_softirq()", errno.EDEADLK,  # the scheduler's way back in
     "re-entered check_for_xsplice_work (refused)"),
])
def test_a_bad_apply_hook_fails_the_action_and_everything_is_put_back(patching, tmp_path, behaviour, code, says):
    """The hook patched xen_extra_version by hand, then faulted / never returned / left the second function
    unapplied (Xen panics there) / asked for xsplice work again: the action fails with its errno, the
    hand-written jump is put back, every vCPU is released and runs the old code, and the machine applies
    hello_world afterwards."""
    machine, livepatch = patching(4)
    source = tmp_path / "hooked.c"
    source.write_text(HOOKED.replace("BEHAVIOUR", behaviour))
    livepatch.upload("hooked", build_payload(source, tmp_path / "hooked.livepatch",
                                             firmware=builtin_firmware()).read_bytes())
    text = text_digest(machine)
    result = livepatch.run_action("hooked", Action.APPLY)
    assert result is not None and result.rc == -code
    [failed] = machine.trace.of_kind(EventKind.ACTION_FAILED)
    assert says in failed.fields["error"] and failed.fields["restored"] > 0
    payload = livepatch.get("hooked")
    assert payload.state is PayloadState.CHECKED and payload.guest.applied_all() == [False, False]
    assert livepatch.applied == [] and text_digest(machine) == text
    assert all(vcpu.state is not VcpuState.PARKED for vcpu in machine.vcpus)
    assert extra_versions(machine) == {"-unstable"}
    assert hello_still_applies(machine, livepatch)


PRE_HOOK = """
#include <xsplice_payload.h>
static const char extra[] = "xen_extra_version";
const char *pre_hooked(void) { return "Pre-hooked"; }
static int pre_apply_hook(livepatch_payload_t *payload) { BEHAVIOUR; return 0; }
LIVEPATCH_PREAPPLY_HOOK(pre_apply_hook);
LIVEPATCH_FUNC(pre_hooked_func) = {
    .version = LIVEPATCH_PAYLOAD_VERSION, .name = extra, .new_addr = pre_hooked, .old_addr = xen_extra_version,
    .new_size = XSPLICE_NEW_SIZE(pre_hooked), .old_size = XSPLICE_OLD_SIZE(xen_extra_version),
};
"""


BREAKPOINT_IN_MAJOR = "*(volatile unsigned char *)((unsigned long)xen_major_version + 0x100000000UL) = 0xcc; "


@pytest.mark.parametrize("behaviour, code", [
    ("*(volatile int *)8 = 0", errno.EFAULT),
    ("for (;;) ;", errno.ETIMEDOUT),
    (BREAKPOINT_IN_MAJOR + "*(volatile int *)8 = 0", errno.EFAULT),  # an int3 into the firmware's text, then
    (BREAKPOINT_IN_MAJOR + "return -1", errno.EPERM),  # a fault or a veto: the byte is put back
])
def test_a_bad_pre_apply_hook_refuses_the_apply_and_the_machine_goes_on(patching, tmp_path, behaviour, code):
    """A pre-apply hook that faults, never returns or vetoes (after writing code through the text alias) refuses
    the apply with that errno (the payload's rc too): nothing is scheduled, no byte of code stays changed, every
    vCPU computes xen_major_version as before, and the machine applies hello_world afterwards."""
    machine, livepatch = patching(2)
    source = tmp_path / "pre.c"
    source.write_text(PRE_HOOK.replace("BEHAVIOUR", behaviour))
    livepatch.upload("pre", build_payload(source, tmp_path / "pre.livepatch", firmware=builtin_firmware()).read_bytes())
    text = text_digest(machine)
    with pytest.raises(LivepatchError) as refused:
        livepatch.action("pre", Action.APPLY)
    assert refused.value.errno == code and "preapply hook" in str(refused.value)
    assert livepatch.get("pre").rc == -code and not livepatch.rendezvous.busy
    assert text_digest(machine) == text and extra_versions(machine) == {"-unstable"}
    assert machine.call_all("xen_major_version") == [4, 4]
    assert hello_still_applies(machine, livepatch)


POST_HOOK = """
#include <xsplice_payload.h>
extern unsigned char xsplice_work_to_do[];
void check_for_xsplice_work(void);
void do_softirq(void);
static const char extra[] = "xen_extra_version";
const char *post_hooked(void) { return "Post-hooked"; }
static void post_apply_hook(livepatch_payload_t *payload) { BEHAVIOUR; }
LIVEPATCH_POSTAPPLY_HOOK(post_apply_hook);
LIVEPATCH_FUNC(post_hooked_func) = {
    .version = LIVEPATCH_PAYLOAD_VERSION, .name = extra, .new_addr = post_hooked, .old_addr = xen_extra_version,
    .new_size = XSPLICE_NEW_SIZE(post_hooked), .old_size = XSPLICE_OLD_SIZE(xen_extra_version),
};
"""


@pytest.mark.parametrize("behaviour, says", [
    ("xsplice_work_to_do[0] = xsplice_work_to_do[1] = 1; check_for_xsplice_work()",
     "re-entered check_for_xsplice_work (refused)"),
    ("__asm__ __volatile__(\"sti\"); for (;;) do_softirq()", "did not return within 30 ms"),  # off to a task
    ("check_for_xsplice_work()", None),  # the master's flag is clear after the action: Xen's fast path returns
])
def test_a_post_apply_hook_that_leaves_for_the_scheduler_is_given_up(patching, tmp_path, behaviour, says):
    """A post-apply hook that asks for xsplice work again (its CPU's flag set), or runs softirqs until the
    scheduler takes its stack for a task: the apply stands (rc 0), the hook's failure is logged, the master is put
    back with its stack as it was (it returns from check_for_xsplice_work instead of faulting), and the payload
    reverts and unloads. A hook that calls check_for_xsplice_work with no work flagged just comes back."""
    machine, livepatch = patching(2)
    livepatch.upload("post", built(tmp_path, "post", POST_HOOK.replace("BEHAVIOUR", behaviour)))
    assert livepatch.run_action("post", Action.APPLY).rc == 0
    failed = [line for line in livepatch.rendezvous.notes if "post-apply hook failed" in line]
    assert (not failed) if says is None else any(says in line for line in failed)
    assert extra_versions(machine) == {"Post-hooked"}
    assert livepatch.run_action("post", Action.REVERT).rc == 0 and extra_versions(machine) == {"-unstable"}
    livepatch.action("post", Action.UNLOAD)
    assert all(vcpu.state is not VcpuState.PARKED for vcpu in machine.vcpus)
    assert hello_still_applies(machine, livepatch)
