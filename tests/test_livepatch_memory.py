"""Payload memory: taken at upload, given back at unload."""

from __future__ import annotations

from helpers import PAYLOADS, bench_module, upload

from xsplice_emu import GuestFault, Machine, MachineConfig, builtin_firmware
from xsplice_emu.authoring.build import build_payload, payload_build_id
from xsplice_emu.engines.controller import Livepatch
from xsplice_emu.livepatch import Action
from xsplice_emu.livepatch.payload import RegionKind


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



# A payload whose `poke` stores through any pointer, as guest code: what a payload's pages allow is tried with it.
POKE = """
#include <xsplice_payload.h>
static const char minor[] = "xen_minor_version";
unsigned int poked_minor(void) { return 7; }
unsigned long poke(unsigned long *where, unsigned long what) { *where = what; return what; }
LIVEPATCH_FUNC(poke_func) = {
    .version = LIVEPATCH_PAYLOAD_VERSION, .name = minor, .new_addr = poked_minor, .old_addr = xen_minor_version,
    .new_size = XSPLICE_NEW_SIZE(poked_minor), .old_size = XSPLICE_OLD_SIZE(xen_minor_version),
};
"""


def test_payload_page_permissions_hold_after_many_uploads_and_unloads(patching, tmp_path):
    """After 30 uploads and unloads into reused memory, a loaded payload's text runs and refuses stores, its
    rodata refuses stores, its data takes them and runs nothing; once unloaded, its pages take stores again."""
    machine, livepatch = patching(2)
    source = tmp_path / "poke.c"
    source.write_text(POKE)
    livepatch.upload("poke", build_payload(source, tmp_path / "poke.livepatch", firmware=builtin_firmware())
                     .read_bytes())
    poke = livepatch.get("poke").loaded.new_symbols["poke"]
    files = ("xen_hello_world.livepatch", "xen_nop.livepatch", "xen_replace_world.livepatch")
    for cycle in range(10):
        for index, file in enumerate(files[cycle % 3:] + files[:cycle % 3]):
            upload(livepatch, f"p{index}", file)
        for index in (1, 0, 2)[cycle % 3:] + (1, 0, 2)[:cycle % 3]:
            livepatch.action(f"p{index}", Action.UNLOAD)
    upload(livepatch, "nop", "xen_nop.livepatch")
    upload(livepatch, "hello", "xen_hello_world.livepatch")
    hello = livepatch.get("hello")
    regions = {region.kind: region.address for region in hello.loaded.regions}

    def store(address: int) -> str:
        try:
            machine.call_contained(1, poke, address, 0x5A5A)
        except GuestFault as fault:
            return "UC_ERR_WRITE_PROT" if "UC_ERR_WRITE_PROT" in str(fault) else str(fault)
        return "stored" if machine.memory.read_u64(address) == 0x5A5A else "lost"

    def run(address: int) -> str:
        try:
            machine.call_contained(1, address)
        except GuestFault as fault:
            return "page fault" if f"exception #PF page fault at {address:#x}" in str(fault) else str(fault)
        return "ran"

    text = regions[RegionKind.TEXT]
    assert machine.memory.read_cstring(machine.call(1, text)) == "Hello World"
    assert [store(regions[kind]) for kind in RegionKind] == ["UC_ERR_WRITE_PROT", "UC_ERR_WRITE_PROT", "stored"]
    assert [run(regions[kind]) for kind in (RegionKind.RODATA, RegionKind.DATA)] == ["page fault"] * 2
    livepatch.action("hello", Action.UNLOAD)
    assert [store(regions[kind]) for kind in RegionKind] == ["stored"] * 3
    assert run(text) == "page fault"


def test_an_upload_maps_nothing_more_in_unicorn_with_hundreds_of_payloads_loaded(patching):
    """With 200 payloads loaded, every vCPU's Unicorn memory map is the one it had with none, and so after one more
    upload and unload and after unloading them all: what made an upload's cost grow with the payloads loaded (a
    region each: 17 ms with 1,000 at 4 vCPUs, 300 ms at 72) is gone. bench/upload.py measures the cost itself."""
    machine, livepatch = patching(4)
    bench = bench_module("upload")
    data = (PAYLOADS / "xen_hello_world.livepatch").read_bytes()
    build_id = payload_build_id(PAYLOADS / "xen_hello_world.livepatch")

    def memory_maps() -> list[list[tuple[int, int, int]]]:
        return [list(vcpu.uc.mem_regions()) for vcpu in machine.vcpus]

    empty = memory_maps()
    for number in range(1, 201):
        livepatch.upload(f"p{number}", bench.variant(data, build_id, number))
    assert memory_maps() == empty
    livepatch.upload("probe", bench.variant(data, build_id, 999))
    livepatch.action("probe", Action.UNLOAD)
    assert memory_maps() == empty
    for number in range(1, 201):
        livepatch.action(f"p{number}", Action.UNLOAD)
    assert memory_maps() == empty
    assert [payload.name for payload in livepatch.list()] == []
