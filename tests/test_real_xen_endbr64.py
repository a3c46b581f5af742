"""Debian's Xen 4.17 is built with CET-IBT: a patch of a function starting with ENDBR64 goes past it, as Xen 4.17
writes it, and the image's version selects Xen 4.17's upload order."""

from __future__ import annotations

import errno
import io
import struct

import pytest
from elftools.elf.elffile import ELFFile
from helpers import debian_file

from xsplice_emu.authoring.xen_tests import xen_tests_for
from xsplice_emu.control.session import Session
from xsplice_emu.errors import LivepatchError
from xsplice_emu.image import load_image
from xsplice_emu.livepatch.payload import UploadOrder
from xsplice_emu.livepatch.states import Action
from xsplice_emu.provision.debian import load_xen_syms, xen_syms
from xsplice_emu.provision.firmware import builtin_firmware

ENDBR64 = bytes.fromhex("f30f1efa")
# Each test runs Debian's real Xen 4.17 image in the machine: most of a second each.
pytestmark = pytest.mark.slow

TARGET = "nvmx_ept_enabled"
"""A 16-byte function of the pinned build that starts with ENDBR64 and that nothing runs here."""


@pytest.fixture(scope="module")
def xen():
    return load_xen_syms(debian_file(xen_syms))


@pytest.fixture(scope="module")
def hello(xen) -> bytes:
    return (xen_tests_for(xen.path) / "xen_hello_world.livepatch").read_bytes()


def retargeted(data: bytes, *, old_size: int | None = None, nop: bool = False) -> bytes:
    """Xen's hello world patching TARGET instead of xen_extra_version (its old_addr symbol renamed); `old_size`
    set; `nop`: new_addr left 0 (its relocation made R_X86_64_NONE), a NOP record of its new_size 8."""
    elf = ELFFile(io.BytesIO(data))
    out = bytearray(data)
    strtab = elf.get_section_by_name(".strtab")["sh_offset"]
    at = data.index(b"\0xen_extra_version\0", strtab) + 1
    out[at:at + 18] = TARGET.encode().ljust(18, b"\0")
    funcs = elf.get_section_by_name(".livepatch.funcs")["sh_offset"]
    if old_size is not None:
        struct.pack_into("<I", out, funcs + 28, old_size)
    if nop:
        rela = elf.get_section_by_name(".rela.livepatch.funcs")
        index = next(i for i, r in enumerate(rela.iter_relocations()) if r["r_offset"] == 8)
        info_at = rela["sh_offset"] + index * 24 + 8
        struct.pack_into("<I", out, info_at, 0)  # the type, R_X86_64_NONE; the symbol stays
    return bytes(out)


def test_the_real_images_version_selects_xen_4_17s_upload_order(xen):
    """Debian's image says 4.17 (xen_major_version, xen_minor_version): 4.17's order; the firmware, staging's."""
    assert xen.read(xen.address(TARGET), 4) == ENDBR64
    assert UploadOrder.of(xen) is UploadOrder.XEN_4_17
    assert UploadOrder.of(load_image(builtin_firmware())) is UploadOrder.STAGING


def test_a_jump_on_an_endbr64_function_is_written_past_it_and_reverted(xen, hello):
    """Apply: the ENDBR64 stays, the jmp into the payload is at +4; revert: the bytes as built."""
    session = Session(vcpus=2, seed=1, xen_syms=xen.path)
    machine, livepatch = session.machine, session.livepatch
    target = xen.address(TARGET)
    livepatch.upload("hello", retargeted(hello))
    assert livepatch.run_action("hello", Action.APPLY).rc == 0
    code = machine.memory.read(target, 9)
    destination = target + 9 + int.from_bytes(code[5:9], "little", signed=True)
    assert code[:4] == ENDBR64 and code[4] == 0xE9
    assert destination == livepatch.payloads["hello"].loaded.funcs[0].new_addr
    assert livepatch.run_action("hello", Action.REVERT).rc == 0
    assert machine.memory.read(target, 16) == xen.read(target, 16)


@pytest.mark.parametrize("old_size", [5, 8])
def test_old_size_below_nine_on_an_endbr64_function_is_refused(xen, hello, old_size):
    """old_size 5..8 leaves no room for the jmp past ENDBR64: EINVAL (Xen prints nothing); nothing loaded."""
    session = Session(vcpus=2, seed=1, xen_syms=xen.path)
    with pytest.raises(LivepatchError) as caught:
        session.livepatch.upload("hello", retargeted(hello, old_size=old_size))
    assert caught.value.errno == errno.EINVAL and caught.value.xen_log is None
    assert "no room for the jump past the 4-byte ENDBR64" in caught.value.reason
    assert not session.livepatch.payloads


def test_a_nop_on_an_endbr64_function_starts_past_it(xen, hello):
    """A NOP record of 8 bytes: the ENDBR64 stays, 4 bytes of NOP at +4, the rest as built."""
    session = Session(vcpus=2, seed=1, xen_syms=xen.path)
    target = xen.address(TARGET)
    session.livepatch.upload("nop", retargeted(hello, nop=True))
    assert session.livepatch.run_action("nop", Action.APPLY).rc == 0
    code = session.machine.memory.read(target, 16)
    assert code[:4] == ENDBR64 and code[4:8] == bytes.fromhex("0f1f4000") and code[8:] == xen.read(target + 8, 8)
