"""Inside the patching window: host-side errors, post-action hooks, load and unload hooks."""

from __future__ import annotations

import dataclasses
import errno

from click.testing import CliRunner
from helpers import PAYLOADS, extra_versions, hello_still_applies, upload

from xsplice_emu import builtin_firmware
from xsplice_emu.cli import main
from xsplice_emu.livepatch import Action, PayloadState
from xsplice_emu.livepatch.build import build_payload
from xsplice_emu.machine import VcpuState
from xsplice_emu.session import text_digest
from xsplice_emu.tracing.kinds import EventKind


def _with_bad_record(livepatch, name: str) -> None:
    """Give `name` a second record, a copy of its first whose old_addr runs past the end of RAM."""
    payload = livepatch.get(name)
    first = payload.loaded.funcs[0]
    bad = dataclasses.replace(first, name="past_ram", old_addr=livepatch.machine.memory.size - 2)
    payload.loaded = dataclasses.replace(payload.loaded, funcs=(first, bad))


def _machine_free(machine) -> bool:
    """No vCPU parked, no work flagged, NMIs going to the default callback."""
    image = machine.image
    return (all(vcpu.state is not VcpuState.PARKED for vcpu in machine.vcpus)
            and not any(machine.per_cpu("xsplice_work_to_do"))
            and machine.memory.read_u64(image.address("nmi_callback")) == image.address("default_nmi_callback"))


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
    assert _machine_free(machine) and not livepatch.rendezvous.busy
    [event] = machine.trace.of_kind(EventKind.ACTION_FAILED)
    assert event.fields["restored"] == 5 and "outside RAM" in event.fields["error"]
    assert any("apply failed inside the patching window" in line for line in livepatch.rendezvous.log)
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
    assert extra_versions(machine) == {"Hello World"} and _machine_free(machine)
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
    assert livepatch.get("act").state is PayloadState.CHECKED and _machine_free(machine)
    assert any("post-revert hook failed: hook" in line and "PANIC: BUG at xen_action_hooks.c" in line
               for line in livepatch.rendezvous.log)
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
    assert "xsplice: hooks: Timed out on semaphore in CPU quiesce phase 2/3" in livepatch.rendezvous.log


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
