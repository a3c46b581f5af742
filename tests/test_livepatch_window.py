"""Inside the patching window: host-side errors, post-action hooks, load and unload hooks."""

from __future__ import annotations

import dataclasses
import errno
import json

import pytest
from click.testing import CliRunner
from helpers import PAYLOADS, built, extra_versions, hello_still_applies, machine_free, upload

from xsplice_emu import GuestFault, LivepatchError, builtin_firmware
from xsplice_emu.authoring.build import build_payload
from xsplice_emu.cli import main
from xsplice_emu.control.session import text_digest
from xsplice_emu.livepatch import Action, PayloadState
from xsplice_emu.tracing.kinds import EventKind


def _with_bad_record(livepatch, name: str) -> None:
    """Give `name` a second record, a copy of its first whose old_addr runs past the end of RAM."""
    payload = livepatch.get(name)
    first = payload.loaded.funcs[0]
    bad = dataclasses.replace(first, name="past_ram", old_addr=livepatch.machine.memory.size - 2)
    payload.loaded = dataclasses.replace(payload.loaded, funcs=(first, bad))


def test_patch_site_outside_ram_fails_with_efault_and_puts_bytes_back(patching):
    """A record past RAM: EFAULT, the record written before it put back, everyone released, next apply works."""
    machine, livepatch = patching(4)
    upload(livepatch, "hello", "xen_hello_world.livepatch")
    good = livepatch.get("hello").loaded
    _with_bad_record(livepatch, "hello")
    text = text_digest(machine)
    result = livepatch.run_action("hello", Action.APPLY)
    assert result.rc == -errno.EFAULT
    assert text_digest(machine) == text and extra_versions(machine) == {"-unstable"}
    assert livepatch.get("hello").state is PayloadState.CHECKED and livepatch.applied == []
    assert machine_free(machine) and not livepatch.rendezvous.busy
    [event] = machine.trace.of_kind(EventKind.ACTION_FAILED)
    assert event.fields["restored"] == 5 and "outside RAM" in event.fields["error"]
    assert any("apply failed inside the patching window" in line for line in livepatch.rendezvous.notes)
    livepatch.get("hello").loaded = good
    assert livepatch.run_action("hello", Action.APPLY).rc == 0
    assert extra_versions(machine) == {"Hello World"}


def test_host_error_in_replace_restores_the_applied_stack(patching):
    """REPLACE failing on a host error after reverting hello leaves hello applied and patched."""
    machine, livepatch = patching(2)
    upload(livepatch, "hello", "xen_hello_world.livepatch")
    upload(livepatch, "replace", "xen_replace_world.livepatch")
    assert livepatch.run_action("hello", Action.APPLY).rc == 0
    _with_bad_record(livepatch, "replace")
    assert livepatch.run_action("replace", Action.REPLACE).rc == -errno.EFAULT
    assert livepatch.applied == ["hello"] and livepatch.get("hello").state is PayloadState.APPLIED
    assert livepatch.get("replace").state is PayloadState.CHECKED
    assert extra_versions(machine) == {"Hello World"} and machine_free(machine)
    assert livepatch.run_action("hello", Action.REVERT).rc == 0
    assert extra_versions(machine) == {"-unstable"}


def test_apply_hook_without_revert_hook_reverts_cleanly(patching):
    """Apply by hook (marked applied, no bytes saved), revert built in: as Xen, it writes back the empty saved
    bytes; the post-revert hook's BUG_ON faults, which is logged and contained; the machine goes on."""
    machine, livepatch = patching(2)
    data = (PAYLOADS / "xen_action_hooks.livepatch").read_bytes()
    at = data.index(b".livepatch.hooks.revert\0")
    livepatch.upload("act", data[:at + 22] + b"u" + data[at + 23:])  # .livepatch.hooks.revers
    assert not livepatch.get("act").loaded.hooks.get("revert")
    assert livepatch.run_action("act", Action.APPLY).rc == 0
    assert livepatch.run_action("act", Action.REVERT).rc == 0
    assert livepatch.get("act").state is PayloadState.CHECKED and machine_free(machine)
    assert any("post-revert hook failed: hook" in line and "PANIC: BUG at xen_action_hooks.c" in line
               for line in livepatch.rendezvous.notes)
    assert hello_still_applies(machine, livepatch)


