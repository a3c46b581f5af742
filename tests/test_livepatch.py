"""Live patching through the rendezvous: Xen's test payloads on many vCPUs."""

from __future__ import annotations

import errno
import json

import pytest
from helpers import extra_versions as _extra
from helpers import upload as _upload

from xsplice_emu import LivepatchError, Machine, MachineConfig
from xsplice_emu.arch.x86_64 import NMI_VECTOR
from xsplice_emu.control.session import text_digest
from xsplice_emu.engines.controller import Livepatch
from xsplice_emu.livepatch import Action, PayloadState
from xsplice_emu.tracing import EventKind


@pytest.mark.parametrize("vcpus", [1, 4, 72])
def test_apply_then_revert_on_every_vcpu(patching, vcpus):
    """After APPLY every vCPU's own call returns "Hello World"; REVERT restores the text byte for byte."""
    machine, livepatch = patching(vcpus)
    before = text_digest(machine)
    _upload(livepatch, "hello", "xen_hello_world.livepatch")
    result = livepatch.run_action("hello", Action.APPLY)
    assert result.rc == 0 and result.master == 0 and result.bytes_written == 5
    assert _extra(machine) == {"Hello World"}
    assert livepatch.get("hello").state is PayloadState.APPLIED and livepatch.applied == ["hello"]
    assert text_digest(machine) != before
    assert livepatch.run_action("hello", Action.REVERT).rc == 0
    assert text_digest(machine) == before
    assert _extra(machine) == {"-unstable"}
    assert "livepatch: hello finished APPLY with rc=0" in livepatch.rendezvous.log


def test_workloads_print_the_new_version(patching):
    """The vCPUs' own workload picks up the patched function on its next call."""
    machine, livepatch = patching(4)
    _upload(livepatch, "hello", "xen_hello_world.livepatch")
    livepatch.run_action("hello", Action.APPLY)
    machine.run_for(2_000_000)
    for cpu in range(4):
        assert f"cpu{cpu}: xen version 4.7Hello World" in [line.text for line in machine.console.lines]


def test_bye_world_only_on_top_of_hello(patching):
    """bye_world depends on hello_world's build-id; the stack reverts from the top only."""
    machine, livepatch = patching(4)
    _upload(livepatch, "hello", "xen_hello_world.livepatch")
    _upload(livepatch, "bye", "xen_bye_world.livepatch")
    with pytest.raises(LivepatchError) as refused:
        livepatch.action("bye", Action.APPLY)
    assert refused.value.errno == errno.EINVAL
    livepatch.run_action("hello", Action.APPLY)
    livepatch.run_action("bye", Action.APPLY)
    assert _extra(machine) == {"Bye World!"}
    with pytest.raises(LivepatchError) as busy:
        livepatch.action("hello", Action.REVERT)
    assert busy.value.errno == errno.EBUSY


def test_replace_reverts_the_stack_then_applies(patching):
    """REPLACE reverts bye then hello and applies replace_world in one window."""
    machine, livepatch = patching(4)
    for name, file in (("hello", "xen_hello_world"), ("bye", "xen_bye_world"), ("replace", "xen_replace_world")):
        _upload(livepatch, name, f"{file}.livepatch")
    livepatch.run_action("hello", Action.APPLY)
    livepatch.run_action("bye", Action.APPLY)
    assert livepatch.run_action("replace", Action.REPLACE).rc == 0
    assert _extra(machine) == {"Hello Again World!"}
    assert livepatch.applied == ["replace"]
    assert livepatch.get("hello").state is livepatch.get("bye").state is PayloadState.CHECKED
    assert livepatch.action("hello", Action.APPLY) == 0 and livepatch.get("hello").rc == -errno.EINVAL
    assert livepatch.rendezvous.log[-1] == "livepatch: hello: can't revert as payload has .data. Please unload"


def test_stalled_vcpu_times_out_with_text_unchanged(patching, image):
    """A vCPU spinning with IRQs off past 30 ms: -EBUSY, no byte changed, NMIs unmasked."""
    machine, livepatch = patching(4)
    _upload(livepatch, "hello", "xen_hello_world.livepatch")
    callback = machine.memory.read_u64(image.address("nmi_callback"))
    before = text_digest(machine)
    machine.post_call(2, "call_stall_irqs_off", 50_000_000)
    machine.run_for(10_000)
    result = livepatch.run_action("hello", Action.APPLY)
    assert result.rc == -errno.EBUSY
    assert livepatch.get("hello").rc == -errno.EBUSY
    assert livepatch.get("hello").state is PayloadState.CHECKED
    assert text_digest(machine) == before
    assert machine.memory.read_u64(image.address("nmi_callback")) == callback == image.address("default_nmi_callback")
    assert "livepatch: hello: Timed out on semaphore in CPU quiesce phase 2/3" in livepatch.rendezvous.log
    machine.run_for(30_000_000)
    assert livepatch.run_action("hello", Action.APPLY).rc == 0


