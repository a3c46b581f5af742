"""Code written by guest code: the writer runs it at once, other vCPUs once they serialise."""

from __future__ import annotations

from xsplice_emu.tracing import EventKind


def _kinds(machine, kind, vcpu=None):
    return [e for e in machine.trace.events if e.kind == kind and (vcpu is None or e.vcpu == vcpu)]


def _bytes_written(machine, vcpu):
    """Every address `vcpu` stored into code."""
    return {address for e in _kinds(machine, EventKind.CODE_WRITE, vcpu)
            for address in range(e.fields["address"], e.fields["address"] + e.fields["size"])}


def test_the_writer_runs_the_code_it_wrote_at_once(boot, image):
    """vCPU 0 writes `jmp answer_b` over answer_a through the alias; its very next call returns answer_b's value."""
    machine = boot(2, ms=1.5)
    old, new = machine.call(0, "answer_a"), machine.call(0, "answer_b")
    assert old != new
    assert machine.call(0, "call_poke_jump", image.address("answer_a"), image.address("answer_b")) == new
    assert _bytes_written(machine, 0) == set(range(image.address("answer_a"), image.address("answer_a") + 5))


def test_another_vcpu_runs_stale_code_until_it_serialises(boot, image):
    """vCPU 1, calling answer_a in a loop without serialising, keeps the old code after vCPU 0 patched it;
    after its handler's iretq it runs the new code."""
    machine = boot(2, ms=1.5)
    old, new = machine.call(1, "answer_a"), machine.call(1, "answer_b")
    start = machine.now_ps
    machine.post_call(0, "call_poke_jump", image.address("answer_a"), image.address("answer_b"),
                      at_ps=start + 200_000_000)
    assert machine.call(1, "call_watch", image.address("answer_a"), 1_000_000) == 0
    assert machine.call(1, "answer_a") == new
    assert machine.call(0, "answer_a") == new != old
    writes = _kinds(machine, EventKind.CODE_WRITE, 0)
    [sync] = _kinds(machine, EventKind.CODE_SYNC, 1)
    assert start // 1000 + 200_000 <= writes[0].time_ns <= writes[-1].time_ns < sync.time_ns
    assert sync.fields == {"ranges": len(writes)}


def test_a_host_write_is_no_guest_code_write(boot, image):
    """The controller's own writes (host side) are not code writes: no event, and invalidate_code is theirs."""
    machine = boot(2, ms=1.5)
    address = image.address("answer_a")
    machine.memory.write(address, machine.memory.read(address, 5))
    machine.run_for(100_000)
    assert not _kinds(machine, EventKind.CODE_WRITE)


def test_a_fresh_block_follows_the_bytes_in_memory(boot, image):
    """The size of the block a vCPU would translate now at a function: xen_extra_version (`mov; ret`) is 6 bytes,
    asked again too; after a host write of `nop; nop; ret` over its start, 3; with its bytes put back, 6."""
    machine = boot(1, ms=1)
    address = image.address("xen_extra_version")
    before = machine.memory.read(address, 3)
    assert machine.fresh_block_size(address) == machine.fresh_block_size(address) == 6
    machine.write_code_unsynchronised(address, b"\x90\x90\xc3")
    assert machine.fresh_block_size(address) == 3
    machine.write_code_unsynchronised(address, before)
    assert machine.fresh_block_size(address) == 6
