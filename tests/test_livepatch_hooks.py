"""Hooks, expectations, the v1 record format and build-id checks at upload."""

from __future__ import annotations

import errno
import io

import pytest
from elftools.elf.elffile import ELFFile
from helpers import PAYLOADS, extra_versions, upload

from xsplice_emu import LivepatchError
from xsplice_emu.livepatch import Action, PayloadState
from xsplice_emu.livepatch.unsafe import unsafe_functions
from xsplice_emu.tracing import EventKind


def _lines(machine, start: int) -> list[str]:
    return [line.text for line in machine.console.lines[start:] if "xen version" not in line.text]


def test_expectation_met_applies(patching):
    """A v2 record expecting the bytes the firmware really has applies."""
    machine, livepatch = patching(2)
    upload(livepatch, "expect", "xen_expectations.livepatch")
    assert livepatch.run_action("expect", Action.APPLY).rc == 0
    assert extra_versions(machine) == {"Hello World"}


def test_expectation_mismatch_is_einval_and_changes_nothing(patching):
    """Wrong expected bytes: -EINVAL naming the function and both byte strings; nothing scheduled."""
    machine, livepatch = patching(2)
    upload(livepatch, "expect", "xen_expectations_fail.livepatch")
    before = machine.memory.digest()
    with pytest.raises(LivepatchError) as refused:
        livepatch.action("expect", Action.APPLY)
    assert refused.value.errno == errno.EINVAL
    assert "xen_extra_version starts with" in str(refused.value) and "expected de ad c0 de ba be" in str(refused.value)
    assert machine.memory.digest() == before
    assert livepatch.get("expect").state is PayloadState.CHECKED and livepatch.get("expect").rc == 0


def test_pre_and_post_hooks_run_in_order(patching):
    """preapply runs before the window, postapply after it; a prerevert veto keeps the payload applied."""
    machine, livepatch = patching(2)
    upload(livepatch, "hooks", "xen_prepost_hooks.livepatch")
    start = len(machine.console.lines)
    assert livepatch.run_action("hooks", Action.APPLY).rc == 0
    assert _lines(machine, start) == ["cpu0: xen_prepost_hooks: pre_apply_hook (call 1)",
                                      "cpu0: xen_prepost_hooks: post_apply_hook (call 1)"]
    with pytest.raises(LivepatchError) as vetoed:
        livepatch.action("hooks", Action.REVERT)
    assert "prerevert hook refused with -1" in str(vetoed.value)
    assert livepatch.get("hooks").state is PayloadState.APPLIED and livepatch.applied == ["hooks"]
    assert livepatch.run_action("hooks", Action.REVERT).rc == 0
    assert extra_versions(machine) == {"-unstable"}


def test_preapply_veto_refuses_with_its_errno(patching):
    """A preapply hook returning -EBUSY refuses the apply with EBUSY and nothing is patched."""
    machine, livepatch = patching(2)
    upload(livepatch, "fail", "xen_prepost_hooks_fail.livepatch")
    with pytest.raises(LivepatchError) as vetoed:
        livepatch.action("fail", Action.APPLY)
    assert vetoed.value.errno == errno.EBUSY
    assert livepatch.get("fail").state is PayloadState.CHECKED and livepatch.applied == []
    assert extra_versions(machine) == {"-unstable"}


def test_action_hooks_replace_the_built_in_action(patching):
    """apply/revert action hooks run on the master instead of the patching; states still move."""
    machine, livepatch = patching(2)
    upload(livepatch, "act", "xen_action_hooks.livepatch")
    start = len(machine.console.lines)
    assert livepatch.run_action("act", Action.APPLY).rc == 0
    assert livepatch.get("act").state is PayloadState.APPLIED
    assert extra_versions(machine) == {"-unstable"}
    assert livepatch.run_action("act", Action.REVERT).rc == 0
    assert _lines(machine, start) == [
        "cpu0: xen_action_hooks: apply_hook (call 1)",
        "cpu0: xen_action_hooks: revert_hook (call 1)",
        "cpu0: xen_action_hooks: post_revert_hook (call 1): applied 1, reverted 1",
    ]