def test_post_apply_hook_runs_after_every_vcpu_is_released(patching):
    """The post-apply hook's console line comes after every vCPU's release, NMIs already unmasked."""
    machine, livepatch = patching(4)
    upload(livepatch, "hooks", "xen_prepost_hooks.livepatch")
    start = len(machine.trace.events)
    assert livepatch.run_action("hooks", Action.APPLY).rc == 0
    events = machine.trace.events[start:]
    released = {e.vcpu: e.time_ns for e in events if e.kind == EventKind.UNPARK and e.fields["cause"] == "release"}
    [unmasked] = [e.time_ns for e in events if e.kind == EventKind.NMI_UNMASKED]
    [hook] = [e.time_ns for e in events if e.kind == EventKind.CONSOLE and "post_apply_hook" in e.fields["text"]]
    assert set(released) == {0, 1, 2, 3} and hook >= max(released.values()) and hook >= unmasked


def test_post_apply_hook_does_not_run_after_a_timeout(patching):
    """A rendezvous that times out never ran the action, so its post-apply hook does not run."""
    machine, livepatch = patching(4)
    upload(livepatch, "hooks", "xen_prepost_hooks.livepatch")
    machine.post_call(2, "call_stall_irqs_off", 20_000_000)
    assert livepatch.run_action("hooks", Action.APPLY, timeout_ns=1_000_000).rc == -errno.EBUSY
    assert not any("post_apply_hook" in line.text for line in machine.console.lines)
    assert "livepatch: hooks: Timed out on semaphore in CPU quiesce phase 2/3" in livepatch.rendezvous.log


HOOKED = """
#include <xsplice_payload.h>
static const char name[] = "xen_extra_version";
const char *hooked(void) { return "Hooked"; }
static void load_hook(void) { printk("hooked: load hook\\n"); }
static void unload_hook(void) { printk("hooked: unload hook\\n"); }
static int apply_hook(livepatch_payload_t *payload)
{
    printk("hooked: apply hook\\n");
    common_livepatch_apply(&payload->funcs[0], &payload->fstate[0]);
    return 0;
}
static int revert_hook(livepatch_payload_t *payload)
{
    printk("hooked: revert hook\\n");
    common_livepatch_revert(&payload->funcs[0], &payload->fstate[0]);
    return 0;
}
LIVEPATCH_LOAD_HOOK(load_hook);
LIVEPATCH_UNLOAD_HOOK(unload_hook);
LIVEPATCH_APPLY_HOOK(apply_hook);
LIVEPATCH_REVERT_HOOK(revert_hook);
LIVEPATCH_FUNC(hooked_func) = {
    .version = LIVEPATCH_PAYLOAD_VERSION, .name = name, .new_addr = hooked, .old_addr = xen_extra_version,
    .new_size = XSPLICE_NEW_SIZE(hooked), .old_size = XSPLICE_OLD_SIZE(xen_extra_version),
};
"""


def test_load_and_unload_hooks_skipped_when_action_hooks_replace_the_built_in(patching, tmp_path):
    """Action hooks that patch by hand with Xen's helpers: every vCPU runs the new code after the rendezvous
    (they serialise on the way out), the old code after the revert; the load and unload hooks never run."""
    machine, livepatch = patching(4)
    source = tmp_path / "hooked.c"
    source.write_text(HOOKED)
    livepatch.upload("hooked", build_payload(source, tmp_path / "hooked.livepatch",
                                             firmware=builtin_firmware()).read_bytes())
    start = len(machine.console.lines)
    assert extra_versions(machine) == {"-unstable"}
    assert livepatch.run_action("hooked", Action.APPLY).rc == 0
    assert extra_versions(machine) == {"Hooked"}
    assert livepatch.get("hooked").guest.applied_all() == [True]
    assert livepatch.run_action("hooked", Action.REVERT).rc == 0
    assert extra_versions(machine) == {"-unstable"}
    printed = [line.text for line in machine.console.lines[start:] if "hooked:" in line.text]
    assert printed == ["cpu0: hooked: apply hook", "cpu0: hooked: revert hook"]


def test_a_timed_out_action_names_the_vcpus_that_never_arrived(tmp_path, payloads):
    """A stalled vCPU 2 past the timeout: the abort event and `trace summary` say `missing: cpu2`."""
    scenario = tmp_path / "s.toml"
    scenario.write_text(f'[machine]\nvcpus = 4\n[[step]]\n'
                        f'livepatch = "upload hello {payloads}/xen_hello_world.livepatch"\n'
                        '[[step]]\nstall = { vcpu = 2, ms = 50 }\n[[step]]\nrun_ms = 0.01\n'
                        '[[step]]\nlivepatch = "apply hello --timeout-ms 1"\nexpect_rc = "EBUSY"\n')
    trace = tmp_path / "t.jsonl"
    assert CliRunner().invoke(main, ["run", str(scenario), "--trace", str(trace)]).exit_code == 0
    result = CliRunner().invoke(main, ["trace", "summary", str(trace)])
    assert "timeout in CPU phase (missing: cpu2)" in result.stdout


