"""The page below every per-CPU stack is a guard: a stack that runs over faults there, before it reaches the stack
of another vCPU."""

from __future__ import annotations

import errno
import hashlib

import pytest
from helpers import hello_still_applies

from xsplice_emu import GuestFault, LivepatchError, builtin_firmware
from xsplice_emu.authoring.build import build_payload
from xsplice_emu.livepatch import Action
from xsplice_emu.machine import Machine
from xsplice_emu.platform import STACK_GUARD_SIZE, STACK_SIZE

# A pre-apply hook recursing through ~40 KiB of stack: below its 12 KiB, over two more vCPUs' stacks.
DEEP_HOOK = """
#include <xsplice_payload.h>
static const char extra[] = "xen_extra_version";
const char *deep_extra(void) { return "Deep"; }
static __attribute__((noipa)) int deep(int n)
{
    volatile char frame[480];
    frame[n % 480] = n;
    return n ? deep(n - 1) + frame[n % 480] : 0;
}
static int pre_apply_hook(livepatch_payload_t *payload) { return deep(80) < 0; }
LIVEPATCH_PREAPPLY_HOOK(pre_apply_hook);
LIVEPATCH_FUNC(deep_func) = {
    .version = LIVEPATCH_PAYLOAD_VERSION, .name = extra, .new_addr = deep_extra, .old_addr = xen_extra_version,
    .new_size = XSPLICE_NEW_SIZE(deep_extra), .old_size = XSPLICE_OLD_SIZE(xen_extra_version),
};
"""


def _stack_pointers(machine: Machine, vcpus: range) -> dict[int, int]:
    return {index: machine.vcpus[index].read(machine.arch.registers.sp) for index in vcpus}


def _frames(machine: Machine, stack_pointers: dict[int, int]) -> dict[int, str]:
    """A hash of each vCPU's stack from the given stack pointer to its top: the frames live there."""
    stacks = machine.image.address("cpu_stacks")
    return {index: hashlib.sha256(machine.memory.read(rsp, stacks + (index + 1) * STACK_SIZE - rsp)).hexdigest()
            for index, rsp in stack_pointers.items()}


def test_a_hook_recursing_deeply_faults_at_its_guard_and_the_other_stacks_are_intact(patching, tmp_path):
    """A pre-apply hook on vCPU 3 recursing past its stack is refused with EFAULT at the guard page; vCPUs 0-2,
    whose stacks lie below, keep their frames; every vCPU still takes its timer and hello_world applies."""
    machine, livepatch = patching(4)
    source = tmp_path / "deep.c"
    source.write_text(DEEP_HOOK)
    livepatch.upload("deep", build_payload(source, tmp_path / "deep.livepatch", firmware=builtin_firmware())
                     .read_bytes())
    idle = _stack_pointers(machine, range(3))
    before = _frames(machine, idle)
    with pytest.raises(LivepatchError) as refused:
        livepatch.action("deep", Action.APPLY, from_vcpu=3)
    assert refused.value.errno == errno.EFAULT
    assert "vCPU 3 fault: #PF page fault" in str(refused.value) and "guard page" in str(refused.value)
    assert _frames(machine, idle) == before
    ticks = machine.per_cpu("timer_ticks")[:4]
    machine.run_for(5_000_000)
    assert all(after > tick for after, tick in zip(machine.per_cpu("timer_ticks")[:4], ticks, strict=True))
    assert hello_still_applies(machine, livepatch)


def test_a_push_below_the_stack_faults_at_the_guard_page(boot, image):
    """A push just below vCPU 1's 12 KiB of stack is a page fault at its guard page, named with the vCPU and
    the function that pushed."""
    machine = boot(2, ms=1.5)
    with pytest.raises(GuestFault) as caught:
        machine.call(1, "call_fault", 6)
    guard = image.address("cpu_stacks") + STACK_SIZE
    message = str(caught.value)
    assert caught.value.vcpu == 1
    pushed = guard + STACK_GUARD_SIZE - 8
    assert message.startswith(f"vCPU 1 fault: #PF page fault: write of {pushed:#x}, in the guard page below vCPU 1's "
                              "stack")
    assert "<call_fault+" in message and "push" in message.split(">: ", 1)[1]
