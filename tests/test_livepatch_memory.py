"""Payload memory: taken at upload, given back at unload."""

from __future__ import annotations

from helpers import PAYLOADS, upload

from xsplice_emu import Machine, MachineConfig
from xsplice_emu.livepatch import Action, Livepatch


def test_upload_unload_cycles_never_run_out_of_memory(image, payloads):
    """1,000 upload/unload cycles on an 8 MiB machine (room for ~150 at once): no ENOMEM, all memory back."""
    machine = Machine(image, config=MachineConfig(vcpus=1, ram_mib=8))
    livepatch = Livepatch(machine)
    free = livepatch.memory.free_bytes
    data = (PAYLOADS / "xen_hello_world.livepatch").read_bytes()
    for _ in range(1_000):
        livepatch.upload("hello", data)
        livepatch.action("hello", Action.UNLOAD)
    assert livepatch.memory.free_bytes == free


def test_unloaded_payload_memory_is_reused_first(patching):
    """An upload goes to the lowest free range that fits: the hole an unloaded payload left."""
    machine, livepatch = patching(1)
    for name, file in (("a", "xen_hello_world.livepatch"), ("b", "xen_nop.livepatch"),
                       ("c", "xen_replace_world.livepatch")):
        upload(livepatch, name, file)
    hole = livepatch.get("b").loaded.regions[0].address
    livepatch.action("b", Action.UNLOAD)
    upload(livepatch, "d", "xen_nop.livepatch")
    assert livepatch.get("d").loaded.regions[0].address == hole