NOP_OF_NO_BYTES = """
#include <xsplice_payload.h>
static const char extra[] = "xen_extra_version";
LIVEPATCH_FUNC(nop_of_no_bytes) = {
    .version = LIVEPATCH_PAYLOAD_VERSION, .name = extra, .new_addr = 0, .old_addr = xen_extra_version,
    .new_size = 0, .old_size = XSPLICE_OLD_SIZE(xen_extra_version),
};
"""


def test_a_nop_record_of_no_bytes_applies_and_reverts_changing_nothing(tmp_path, payloads):
    """A NOP record with new_size 0 (Xen patches nothing for it): load, revert and unload all complete, exit 0."""
    (tmp_path / "nop0.livepatch").write_bytes(built(tmp_path, "nop0", NOP_OF_NO_BYTES))
    result = CliRunner().invoke(main, ["livepatch", "--vcpus", "2", "load", str(tmp_path / "nop0.livepatch"),
                                       "revert", "nop0", "unload", "nop0"])
    assert result.exit_code == 0 and "Traceback" not in result.output
    assert result.stdout.count("completed") == 4  # upload, apply, revert, unload


def test_a_nop_record_of_no_bytes_writes_no_byte(patching, tmp_path):
    """Applied, the NOP record of no bytes leaves the text as it was: every vCPU still gets "-unstable"."""
    machine, livepatch = patching(2)
    livepatch.upload("nop0", built(tmp_path, "nop0", NOP_OF_NO_BYTES))
    text = text_digest(machine)
    assert livepatch.run_action("nop0", Action.APPLY).rc == 0 and livepatch.applied == ["nop0"]
    assert text_digest(machine) == text and extra_versions(machine) == {"-unstable"}
    assert livepatch.run_action("nop0", Action.REVERT).rc == 0 and text_digest(machine) == text
    assert extra_versions(machine) == {"-unstable"} and machine_free(machine)
    assert hello_still_applies(machine, livepatch)


SLOW_PRE_APPLY = """
#include <xsplice_payload.h>
static const char extra[] = "xen_extra_version";
const char *slow(void) { return "Slow"; }
static int pre_apply_hook(livepatch_payload_t *payload) { for (volatile long i = 0; i < 200000; i++) ; return 0; }
LIVEPATCH_PREAPPLY_HOOK(pre_apply_hook);
LIVEPATCH_FUNC(slow_func) = {
    .version = LIVEPATCH_PAYLOAD_VERSION, .name = extra, .new_addr = slow, .old_addr = xen_extra_version,
    .new_size = XSPLICE_NEW_SIZE(slow), .old_size = XSPLICE_OLD_SIZE(xen_extra_version),
};
"""


def test_a_second_action_while_the_first_runs_keeps_the_first_result(patching, tmp_path):
    """APPLY nop then, before it finished, APPLY of a payload with a slow pre-apply hook: the second is refused
    with EBUSY, its rc left at -EAGAIN as Xen leaves it, the first ends with rc 0, and the second applies once
    asked again (the sysctl takes it: no action of its own is scheduled)."""
    machine, livepatch = patching(2)
    upload(livepatch, "nop", "xen_nop.livepatch")
    livepatch.upload("slow", built(tmp_path, "slow", SLOW_PRE_APPLY))
    livepatch.action("nop", Action.APPLY)
    with pytest.raises(LivepatchError) as refused:
        livepatch.action("slow", Action.APPLY, nodeps=True)
    assert refused.value.errno == errno.EBUSY and livepatch.get("slow").rc == -errno.EAGAIN
    result = livepatch.poll()
    assert result is not None and (result.name, result.rc) == ("nop", 0) and livepatch.get("nop").rc == 0
    assert livepatch.run_action("slow", Action.APPLY, nodeps=True).rc == 0
    assert livepatch.applied == ["nop", "slow"] and extra_versions(machine) == {"Slow"}


def test_an_action_finished_during_another_request_is_settled_not_lost(patching, tmp_path):
    """APPLY nop, run the machine past its end without collecting it, then APPLY slow: nop's result is kept
    (rc 0, in the results) and slow applies: no payload is left at EAGAIN, no later action answers EBUSY."""
    machine, livepatch = patching(2)
    upload(livepatch, "nop", "xen_nop.livepatch")
    livepatch.upload("slow", built(tmp_path, "slow", SLOW_PRE_APPLY))
    livepatch.action("nop", Action.APPLY)
    machine.run_for(5_000_000)
    assert livepatch.run_action("slow", Action.APPLY, nodeps=True).rc == 0
    assert [(r.name, r.rc) for r in livepatch.results] == [("nop", 0), ("slow", 0)]
    assert livepatch.get("nop").rc == 0 and livepatch.run_action("slow", Action.REVERT).rc == 0