def test_second_action_while_pending_is_busy(patching):
    """While one action is pending another gets -EBUSY, on any payload."""
    machine, livepatch = patching(4)
    _upload(livepatch, "hello", "xen_hello_world.livepatch")
    _upload(livepatch, "replace", "xen_replace_world.livepatch")
    livepatch.action("hello", Action.APPLY)
    assert livepatch.get("hello").rc == -errno.EAGAIN
    for name in ("hello", "replace"):
        with pytest.raises(LivepatchError) as busy:
            livepatch.action(name, Action.APPLY)
        assert busy.value.errno == errno.EBUSY


def test_nmi_in_the_window_is_lost_and_harmless(patching, image):
    """An NMI landing while NMIs are masked runs do_nmi, is dropped and counted."""
    machine, livepatch = patching(4)
    _upload(livepatch, "hello", "xen_hello_world.livepatch")
    livepatch.action("hello", Action.APPLY)
    machine.run_for(1_000)
    machine.send_interrupt(1, NMI_VECTOR)
    machine.run_for(1_000_000)
    result = livepatch.collect()
    assert result.rc == 0 and result.nmis_lost == 1
    assert not any(line.text == "cpu1: NMI received" for line in machine.console.lines)
    assert _extra(machine) == {"Hello World"}


def test_nop_patch_changes_the_minor_version(patching):
    """The NOP payload blanks xen_minor_version's mov; revert brings 7 back."""
    machine, livepatch = patching(2)
    _upload(livepatch, "nop", "xen_nop.livepatch")
    assert livepatch.run_action("nop", Action.APPLY).rc == 0
    assert {machine.call(cpu, "xen_minor_version") for cpu in range(2)} != {7}
    assert livepatch.run_action("nop", Action.REVERT).rc == 0
    assert {machine.call(cpu, "xen_minor_version") for cpu in range(2)} == {7}


@pytest.mark.parametrize("file, code", [
    ("bad/truncated.livepatch", errno.EINVAL),
    ("bad/too_short.livepatch", errno.EINVAL),
    ("bad/unknown_symbol.livepatch", errno.ENOENT),
    ("bad/bad_reloc.livepatch", errno.EOPNOTSUPP),
    ("bad/wx_section.livepatch", errno.EOPNOTSUPP),
    ("bad/bad_version.livepatch", errno.EOPNOTSUPP),
    ("bad/do_nmi.livepatch", errno.EPERM),
    ("bad/xen_no_xen_buildid.livepatch", errno.EINVAL),
    ("xen_hello_world.livepatch", errno.EEXIST),  # hello's build-id again, under another name
])
def test_rejected_upload_changes_nothing(patching, file, code):
    """A refused payload gives its errno and one line; memory and lists stay exactly as they were."""
    machine, livepatch = patching(2)
    _upload(livepatch, "hello", "xen_hello_world.livepatch")
    before = machine.memory.digest()
    with pytest.raises(LivepatchError) as refused:
        _upload(livepatch, "bad", file)
    assert refused.value.errno == code
    assert "\n" not in str(refused.value)
    assert machine.memory.digest() == before
    assert [p.name for p in livepatch.list()] == ["hello"] and livepatch.applied == []


def test_hooks_only_payload_applies_through_its_hooks(patching):
    """xen_action_hooks_nofunc has no function records: it loads, and apply and revert run its hooks."""
    machine, livepatch = patching(2)
    _upload(livepatch, "nofunc", "xen_action_hooks_nofunc.livepatch")
    assert livepatch.get("nofunc").loaded.funcs == ()
    assert livepatch.run_action("nofunc", Action.APPLY).rc == 0
    assert livepatch.run_action("nofunc", Action.REVERT).rc == 0
    console = "\n".join(line.text for line in machine.console.lines)
    assert "xen_action_hooks_nofunc: apply_hook (call 1)" in console
    assert "xen_action_hooks_nofunc: revert_hook (call 1)" in console