def test_failing_revert_hook_then_the_post_hook_reverts_by_hand(patching):
    """Xen's norevert: the revert hook fails (-EINVAL, functions still applied, so consistent); the post-revert
    hook then reverts by hand through Xen's helpers and marks the payload reverted. The master runs the old
    code at once, the others once they serialise."""
    machine, livepatch = patching(2)
    upload(livepatch, "norevert", "xen_action_hooks_norevert.livepatch")
    assert livepatch.run_action("norevert", Action.APPLY).rc == 0
    assert extra_versions(machine) == {"Hello World"}
    result = livepatch.run_action("norevert", Action.REVERT)
    assert result.rc == -errno.EINVAL
    payload = livepatch.get("norevert")
    assert payload.rc == -errno.EINVAL and payload.state is PayloadState.CHECKED and payload.reverted
    assert livepatch.applied == [] and payload.guest.applied_all() == [False]
    writes = machine.trace.of_kind(EventKind.CODE_WRITE)
    assert {e.vcpu for e in writes} == {result.master}
    assert {e.fields["address"] for e in writes} >= {machine.image.address("xen_extra_version")}
    machine.call_all("xen_major_version")  # every vCPU's handler ends in iretq: serialised
    assert extra_versions(machine) == {"-unstable"}
    console = [line.text for line in machine.console.lines]
    assert "cpu0: xen_action_hooks_norevert: post_revert_hook (call 1): reverting by hand" in console


def test_v1_record_payload_applies(patching):
    """A payload with the seed's .xsplice.funcs (v1, 64-byte) records patches like v2."""
    machine, livepatch = patching(2)
    upload(livepatch, "v1", "xen_hello_world_v1.livepatch")
    assert livepatch.get("v1").loaded.funcs[0].version == 1
    assert livepatch.run_action("v1", Action.APPLY).rc == 0
    assert extra_versions(machine) == {"Hello World"}


def test_xen_depends_on_another_hypervisor_is_einval(patching):
    """.livepatch.xen_depends naming another build-id is refused at upload; memory unchanged."""
    machine, livepatch = patching(2)
    data = bytearray((PAYLOADS / "xen_replace_world.livepatch").read_bytes())
    section = ELFFile(io.BytesIO(bytes(data))).get_section_by_name(".livepatch.xen_depends")
    data[section["sh_offset"] + section["sh_size"] - 1] ^= 0xFF  # last byte of the build-id
    before = machine.memory.digest()
    with pytest.raises(LivepatchError, match="xen_depends") as refused:
        livepatch.upload("other", bytes(data))
    assert refused.value.errno == errno.EINVAL
    assert machine.memory.digest() == before and livepatch.list() == []


def test_unsafe_set_comes_from_the_call_graph(patching):
    """do_nmi, what it calls (printk) and the rendezvous are unsafe; version functions are not."""
    machine, livepatch = patching(1)
    unsafe = unsafe_functions(machine.image, machine.memory.read)
    image = machine.image
    assert unsafe[image.address("do_nmi")] == "it handles NMIs"
    assert unsafe[image.address("printk")] == "it is reached from do_nmi"
    assert image.address("check_for_xsplice_work") in unsafe
    assert unsafe[image.address("arch_livepatch_apply")] == "it is the patching code"
    assert unsafe[image.address("text_poke")] == "it writes code for the patching"
    assert unsafe[image.address("memcpy")] == "it is reached from text_poke"
    assert image.address("xen_extra_version") not in unsafe


def test_do_nmi_target_refused_with_reason(patching):
    """A payload patching do_nmi is refused with EPERM and the reason."""
    machine, livepatch = patching(1)
    with pytest.raises(LivepatchError) as refused:
        upload(livepatch, "nmi", "bad/do_nmi.livepatch")
    assert str(refused.value) == "nmi: refusing to patch do_nmi: it handles NMIs (EPERM)"