CRASHING = """
#include <xsplice_payload.h>
static const char extra[] = "xen_extra_version";
const char *crashing(void) { *(volatile int *)8 = 0; return "Crashed"; }
static void post_apply_hook(livepatch_payload_t *payload) { for (volatile long i = 0; i < 300000; i++) ; }
LIVEPATCH_POSTAPPLY_HOOK(post_apply_hook);
LIVEPATCH_FUNC(crashing_func) = {
    .version = LIVEPATCH_PAYLOAD_VERSION, .name = extra, .new_addr = crashing, .old_addr = xen_extra_version,
    .new_size = XSPLICE_NEW_SIZE(crashing), .old_size = XSPLICE_OLD_SIZE(xen_extra_version),
};
"""


def test_a_hypervisor_fault_during_an_action_ends_it_with_efault(patching, tmp_path):
    """The new function faults on cpu1 while the master still runs the post-apply hook: the fault is raised,
    the action ends with -EFAULT (its payload's rc), nothing is left pending or busy, NMIs are unmasked."""
    machine, livepatch = patching(2)
    livepatch.upload("crash", built(tmp_path, "crash", CRASHING))
    with pytest.raises(GuestFault) as fault:
        livepatch.run_action("crash", Action.APPLY)
    assert fault.value.vcpu == 1
    assert [(r.name, r.rc) for r in livepatch.results] == [("crash", -errno.EFAULT)]
    assert livepatch.get("crash").rc == -errno.EFAULT and not livepatch.rendezvous.busy
    assert livepatch.poll() is None
    image = machine.image
    assert machine.memory.read_u64(image.address("nmi_callback")) == image.address("default_nmi_callback")
    assert any("apply ended with rc=-14: the hypervisor faulted on cpu1" in line for line in livepatch.rendezvous.notes)


def test_a_hypervisor_fault_while_anything_runs_the_machine_settles_the_action(patching, tmp_path):
    """The same fault while the machine runs for another reason (a `wait` step, say) than the action's own
    poll: the action is settled with -EFAULT all the same, and the payload is not left "in progress"."""
    machine, livepatch = patching(2)
    livepatch.upload("crash", built(tmp_path, "crash", CRASHING))
    livepatch.action("crash", Action.APPLY)
    with pytest.raises(GuestFault):
        machine.run_for(5_000_000)
    assert livepatch.get("crash").rc == -errno.EFAULT and livepatch.poll() is None
    assert [(r.name, r.rc) for r in livepatch.results] == [("crash", -errno.EFAULT)]


def test_the_livepatch_command_writes_its_trace_when_the_hypervisor_faults(tmp_path, payloads):
    """`livepatch --trace`, the applied function faulting: exit 1, one `error:` line, and the trace file holds
    the fault and the action's end."""
    (tmp_path / "crash.livepatch").write_bytes(built(tmp_path, "crash", CRASHING))
    trace = tmp_path / "t.jsonl"
    result = CliRunner().invoke(main, ["livepatch", "--vcpus", "2", "--trace", str(trace), "load",
                                       str(tmp_path / "crash.livepatch")])
    assert result.exit_code == 1 and result.stderr.startswith("error: vCPU 1 fault: Invalid memory write")
    events = [json.loads(line) for line in trace.read_text().splitlines()]
    assert any(event.get("kind") == "fault" for event in events)
    assert "apply ended with rc=-14: the hypervisor faulted on cpu1" in events[-1]["text"]


def test_the_run_command_writes_its_trace_when_the_hypervisor_faults(tmp_path, payloads):
    """`run --trace` on a scenario whose applied function faults: exit 1, the step's error names the fault, and
    the trace holds the fault and the action's end with -EFAULT."""
    (tmp_path / "crash.livepatch").write_bytes(built(tmp_path, "crash", CRASHING))
    scenario = tmp_path / "crash.toml"
    scenario.write_text('name = "crash"\ndescription = "A patch that crashes the hypervisor."\n'
                        '[machine]\nvcpus = 2\nseed = 0\n[[step]]\nlivepatch = "load crash.livepatch"\n')
    trace = tmp_path / "t.jsonl"
    result = CliRunner().invoke(main, ["run", "--trace", str(trace), str(scenario)])
    assert result.exit_code == 1 and "vCPU 1 fault: Invalid memory write" in result.stdout
    events = [json.loads(line) for line in trace.read_text().splitlines()]
    assert any(event.get("kind") == "fault" for event in events)
    assert "apply ended with rc=-14: the hypervisor faulted on cpu1" in events[-1]["text"]