def test_static_target_resolved_by_file_name(patching):
    """old_addr = 0 with name `tiny_a.c#local_answer` patches the static in tiny_a.c only."""
    machine, livepatch = patching(2)
    _upload(livepatch, "static", "bad/static_target.livepatch")
    assert livepatch.run_action("static", Action.APPLY).rc == 0
    assert machine.call(1, "answer_a") != 42
    assert machine.call(1, "answer_b") == 43


def test_duplicate_upload_is_eexist(patching):
    """Uploading the same name or the same build-id twice gives -EEXIST."""
    machine, livepatch = patching(2)
    _upload(livepatch, "hello", "xen_hello_world.livepatch")
    for name in ("hello", "hello2"):
        with pytest.raises(LivepatchError) as exists:
            _upload(livepatch, name, "xen_hello_world.livepatch")
        assert exists.value.errno == errno.EEXIST


def test_same_seed_same_patch_trace(image, payloads):
    """An apply run twice with the same seed gives the same trace digest."""
    digests = set()
    for _ in range(2):
        machine = Machine(image, config=MachineConfig(vcpus=8, seed=5))
        machine.run_for(1_000_000)
        livepatch = Livepatch(machine)
        _upload(livepatch, "hello", "xen_hello_world.livepatch")
        livepatch.run_action("hello", Action.APPLY)
        digests.add(machine.trace.digest)
    assert len(digests) == 1


def test_apply_trace_tells_the_whole_rendezvous(patching, tmp_path):
    """The JSON Lines trace has the header and every step of an apply, with the patched bytes."""
    machine, livepatch = patching(4)
    _upload(livepatch, "hello", "xen_hello_world.livepatch")
    livepatch.run_action("hello", Action.APPLY)
    path = tmp_path / "apply.jsonl"
    machine.trace.write(path)
    header, *events = [json.loads(line) for line in path.read_text().splitlines()]
    assert header["version"] == 4 and header["seed"] == 1 and header["options"]["vcpus"] == 4
    assert header["firmware_build_id"] == machine.image.build_id.hex()
    start = next(i for i, e in enumerate(events) if e["kind"] == EventKind.ACTION_REQUESTED)
    kinds = [e["kind"] for e in events[start:]]
    for kind in (EventKind.MASTER_ELECTED, EventKind.NMI_MASKED, EventKind.PHASE_COMPLETE, EventKind.QUIESCED,
                 EventKind.PATCH, EventKind.FLUSH, EventKind.NMI_UNMASKED, EventKind.RELEASED):
        assert kind in kinds, kind
    assert [e["to"] for e in events[start:] if e["kind"] == EventKind.IPI and e["vcpu"] == 0] == [1, 2, 3]
    arrivals = {(e["vcpu"], e["phase"]) for e in events[start:] if e["kind"] == EventKind.ARRIVED}
    assert arrivals == {(cpu, phase) for cpu in (1, 2, 3) for phase in ("CPU", "IRQ")}
    [patch] = [e for e in events if e["kind"] == EventKind.PATCH]
    assert patch["function"] == "xen_extra_version" and patch["new"].startswith("e9")
    assert bytes.fromhex(patch["old"]) == machine.image.segments[0].data[
        patch["address"] - machine.image.segments[0].address:][:5]


def _refused(call, code):
    with pytest.raises(LivepatchError) as refused:
        call()
    assert refused.value.errno == code, refused.value


@pytest.mark.parametrize("vcpus", [1, 4, 72])
def test_xen_maintainers_sequence(patching, vcpus):
    """Reference section 6, step by step: hello, bye, replace, nop and their refusals."""
    machine, livepatch = patching(vcpus)
    lp, hello, bye, replace, nop = livepatch, "xen_hello_world", "xen_bye_world", "xen_replace_world", "xen_nop"
    assert lp.list() == [] and _extra(machine) == {"-unstable"}                             # 1
    _refused(lambda: lp.action(hello, Action.REVERT), errno.ENOENT)                        # 2
    _upload(lp, hello, f"{hello}.livepatch")                                               # 3 load
    assert lp.run_action(hello, Action.APPLY).rc == 0
    _refused(lambda: _upload(lp, hello, f"{hello}.livepatch"), errno.EEXIST)
    assert lp.get(hello).state is PayloadState.APPLIED and _extra(machine) == {"Hello World"}  # 4
    assert lp.run_action(hello, Action.REVERT).rc == 0 and _extra(machine) == {"-unstable"}   # 5
    lp.action(hello, Action.UNLOAD)                                                        # 6
    _refused(lambda: lp.action(hello, Action.UNLOAD), errno.ENOENT)
    for name in (hello, bye):                                                              # 7
        _upload(lp, name, f"{name}.livepatch")
        assert lp.run_action(name, Action.APPLY).rc == 0
    assert _extra(machine) == {"Bye World!"}
    _upload(lp, "xen_replace", f"{replace}.livepatch")                                     # 8
    assert lp.run_action("xen_replace", Action.REPLACE).rc == 0
    assert _extra(machine) == {"Hello Again World!"} and lp.applied == ["xen_replace"]
    assert lp.action(hello, Action.APPLY) == 0 and lp.get(hello).rc == -errno.EINVAL       # 9: has .data
    _refused(lambda: lp.action(bye, Action.APPLY), errno.EINVAL)                           # 9: depends
    assert lp.get("xen_replace").state is PayloadState.APPLIED                             # 10: nothing to do
    assert lp.run_action("xen_replace", Action.REVERT).rc == 0                             # 11
    for name in ("xen_replace", hello, bye):
        lp.action(name, Action.UNLOAD)
    assert lp.list() == [] and _extra(machine) == {"-unstable"}
    _upload(lp, nop, f"{nop}.livepatch")                                                   # 12
    minor = {machine.call(cpu, "xen_minor_version") for cpu in range(vcpus)}
    assert lp.run_action(nop, Action.APPLY).rc == 0
    assert lp.run_action(nop, Action.REVERT).rc == 0
    assert lp.run_action(nop, Action.APPLY).rc == 0                                        # no .data: re-apply
    assert {machine.call(cpu, "xen_minor_version") for cpu in range(vcpus)} != minor
    _refused(lambda: lp.action(nop, Action.UNLOAD), errno.EINVAL)                          # 13
    assert lp.run_action(nop, Action.REVERT).rc == 0
    lp.action(nop, Action.UNLOAD)
    assert lp.list() == [] and {machine.call(cpu, "xen_minor_version") for cpu in range(vcpus)} == minor == {7}


def test_a_request_while_every_vcpu_is_held_is_made_on_the_first_the_host_runs_again(patching):
    """vCPU 0 preempted for 20 ms, vCPU 1 for 10: dom0's apply is made 10 ms on, on vCPU 1, its master; it
    completes once vCPU 0 joins, 10 ms later; --from-vcpu 0 then waits for vCPU 0 the same way."""
    machine, livepatch = patching(2)
    _upload(livepatch, "hello", "xen_hello_world.livepatch")
    start = machine.now_ns
    machine.preempt(0, 20_000_000, at_ps=machine.now_ps)
    machine.preempt(1, 10_000_000, at_ps=machine.now_ps)
    result = livepatch.run_action("hello", Action.APPLY)
    requested = machine.trace.of_kind(EventKind.ACTION_REQUESTED)[-1]
    assert (requested.time_ns - start, requested.fields["from_vcpu"]) == (10_000_000, 1)
    assert result.rc == 0 and result.master == 1 and 9_900_000 < result.release_ns < 10_100_000
    assert _extra(machine) == {"Hello World"}
    start = machine.now_ns
    machine.preempt(0, 5_000_000, at_ps=machine.now_ps)
    assert livepatch.run_action("hello", Action.REVERT, from_vcpu=0).master == 0
    assert machine.trace.of_kind(EventKind.ACTION_REQUESTED)[-1].time_ns - start == 5_000_000


def test_action_from_a_chosen_vcpu_with_its_own_timeout(patching):
    """--from-vcpu picks the master; a per-action timeout of 5 ms gives up on a 10 ms stall."""
    machine, livepatch = patching(4)
    _upload(livepatch, "hello", "xen_hello_world.livepatch")
    machine.post_call(1, "call_stall_irqs_off", 10_000_000)
    machine.run_for(10_000)
    result = livepatch.run_action("hello", Action.APPLY, from_vcpu=2, timeout_ns=5_000_000)
    assert result.rc == -errno.EBUSY and result.master == 2
    assert 5_000_000 <= result.release_ns < 5_100_000
    machine.run_for(10_000_000)
    assert livepatch.run_action("hello", Action.APPLY, from_vcpu=3).master == 3
