"""The payload loader: Xen's checks and errno, layout, symbols, relocations, records, notes, hooks."""

from __future__ import annotations

import errno
import hashlib
import io
import itertools
import shutil
import struct
import subprocess

import capstone
import pytest
from elftools.elf.elffile import ELFFile

from xsplice_emu.arch import DEFAULT_ARCH
from xsplice_emu.errors import LivepatchError
from xsplice_emu.livepatch.payload import Host, RegionKind, UploadOrder, load_payload

pytestmark = pytest.mark.skipif(not (shutil.which("gcc") and shutil.which("ld")), reason="needs gcc and ld")

CFLAGS = (
    "-O2 -ffreestanding -fno-builtin -nostdlib -fpic -mcmodel=small -mno-red-zone "
    "-fno-stack-protector -fno-asynchronous-unwind-tables -fcf-protection=none -c"
).split()

RESOLVE = {
    "xen_extra_version": 0x101000,
    "xen_minor_version": 0x101100,
    "tiny_ret": 0x102000,
    "version.c#tiny_static": 0x102100,
    "version.c#static_fn": 0x102200,
    "far_sym": 0x103000,
    "_GLOBAL_OFFSET_TABLE_": 0x104000,
}
TEXT = ((0x101000, 0x103100),)
XEN_ID = bytes([0x0B, 0xAD]) + bytes(17) + b"\x02"
BASE = 0x200000
LIMIT = 0x400000
PAGE = 0x1000

# Xen's documented record layouts, declared here on purpose (not from a shared header).
PRELUDE = r"""
#pragma GCC visibility push(hidden)
typedef unsigned int u32;
typedef unsigned char u8;
struct xsplice_patch_func {              /* v1, .xsplice.funcs: 64 bytes */
    const char *name;
    void *new_addr;
    void *old_addr;
    u32 new_size;
    u32 old_size;
    u8 version;
    u8 opaque[31];
};
struct livepatch_expectation {
    u8 enabled : 1;
    u8 len : 5;
    u8 rsv : 2;
    u8 data[31];
};
struct livepatch_func {                  /* v2, .livepatch.funcs: 104 bytes */
    const char *name;
    void *new_addr;
    void *old_addr;
    u32 new_size;
    u32 old_size;
    u8 version;
    u8 opaque[31];
    u8 applied;
    u8 pad[7];
    struct livepatch_expectation expect;
};
_Static_assert(sizeof(struct xsplice_patch_func) == 64, "v1 record");
_Static_assert(sizeof(struct livepatch_func) == 104, "v2 record");
struct build_id_note { u32 namesz, descsz, type; char name[4]; u8 desc[20]; };
"""

HELLO_V1 = PRELUDE + r"""
#ifndef VERSION
#define VERSION 1
#endif
#ifndef NEW_ADDR
#define NEW_ADDR xen_hello_world
#endif
#ifndef OLD_ADDR
#define OLD_ADDR xen_extra_version
#endif
#ifndef NEW_SIZE
#define NEW_SIZE 16
#endif
#ifndef OLD_SIZE
#define OLD_SIZE 16
#endif
extern const char *xen_extra_version(void);
extern int tiny_ret(void);
static char scratch[64];
int counter;
static const char hello[] = "Hello World";

const char *xen_hello_world(void)
{
    counter += tiny_ret();
    scratch[counter & 63]++;
    return hello;
}

static const char name[] = "xen_extra_version";
struct xsplice_patch_func __attribute__((section(".xsplice.funcs"))) hello_func = {
    .name = name, .new_addr = NEW_ADDR, .old_addr = OLD_ADDR,
    .new_size = NEW_SIZE, .old_size = OLD_SIZE, .version = VERSION,
};
"""

AGAIN_V2 = PRELUDE + r"""
#ifndef VERSION
#define VERSION 2
#endif
#ifndef EXPECT
#define EXPECT .enabled = 1, .len = 3
#endif
extern int xen_minor_version(void);

const char *xen_hello_again(void)
{
    return "Hello Again World!";
}

static const char extra[] = "xen_extra_version";
static const char minor[] = "xen_minor_version";
struct livepatch_func __attribute__((section(".livepatch.funcs"))) again_funcs[] = {
    { .name = extra, .new_addr = xen_hello_again, .old_addr = 0, .new_size = 16, .old_size = 16,
      .version = VERSION, .expect = { EXPECT, .data = { 0x48, 0x8d, 0x05 } } },
    { .name = minor, .new_addr = 0, .old_addr = xen_minor_version, .new_size = 4, .old_size = 6,
      .version = VERSION },
};
"""

STATIC_V1 = PRELUDE + r"""
extern int tiny_static(void) __asm__("\"version.c#tiny_static\"");

int new_static_fn(void)
{
    return tiny_static() + 1;
}

static const char name[] = "version.c#static_fn";
struct xsplice_patch_func __attribute__((section(".xsplice.funcs"))) static_func = {
    .name = name, .new_addr = new_static_fn, .old_addr = 0, .new_size = 16, .old_size = 16, .version = 1,
};
"""

NOTES = r"""
#ifndef DEPENDS_TYPE
#define DEPENDS_TYPE 3
#endif
#ifndef XEN_DEPENDS_TYPE
#define XEN_DEPENDS_TYPE 3
#endif
#define NOTE(section, type, id) __asm__(".section " section ",\"a\",@note\n .balign 4\n" \
    " .long 4, 20, " #type "\n .asciz \"GNU\"\n .byte " id "\n .previous")
#define NOTE_OF(section, type, id) NOTE(section, type, id)
#ifndef NO_DEPENDS
NOTE_OF(".livepatch.depends", DEPENDS_TYPE, "0xde,0xad,0xbe,0xef,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,1");
#endif
#ifndef NO_XEN_DEPENDS
NOTE_OF(".livepatch.xen_depends", XEN_DEPENDS_TYPE, "0x0b,0xad,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,2");
#endif
"""

HOOKS = r"""
static void load_one(void) { counter = 1; }
static void load_two(void) { counter = 2; }
static void unload_one(void) { counter = 3; }
static int pre_apply(void) { return counter; }
static void post_apply(void) { counter = 5; }
typedef void (*hook_t)(void);
const hook_t load_hooks[] __attribute__((section(".livepatch.hooks.load"))) = { load_one, load_two };
#ifdef ODD_UNLOAD_HOOKS
const u32 unload_hooks[3] __attribute__((section(".livepatch.hooks.unload"))) = { 1, 2, 3 };
#else
const hook_t unload_hooks[] __attribute__((section(".livepatch.hooks.unload"))) = { unload_one };
#endif
int (*const preapply_hook)(void) __attribute__((section(".livepatch.hooks.preapply"))) = pre_apply;
#ifdef TWO_PREAPPLY
int (*const preapply_hook2)(void) __attribute__((section(".livepatch.hooks.preapply"))) = pre_apply;
#endif
const hook_t postapply_hook __attribute__((section(".livepatch.hooks.postapply"))) = post_apply;
"""

WRITABLE_TEXT = r"""
__asm__(".section .text.wx,\"awx\",@progbits\n ret\n .previous");
"""

RELOCS = r"""
__asm__(".text\n"
        ".globl gotpcrelx\n gotpcrelx: call *tiny_ret@GOTPCREL(%rip)\n ret\n"
        ".globl abs32\n .type abs32, @function\n abs32: movl $far_sym, %eax\n ret\n"
        ".globl abs32s\n .type abs32s, @function\n abs32s: movq $far_sym, %rax\n ret\n");
"""


@pytest.fixture(scope="session")
def build(tmp_path_factory):
    """Compile C source into a payload (gcc -c, then ld -r with a build-id); cached per variant."""
    cache: dict[tuple, bytes] = {}
    root = tmp_path_factory.mktemp("payloads")

    def make(source: str, *defines: str, build_id: bool = True, cflags: tuple[str, ...] = ()) -> bytes:
        key = (source, defines, build_id, cflags)
        if key not in cache:
            stem = root / hashlib.sha1(repr(key).encode()).hexdigest()[:12]
            c_file, obj, out = stem.with_suffix(".c"), stem.with_suffix(".o"), stem.with_suffix(".livepatch")
            c_file.write_text(source + NOTES)
            subprocess.run(["gcc", *CFLAGS, *cflags, *[f"-D{d}" for d in defines], str(c_file), "-o", str(obj)],
                           check=True, capture_output=True)
            link = ["ld", "-r", *(["--build-id=sha1"] if build_id else []), str(obj), "-o", str(out)]
            subprocess.run(link, check=True, capture_output=True)
            cache[key] = out.read_bytes()
        return cache[key]

    return make


def load(data: bytes, *, resolve=RESOLVE, base=BASE, limit=LIMIT, loaded=(), text=TEXT, code=None,
         order=UploadOrder.STAGING, xen_id=XEN_ID):
    host = Host(xen_id, resolve.get, text, tuple(loaded), read=code or _no_code, order=order)
    return load_payload("hello.livepatch", data, arch=DEFAULT_ARCH, host=host, base=base, limit=limit)


def _no_code(address: int, length: int) -> bytes | None:
    return None


def refusal(data: bytes, errno_: int, **options) -> LivepatchError:
    """Load `data`, expect LivepatchError with `errno_`; return it."""
    with pytest.raises(LivepatchError) as caught:
        load(data, **options)
    assert caught.value.errno == errno_, str(caught.value)
    assert caught.value.reason.startswith("hello.livepatch: ") and "\n" not in caught.value.reason
    return caught.value


def refused(data: bytes, errno_: int, **options) -> str:
    """Load `data`, expect LivepatchError with `errno_`; return its one-line message."""
    return refusal(data, errno_, **options).reason


# -- patching helpers (byte offsets from the ELF64 spec) --------------------

_SHDR_FIELDS = {"sh_type": (4, "<I"), "sh_flags": (8, "<Q"), "sh_addr": (16, "<Q"), "sh_offset": (24, "<Q"),
                "sh_size": (32, "<Q"), "sh_info": (44, "<I"), "sh_addralign": (48, "<Q")}
_EHDR_FIELDS = {"e_type": (16, "<H"), "e_machine": (18, "<H"), "e_version": (20, "<I"), "e_phnum": (56, "<H"),
                "e_shnum": (60, "<H"), "e_shstrndx": (62, "<H")}


def _elf(data: bytes) -> ELFFile:
    return ELFFile(io.BytesIO(data))


def patch_header(data: bytes, field: str, value: int) -> bytes:
    out = bytearray(data)
    offset, fmt = _EHDR_FIELDS[field]
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


def section_index(data: bytes, name: str) -> int:
    return next(i for i, s in enumerate(_elf(data).iter_sections()) if s.name == name)


def patch_section(data: bytes, name: str, field: str, value: int) -> bytes:
    elf = _elf(data)
    out = bytearray(data)
    offset, fmt = _SHDR_FIELDS[field]
    struct.pack_into(fmt, out, elf["e_shoff"] + section_index(data, name) * elf["e_shentsize"] + offset, value)
    return bytes(out)


def patch_symbol(data: bytes, symbol: str, *, shndx: int, value: int) -> bytes:
    symtab = _elf(data).get_section_by_name(".symtab")
    index = next(i for i, s in enumerate(symtab.iter_symbols()) if s.name == symbol)
    out = bytearray(data)
    struct.pack_into("<HQ", out, symtab["sh_offset"] + index * 24 + 6, shndx, value)
    return bytes(out)


def patch_rela(data: bytes, section: str, entry: int, *, offset=None, sym=None, rtype=None) -> bytes:
    rela = _elf(data).get_section_by_name(section)
    at = rela["sh_offset"] + entry * 24
    old_offset, info = struct.unpack_from("<QQ", data, at)
    sym = info >> 32 if sym is None else sym
    rtype = info & 0xFFFFFFFF if rtype is None else rtype
    out = bytearray(data)
    struct.pack_into("<QQ", out, at, old_offset if offset is None else offset, sym << 32 | rtype)
    return bytes(out)


def rename_section(data: bytes, old: str, new: str) -> bytes:
    assert len(old) == len(new)
    shstrtab = _elf(data).get_section(_elf(data)["e_shstrndx"])
    at = data.index(old.encode() + b"\0", shstrtab["sh_offset"])
    return data[:at] + new.encode() + data[at + len(new):]


def region(payload, kind):
    return next(r for r in payload.regions if r.kind is kind)


def read(payload, address: int, size: int) -> bytes:
    for r in payload.regions:
        if r.address <= address < r.end:
            return r.data[address - r.address: address - r.address + size]
    raise AssertionError(f"{address:#x} is not in the payload")


# -- good payloads ------------------------------------------------------------

def test_good_v1_payload(build):
    """A v1 payload loads: one jump record, relocated pointers, its build-id and no dependency."""
    data = build(HELLO_V1)
    payload = load(data)
    expected_id = bytes.fromhex(next(_elf(data).get_section_by_name(".note.gnu.build-id").iter_notes())["n_desc"])
    assert payload.name == "hello.livepatch"
    assert payload.build_id == expected_id and len(payload.build_id) == 20
    assert payload.depends == bytes([0xDE, 0xAD, 0xBE, 0xEF]) + bytes(15) + b"\x01"
    assert payload.xen_depends == XEN_ID
    (func,) = payload.funcs
    assert func.name == "xen_extra_version"
    assert func.old_addr == RESOLVE["xen_extra_version"]
    assert func.new_addr == payload.symbols["xen_hello_world"]
    assert (func.new_size, func.old_size, func.version, func.expect, func.is_nop) == (16, 16, 1, None, False)
    assert payload.has_writable_data  # `counter` and `scratch` live in .bss
    assert all(hooks == () for hooks in payload.hooks.values())


def test_good_v2_payload(build):
    """A v2 payload loads: old_addr 0 resolved by name, the expectation bytes, and a NOP record."""
    payload = load(build(AGAIN_V2))
    jump, nop = payload.funcs
    assert (jump.name, jump.old_addr, jump.version) == ("xen_extra_version", RESOLVE["xen_extra_version"], 2)
    assert jump.new_addr == payload.symbols["xen_hello_again"]
    assert jump.expect == bytes([0x48, 0x8D, 0x05])
    assert read(payload, jump.new_addr, 1)  # the new function is inside the payload
    assert nop.is_nop and (nop.old_addr, nop.new_size, nop.old_size) == (RESOLVE["xen_minor_version"], 4, 6)
    assert nop.expect is None
    assert not payload.has_writable_data  # only the function records are writable


def test_relocated_call_reaches_the_resolved_symbol(build):
    """The call to the undefined `tiny_ret` carries the exact rel32 to the address `resolve` gave."""
    payload = load(build(HELLO_V1))
    start = payload.symbols["xen_hello_world"]
    text = region(payload, RegionKind.TEXT)
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    call = next(i for i in md.disasm(text.data[start - text.address:], start) if i.mnemonic == "call")
    rel32 = RESOLVE["tiny_ret"] - (call.address + 5)
    assert call.bytes == b"\xe8" + struct.pack("<i", rel32)
    assert call.op_str == hex(RESOLVE["tiny_ret"])


def test_absolute_symbol_keeps_its_value(build):
    """A SHN_ABS symbol is used as is, without asking `resolve`."""
    data = patch_symbol(build(HELLO_V1), "tiny_ret", shndx=0xFFF1, value=0x105000)
    payload = load(data)
    start = payload.symbols["xen_hello_world"]
    text = region(payload, RegionKind.TEXT)
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    call = next(i for i in md.disasm(text.data[start - text.address:], start) if i.mnemonic == "call")
    assert call.op_str == "0x105000"


def test_function_record_pointers_are_relocated(build):
    """The records in the returned bytes hold the name, new and old addresses after relocation."""
    payload = load(build(HELLO_V1))
    record = payload.symbols["hello_func"]
    name_ptr, new_addr, old_addr = struct.unpack("<QQQ", read(payload, record, 24))
    assert read(payload, name_ptr, 18) == b"xen_extra_version\0"
    assert (new_addr, old_addr) == (payload.symbols["xen_hello_world"], RESOLVE["xen_extra_version"])


def test_file_hash_symbol_statics_resolve_through_resolve(build):
    """`file#symbol` names go to `resolve`, both as relocation targets and as record names."""
    payload = load(build(STATIC_V1))
    (func,) = payload.funcs
    assert (func.name, func.old_addr) == ("version.c#static_fn", RESOLVE["version.c#static_fn"])
    start = payload.symbols["new_static_fn"]
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    text = region(payload, RegionKind.TEXT)
    insns = list(md.disasm(text.data[start - text.address:], start))
    assert any(i.mnemonic in ("call", "jmp") and i.op_str == hex(RESOLVE["version.c#tiny_static"]) for i in insns)


USES_COUNTER = PRELUDE + r"""
extern int counter;
int read_counter(void) { return counter; }
static const char minor[] = "xen_minor_version";
struct xsplice_patch_func __attribute__((section(".xsplice.funcs"))) minor_func = {
    .name = minor, .new_addr = read_counter, .old_addr = 0, .new_size = 8, .old_size = 8, .version = 1 };
"""


def test_names_resolve_against_loaded_payloads_not_the_payload_itself(build):
    """Undefined symbols fall back to loaded payloads' new symbols; old_addr 0 never to the payload's own."""
    first = load(build(HELLO_V1))
    second = load(build(USES_COUNTER), loaded=[first], base=first.end)
    start = second.symbols["read_counter"]
    text = region(second, RegionKind.TEXT)
    insn = next(capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64).disasm(text.data[start - text.address:], start))
    assert struct.unpack("<i", insn.bytes[-4:])[0] == first.new_symbols["counter"] - (insn.address + insn.size)
    assert "counter" in refused(build(USES_COUNTER), errno.ENOENT)
    resolve = {k: v for k, v in RESOLVE.items() if k != "version.c#static_fn"}
    source = STATIC_V1.replace('"version.c#static_fn"', '"new_static_fn"')
    assert "new_static_fn" in refused(build(source), errno.ENOENT, resolve=resolve)


def test_duplicate_new_symbol_of_a_loaded_payload_is_eexist(build):
    """A payload defining a global symbol that a loaded payload already added is EEXIST; statics never clash."""
    first = load(build(HELLO_V1))
    assert "counter" in first.new_symbols and "xen_hello_world" not in first.new_symbols  # a record's new function
    assert "scratch" not in first.new_symbols  # static
    again = HELLO_V1.replace("scratch", "scratch2")
    message = refused(build(again), errno.EEXIST, loaded=[first], base=first.end)
    assert message == "hello.livepatch: duplicate new symbol: counter"
    same_static = HELLO_V1.replace("counter", "counter2").replace("hello_func", "hello_func2")
    assert load(build(same_static), loaded=[first], base=first.end).new_symbols.keys() >= {"counter2"}


def test_regions_are_page_aligned_in_order_and_under_the_limit(build):
    """Text, rodata and data each start on a page, in that order, from `base` and below `limit`."""
    payload = load(build(HELLO_V1), base=BASE + 0x123)
    assert [r.kind for r in payload.regions] == [RegionKind.TEXT, RegionKind.RODATA, RegionKind.DATA]
    assert payload.regions[0].address == BASE + PAGE
    for before, after in itertools.pairwise(payload.regions):
        assert after.address >= before.end
    assert all(r.address % PAGE == 0 for r in payload.regions)
    assert payload.end == payload.regions[-1].end <= LIMIT
    text, rodata, data = payload.regions
    assert text.address <= payload.symbols["xen_hello_world"] < text.end
    assert rodata.address <= payload.symbols["hello"] < rodata.end
    assert data.address <= payload.symbols["counter"] < data.end


def test_nobits_sections_are_zero_filled(build):
    """.bss variables are present in the data region as zeros."""
    payload = load(build(HELLO_V1))
    assert read(payload, payload.symbols["scratch"], 64) == bytes(64)
    assert read(payload, payload.symbols["counter"], 4) == bytes(4)


def test_payload_past_the_limit_is_refused(build):
    """A payload that would end above `limit` is refused with ENOMEM."""
    message = refused(build(HELLO_V1), errno.ENOMEM, limit=BASE + 2 * PAGE)
    assert "past the limit" in message


def test_depends_notes_give_the_build_ids(build):
    """.livepatch.depends and .livepatch.xen_depends notes yield the build-ids they name."""
    payload = load(build(HELLO_V1))
    assert payload.depends == bytes([0xDE, 0xAD, 0xBE, 0xEF]) + bytes(15) + b"\x01"
    assert payload.xen_depends == bytes([0x0B, 0xAD]) + bytes(17) + b"\x02"


def test_hooks_are_resolved_to_guest_addresses(build):
    """Each hook section becomes the tuple of its relocated function pointers."""
    payload = load(build(HELLO_V1 + HOOKS))
    syms = payload.symbols
    assert payload.hooks["load"] == (syms["load_one"], syms["load_two"])
    assert payload.hooks["unload"] == (syms["unload_one"],)
    assert payload.hooks["preapply"] == (syms["pre_apply"],)
    assert payload.hooks["postapply"] == (syms["post_apply"],)
    assert payload.hooks["apply"] == payload.hooks["revert"] == payload.hooks["prerevert"] == ()
    text = region(payload, RegionKind.TEXT)
    assert all(text.address <= p < text.end for hooks in payload.hooks.values() for p in hooks)


def test_relocations_of_unloaded_sections_are_skipped(build):
    """Debug-info relocations are ignored, even of a type the loader does not support."""
    data = build(HELLO_V1, cflags=("-g",))
    data = patch_rela(data, ".rela.debug_info", 0, rtype=41)
    assert load(data).funcs[0].name == "xen_extra_version"


# -- refusals: the ELF itself ------------------------------------------------

@pytest.mark.parametrize("size", [0, 2 * 1024 * 1024 + 1])
def test_payload_size_limits(size):
    """An empty payload or one over 2 MiB is refused with EINVAL."""
    refused(b"\x7fELF" + bytes(max(size - 4, 0)) if size else b"", errno.EINVAL)


@pytest.mark.parametrize("mangle", [
    pytest.param(lambda d: b"MZ" + d[2:], id="not-elf"),
    pytest.param(lambda d: d[:40], id="shorter-than-header"),
    pytest.param(lambda d: d[: len(d) // 2], id="truncated"),
    pytest.param(lambda d: patch_section(d, ".text", "sh_offset", len(d) + 16), id="section-outside-file"),
    pytest.param(lambda d: patch_section(d, ".strtab", "sh_offset", len(d) - 4), id="strtab-outside-file"),
    pytest.param(lambda d: patch_section(d, ".strtab", "sh_type", 1), id="strtab-not-strtab"),
    pytest.param(lambda d: patch_header(d, "e_shstrndx", 0), id="no-section-names"),
    pytest.param(lambda d: patch_section(d, ".symtab", "sh_type", 1), id="no-symtab"),
])
def test_broken_elf_is_einval(build, mangle):
    """Not ELF, truncated, or tables outside the file: EINVAL, never a traceback."""
    refused(mangle(build(HELLO_V1)), errno.EINVAL)


@pytest.mark.parametrize("mangle, words", [
    pytest.param(lambda d: d[:4] + b"\x01" + d[5:], "ELF64", id="class"),
    pytest.param(lambda d: patch_header(d, "e_machine", 3), "x86-64", id="machine"),
    pytest.param(lambda d: patch_header(d, "e_type", 2), "relocatable", id="type"),
    pytest.param(lambda d: patch_header(d, "e_version", 0), "version", id="version"),
    pytest.param(lambda d: d[:7] + b"\x03" + d[8:], "OS ABI", id="osabi"),
    pytest.param(lambda d: patch_header(d, "e_phnum", 1), "program headers", id="phnum"),
    pytest.param(lambda d: patch_header(d, "e_shnum", 1024), "too many sections", id="shnum"),
    pytest.param(lambda d: patch_section(d, ".comment", "sh_type", 2), "symbol tables", id="two-symtabs"),
])
def test_unsupported_elf_is_eopnotsupp(build, mangle, words):
    """Wrong class, machine, type, version, OSABI, program headers, too many sections, two symtabs."""
    assert words in refused(mangle(build(HELLO_V1)), errno.EOPNOTSUPP)


def test_common_symbol_is_einval(build):
    """A COMMON symbol (an -fcommon tentative definition) is refused with EINVAL."""
    assert "is a common symbol" in refused(build(HELLO_V1, cflags=("-fcommon",)), errno.EINVAL)


def test_writable_and_executable_section_is_eopnotsupp(build):
    """A section both writable and executable is refused, named with its index."""
    data = build(HELLO_V1 + WRITABLE_TEXT)
    index = section_index(data, ".text.wx")
    assert refused(data, errno.EOPNOTSUPP) == (
        f"hello.livepatch: section .text.wx (index {index}) is writable and executable"
    )


# -- refusals: symbols and relocations ----------------------------------------

def test_unknown_symbol_is_enoent(build):
    """An undefined symbol neither `resolve` nor the payload knows is ENOENT, naming it."""
    resolve = {k: v for k, v in RESOLVE.items() if k != "tiny_ret"}
    assert "tiny_ret" in refused(build(HELLO_V1), errno.ENOENT, resolve=resolve)


def test_unresolvable_old_address_is_enoent(build):
    """A record with old_addr 0 whose name nobody knows is ENOENT."""
    resolve = {k: v for k, v in RESOLVE.items() if k != "xen_extra_version"}
    assert "xen_extra_version" in refused(build(AGAIN_V2), errno.ENOENT, resolve=resolve)


def test_unsupported_relocation_type_is_named(build):
    """A relocation type the loader does not handle is EOPNOTSUPP, named as pyelftools names it."""
    assert "unsupported relocation type R_X86_64_GOTPCRELX" in refused(build(HELLO_V1 + RELOCS), errno.EOPNOTSUPP)


@pytest.mark.parametrize("kind", ["R_X86_64_32", "R_X86_64_32S"])
def test_absolute_32_bit_relocations_are_eopnotsupp(build, kind):
    """R_X86_64_32 and _32S are outside Xen's x86 set: EOPNOTSUPP, named."""
    source = HELLO_V1 + RELOCS.replace("call *tiny_ret@GOTPCREL(%rip)", "call tiny_ret")
    if kind == "R_X86_64_32":
        source = source.replace("movq $far_sym, %rax", "nop")
    else:
        source = source.replace("movl $far_sym, %eax", "nop")
    assert f"unsupported relocation type {kind}" in refused(build(source), errno.EOPNOTSUPP)


def test_pc32_overflow_is_eoverflow(build):
    """A call whose target is beyond ±2 GiB of the payload is EOVERFLOW."""
    message = refused(build(HELLO_V1), errno.EOVERFLOW, resolve={**RESOLVE, "tiny_ret": 0x7FFF_0000_0000})
    assert "R_X86_64_PLT32 against tiny_ret" in message


def test_rel_section_is_eopnotsupp(build):
    """SHT_REL relocations (without addend) are not supported."""
    assert "SHT_REL" in refused(patch_section(build(HELLO_V1), ".rela.text", "sh_type", 9), errno.EOPNOTSUPP)


@pytest.mark.parametrize("change, code", [
    pytest.param({"offset": 0x10000}, errno.EINVAL, id="offset-outside-section"),
    pytest.param({"sym": 9999}, errno.EINVAL, id="symbol-index-past-end"),
    pytest.param({"sym": 0}, errno.EOPNOTSUPP, id="stn-undef"),
])
def test_bad_relocation_entries(build, change, code):
    """A relocation outside its section or past the symbol table is EINVAL (STN_UNDEF: EOPNOTSUPP)."""
    assert ".rela.text entry 0" in refused(patch_rela(build(HELLO_V1), ".rela.text", 0, **change), code)


# -- refusals: function records ----------------------------------------------

def test_nothing_to_patch_is_einval(build):
    """A payload with neither function records nor hooks is EINVAL, as Xen's "Nothing to patch"."""
    data = rename_section(build(HELLO_V1), ".xsplice.funcs", ".xsplice.funcz")
    assert refused(data, errno.EINVAL) == "hello.livepatch: Nothing to patch. Aborting..."


def test_hooks_only_payload_loads(build):
    """Hooks without function records load: no records, the hooks resolved."""
    data = rename_section(build(HELLO_V1 + HOOKS), ".xsplice.funcs", ".xsplice.funcz")
    payload = load(data)
    assert payload.funcs == () and payload.hooks["preapply"] == (payload.symbols["pre_apply"],)


def test_both_record_sections_is_einval(build):
    """A payload with both v1 and v2 record sections is EINVAL."""
    source = HELLO_V1 + AGAIN_V2[len(PRELUDE):].replace("VERSION", "VERSION2")
    assert "both" in refused(build(source, "VERSION2=2"), errno.EINVAL)


@pytest.mark.parametrize("size", [0, 63])
def test_record_section_size_is_checked(build, size):
    """An empty record section ("is empty"), or one not a multiple of the record size, is EINVAL."""
    data = patch_section(build(HELLO_V1), ".xsplice.funcs", "sh_size", size)
    assert ".xsplice.funcs" in refused(data, errno.EINVAL)


@pytest.mark.parametrize("source, version", [(HELLO_V1, 2), (AGAIN_V2, 1)])
def test_record_version_must_match_its_section(build, source, version):
    """A v1 section holding version 2 records, or the reverse, is EOPNOTSUPP."""
    assert f"version {version}" in refused(build(source, f"VERSION={version}"), errno.EOPNOTSUPP)


@pytest.mark.parametrize("defines, code, words", [
    pytest.param(("OLD_SIZE=0",), errno.EINVAL, "old_size 0", id="old-size-zero"),
    pytest.param(("OLD_SIZE=4",), errno.EINVAL, "below 5", id="jump-needs-five-bytes"),
    pytest.param(("NEW_ADDR=0", "NEW_SIZE=8", "OLD_SIZE=6"), errno.EINVAL, "6-byte", id="nop-longer-than-old"),
    pytest.param(("NEW_ADDR=0", "NEW_SIZE=32", "OLD_SIZE=40"), errno.EOPNOTSUPP, "at most 31", id="nop-over-31"),
])
def test_function_record_checks(build, defines, code, words):
    """Xen's per-record checks on sizes, with their errno."""
    assert words in refused(build(HELLO_V1, *defines), code)


def test_jump_patch_new_size_may_exceed_old_size(build):
    """A jump patch's new function may be longer than the old one."""
    assert load(build(HELLO_V1, "NEW_SIZE=4096", "OLD_SIZE=5")).funcs[0].new_size == 4096


def test_nop_patch_of_31_bytes_loads(build):
    """A NOP patch of 31 bytes (the maximum) loads as a NOP record."""
    (func,) = load(build(HELLO_V1, "NEW_ADDR=0", "NEW_SIZE=31", "OLD_SIZE=31")).funcs
    assert func.is_nop and func.new_size == 31


def test_jump_out_of_rel32_reach_is_eoverflow(build):
    """A jump from an old function more than 2 GiB away from the new one is EOVERFLOW."""
    far = {**RESOLVE, "xen_extra_version": BASE + (1 << 31) + PAGE}
    text = ((far["xen_extra_version"], far["xen_extra_version"] + PAGE),)
    assert "jump range" in refused(build(HELLO_V1), errno.EOVERFLOW, resolve=far, text=text)


@pytest.mark.parametrize("expect, code", [
    pytest.param(".enabled = 1, .len = 17", errno.ERANGE, id="longer-than-old-function"),
    pytest.param(".enabled = 1, .len = 3, .rsv = 1", errno.EINVAL, id="reserved-bits"),
])
def test_expectation_checks(build, expect, code):
    """A v2 expectation must be non-empty, fit the old function, and leave reserved bits clear."""
    assert "expect" in refused(build(AGAIN_V2, f"EXPECT={expect}"), code)


def test_accepted_by_xen_at_upload(build):
    """An enabled expectation of length 0 and a NOP record of new_size 0 load, as Xen loads them."""
    assert load(build(AGAIN_V2, "EXPECT=.enabled = 1, .len = 0")).funcs[0].expect == b""
    (func,) = load(build(HELLO_V1, "NEW_ADDR=0", "NEW_SIZE=0")).funcs
    assert func.is_nop and func.new_size == 0


def test_disabled_expectation_is_none(build):
    """A v2 record whose expectation is disabled has `expect` None."""
    assert load(build(AGAIN_V2, "EXPECT=.enabled = 0, .len = 3")).funcs[0].expect is None


# -- refusals: notes and hooks -----------------------------------------------

@pytest.mark.parametrize("define, section", [
    ("NO_DEPENDS", ".livepatch.depends"),
    ("NO_XEN_DEPENDS", ".livepatch.xen_depends"),
    ("", ".note.gnu.build-id"),
])
def test_missing_note_section_is_einval(build, define, section):
    """Each of the three build-id sections is mandatory: "<name>: <section> is missing", EINVAL."""
    data = build(HELLO_V1, define) if define else build(HELLO_V1, build_id=False)
    assert refused(data, errno.EINVAL) == f"hello.livepatch: {section} is missing"


@pytest.mark.parametrize("section, words", [
    (".livepatch.depends", ".livepatch.depends is empty"),
    (".livepatch.xen_depends", "failed to parse section .livepatch.xen_depends as build-id: -22"),
    (".note.gnu.build-id", ".note.gnu.build-id is empty"),
])
def test_empty_note_section_is_einval(build, section, words):
    """An empty build-id section is EINVAL too (staging parses .livepatch.xen_depends first: too short)."""
    assert refused(patch_section(build(HELLO_V1), section, "sh_size", 0), errno.EINVAL) == f"hello.livepatch: {words}"


def test_xen_depends_is_checked_before_anything_else(build):
    """A payload for another hypervisor is EINVAL even when it has an unknown symbol and a bad record."""
    resolve = {k: v for k, v in RESOLVE.items() if k != "tiny_ret"}
    data = build(HELLO_V1, "VERSION=7")
    assert refused(data, errno.ENOENT, resolve=resolve)
    host = Host(bytes(20), resolve.get, TEXT)
    with pytest.raises(LivepatchError) as caught:
        load_payload("other", data, arch=DEFAULT_ARCH, host=host, base=BASE, limit=LIMIT)
    assert caught.value.errno == errno.EINVAL and "not the hypervisor's build-id" in caught.value.reason


@pytest.mark.parametrize("define, code, words", [
    pytest.param("DEPENDS_TYPE=4", errno.ENODATA, "section .livepatch.depends", id="depends"),
    pytest.param("XEN_DEPENDS_TYPE=4", errno.EINVAL,
                 "failed to parse section .livepatch.xen_depends as build-id: -61", id="xen-depends"),
])
def test_malformed_notes_give_xens_errno(build, define, code, words):
    """A note that is not NT_GNU_BUILD_ID: ENODATA from the parser, EINVAL for .livepatch.xen_depends."""
    assert words in refused(build(HELLO_V1, define), code)


def test_build_id_note_of_another_type_is_enodata(build):
    """The payload's own .note.gnu.build-id with a note type other than NT_GNU_BUILD_ID is ENODATA."""
    data = build(HELLO_V1)
    note = _elf(data).get_section_by_name(".note.gnu.build-id")["sh_offset"]
    assert ".note.gnu.build-id" in refused(data[: note + 8] + b"\x04" + data[note + 9:], errno.ENODATA)


@pytest.mark.parametrize("define, section", [
    ("ODD_UNLOAD_HOOKS", ".livepatch.hooks.unload"),
    ("TWO_PREAPPLY", ".livepatch.hooks.preapply"),
])
def test_bad_hook_sections_are_einval(build, define, section):
    """A hook array not a multiple of 8 bytes, or two pointers in a single hook, is EINVAL."""
    assert section in refused(build(HELLO_V1 + HOOKS, define), errno.EINVAL)


# -- agreement with upstream's loader ------------------------------------------

def test_section_alignment_is_checked_for_every_section(build):
    """sh_addralign not a power of two is EOPNOTSUPP; sh_addr not a multiple of it is EINVAL."""
    data = build(HELLO_V1)
    index = section_index(data, ".comment")
    assert refused(patch_section(data, ".comment", "sh_addralign", 3), errno.EOPNOTSUPP) == (
        f"hello.livepatch: Section [{index}] alignment (0x3) is not supported")
    misplaced = patch_section(patch_section(data, ".comment", "sh_addralign", 4), ".comment", "sh_addr", 2)
    assert "is not aligned properly" in refused(misplaced, errno.EINVAL)


def test_large_alignment_of_a_regions_first_section_costs_nothing(build):
    """As in Xen, a section aligns within its page-aligned region: a 1 GiB alignment first in it still fits."""
    payload = load(patch_section(build(HELLO_V1), ".text", "sh_addralign", 1 << 30))
    assert region(payload, RegionKind.TEXT).address == BASE


def test_nobits_up_to_the_payload_limit_loads_and_over_it_is_einval(build):
    """A .bss of 2 MiB loads; one byte more is EINVAL (Xen's bound on NOBITS), not ENOMEM."""
    data = build(HELLO_V1)
    payload = load(patch_section(data, ".bss", "sh_size", 2 << 20), limit=BASE + (4 << 20))
    assert region(payload, RegionKind.DATA).end - region(payload, RegionKind.DATA).address >= 2 << 20
    assert "NOBITS" in refused(patch_section(data, ".bss", "sh_size", (2 << 20) + 1), errno.EINVAL)


def test_relocation_section_for_section_zero_is_einval(build):
    """A relocation section whose sh_info is 0 is EINVAL (upstream would dereference NULL)."""
    data = patch_section(build(HELLO_V1), ".rela.text", "sh_info", 0)
    assert "(Xen would fault here)" in refused(data, errno.EINVAL)


def test_relocation_against_a_symbol_of_an_unloaded_section_is_einval(build):
    """A symbol in a section Xen does not load is left unresolved: a relocation against it is EINVAL."""
    data = build(HELLO_V1)
    data = patch_symbol(data, "counter", shndx=section_index(data, ".comment"), value=0)
    assert "counter, in a section that is not loaded" in refused(data, errno.EINVAL)


def test_pointers_xen_would_fault_on_are_einval(build):
    """A record name Xen must read (old_addr 0) outside the payload and the hypervisor, or a section whose end
    wraps past 2^64, say Xen would fault."""
    source = HELLO_V1.replace(".name = name,", ".name = (const char *)0x10,")
    assert "(Xen would fault here)" in refused(build(source, "OLD_ADDR=0"), errno.EINVAL)
    data = build(HELLO_V1)
    wrapped = patch_section(data, ".strtab", "sh_offset", 0x100)
    wrapped = patch_section(wrapped, ".strtab", "sh_size", (1 << 64) - 0x80)
    assert "ends past 2^64 (Xen would fault here)" in refused(wrapped, errno.EINVAL)


def test_records_must_patch_text_and_jump_into_their_own_text(build):
    """old_addr..+old_size outside the host's text, or new_addr outside the payload's text: EINVAL naming the record."""
    outside = {**RESOLVE, "xen_extra_version": 0x3F00000}
    message = refused(build(HELLO_V1), errno.EINVAL, resolve=outside)
    assert "function record 0 (xen_extra_version) patches 0x3f00000+0x10, outside the text" in message
    assert "outside the text" in refused(build(HELLO_V1, "OLD_SIZE=0x2200"), errno.EINVAL)
    message = refused(build(HELLO_V1, "NEW_ADDR=(void *)hello"), errno.EINVAL)
    assert "function record 0 (xen_extra_version) new function" in message and "outside the payload's text" in message


# -- ENDBR64, Xen's order and errno, Xen's log lines ---------------------------

ENDBR64 = bytes.fromhex("f30f1efa")


def endbr64_at(address: int):
    """Host code where the function at `address` starts with ENDBR64 (as Debian's CET-IBT build has them)."""
    def read(at: int, length: int) -> bytes | None:
        return (ENDBR64 + bytes(64))[at - address: at - address + length] if address <= at < address + 64 else None
    return read


def test_a_jump_on_an_endbr64_function_needs_nine_bytes_and_goes_past_it(build):
    """Xen 4.17: old_size 8 on a function starting with ENDBR64 is EINVAL (silent in Xen); 9 loads, the jmp at +4."""
    code = endbr64_at(RESOLVE["xen_extra_version"])
    error = refusal(build(HELLO_V1, "OLD_SIZE=8"), errno.EINVAL, code=code)
    assert "below 9: no room for the jump past the 4-byte ENDBR64" in error.reason and error.xen_log is None
    (func,) = load(build(HELLO_V1, "OLD_SIZE=9"), code=code).funcs
    assert (func.patch_addr, func.patch_size) == (RESOLVE["xen_extra_version"] + 4, 5)
    (plain,) = load(build(HELLO_V1, "OLD_SIZE=5")).funcs
    assert (plain.patch_addr, plain.patch_size) == (RESOLVE["xen_extra_version"], 5)


def test_a_nop_on_an_endbr64_function_starts_past_it(build):
    """A NOP record of 8 bytes on an ENDBR64 function NOPs 4 bytes at +4 (livepatch_insn_len: new_size - 4)."""
    data = build(HELLO_V1, "NEW_ADDR=0", "NEW_SIZE=8", "OLD_SIZE=8")
    (func,) = load(data, code=endbr64_at(RESOLVE["xen_extra_version"])).funcs
    assert (func.patch_addr, func.patch_size) == (RESOLVE["xen_extra_version"] + 4, 4)


def test_a_name_xen_never_reads_may_point_anywhere(build):
    """With old_addr set, Xen never reads the record's name: a name pointer outside the payload loads."""
    source = HELLO_V1.replace(".name = name,", ".name = (const char *)0x10,")
    (func,) = load(build(source)).funcs
    assert func.old_addr == RESOLVE["xen_extra_version"] and func.name == "(name at 0x10)"


def test_a_pc32_relocation_wraps_modulo_2_to_the_64(build):
    """S + A - P is computed modulo 2^64 as Xen does: a symbol near the top of the address space is in reach of a
    call from low memory, and the call reaches it."""
    top = (1 << 64) - 0x1000
    payload = load(build(HELLO_V1), resolve={**RESOLVE, "tiny_ret": top})
    start = payload.symbols["xen_hello_world"]
    text = region(payload, RegionKind.TEXT)
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    call = next(i for i in md.disasm(text.data[start - text.address:], start) if i.mnemonic == "call")
    assert (call.address + 5 + struct.unpack("<i", call.bytes[1:])[0]) % (1 << 64) == top


def test_xens_errno_wins_over_the_testbeds_own_checks(build):
    """A record outside the host's text (the testbed's check) that Xen refuses later for another reason gives
    Xen's errno: EOVERFLOW for a jump out of reach, ENODATA for a build-id note of another type."""
    far = {**RESOLVE, "xen_extra_version": BASE + (1 << 31) + PAGE}
    assert "jump range" in refused(build(HELLO_V1), errno.EOVERFLOW, resolve=far)
    data = build(HELLO_V1, "NEW_ADDR=(void *)hello")
    note = _elf(data).get_section_by_name(".note.gnu.build-id")["sh_offset"]
    assert ".note.gnu.build-id" in refused(data[: note + 8] + b"\x04" + data[note + 9:], errno.ENODATA)


def test_the_upload_order_of_xen_4_17_and_of_staging_give_different_errno(build):
    """A depends note of another type: staging's parser says ENODATA, Xen 4.17 EINVAL. A payload for another
    hypervisor with an unknown symbol: staging checks the build-id first (EINVAL), 4.17 last (ENOENT)."""
    data = build(HELLO_V1, "DEPENDS_TYPE=4")
    assert refusal(data, errno.ENODATA).errno == errno.ENODATA
    assert refusal(data, errno.EINVAL, order=UploadOrder.XEN_4_17).xen_log is None
    resolve = {k: v for k, v in RESOLVE.items() if k != "tiny_ret"}
    other = bytes(20)
    staging = refusal(build(HELLO_V1), errno.EINVAL, resolve=resolve, xen_id=other)
    assert staging.xen_log == ("livepatch: hello.livepatch: build-id mismatch:",
                               f"  livepatch: {XEN_ID.hex()}", f"        xen: {other.hex()}")
    old = refusal(build(HELLO_V1), errno.ENOENT, resolve=resolve, xen_id=other, order=UploadOrder.XEN_4_17)
    assert old.xen_log == ("livepatch: hello.livepatch: Unknown symbol: tiny_ret",)
    wrong = refusal(build(HELLO_V1), errno.EINVAL, xen_id=other, order=UploadOrder.XEN_4_17)
    assert wrong.xen_log == ("livepatch: hello.livepatch: check against hypervisor build-id failed",)


@pytest.mark.parametrize("mangle, code, line", [
    pytest.param(lambda d: patch_header(d, "e_shnum", 0) [:40], errno.EINVAL, "Section header is bigger than payload",
                 id="short"),
    pytest.param(lambda d: d[:40] + struct.pack("<Q", 1 << 40) + d[48:], errno.EINVAL, "Bogus e_shoff", id="shoff"),
    pytest.param(lambda d: patch_section(d, ".comment", "sh_addralign", 3), errno.EOPNOTSUPP, None, id="align"),
])
def test_refusals_carry_xens_own_log_line(build, mangle, code, line):
    """Each refusal carries the line Xen 4.17 prints for it (xen_log), without "(XEN) "."""
    data = build(HELLO_V1)
    index = section_index(data, ".comment")
    line = line or f"Section [{index}] alignment (0x3) is not supported"
    assert refusal(mangle(data), code).xen_log == (f"livepatch: hello.livepatch: {line}",)


def test_a_wrong_record_version_is_logged_as_xen_logs_it(build):
    """A version 3 record in .livepatch.funcs: EOPNOTSUPP, and Xen's "Wrong version (3). Expected 2"."""
    error = refusal(build(AGAIN_V2, "VERSION=3"), errno.EOPNOTSUPP)
    assert error.xen_log == ("livepatch: hello.livepatch: Wrong version (3). Expected 2",)


MODINFO = r"""
__asm__(".section .modinfo,\"a\",@progbits\n .asciz \"LIVEPATCH_RULEZ\"\n .asciz \"VERSION=1\"\n"
#ifdef UNTERMINATED
        " .ascii \"X\"\n"
#endif
        " .previous");
"""

SPECIAL = r"""
#define STR(x) #x
#define TABLE(name, bytes) __asm__(".section " name ",\"a\",@progbits\n .fill " STR(bytes) ", 1, 0\n .previous")
#ifdef BUG_FRAMES
TABLE(".bug_frames.1", BUG_FRAMES);
#endif
#ifdef EX_TABLE
TABLE(".ex_table", EX_TABLE);
#endif
#ifdef ALTERNATIVE
/* one alt_instr whose original code is the entry itself (in rodata, not text) */
__asm__(".section .altinstructions,\"a\",@progbits\n .long 0, 0\n .word 0\n .byte 1, 0, 0, 0\n .previous");
#endif
#ifdef REPLACEMENTS
__asm__(".section .altinstr_replacement,\"ax\",@progbits\n nop\n .previous");
#endif
"""


def test_modinfo_strings_are_kept_for_list(build):
    """.modinfo's NUL-terminated strings (upstream's hello world carries LIVEPATCH_RULEZ) are the metadata."""
    assert load(build(HELLO_V1 + MODINFO)).metadata == b"LIVEPATCH_RULEZ\0VERSION=1\0"
    assert load(build(HELLO_V1)).metadata == b""
    error = refusal(build(HELLO_V1 + MODINFO, "UNTERMINATED"), errno.EINVAL)
    assert error.xen_log == ("livepatch: hello.livepatch: Incorrect metadata format detected",)


@pytest.mark.parametrize("defines, line", [
    pytest.param(("BUG_FRAMES=12",), "Wrong size 12 of .bug_frames.1 (must be multiple of 8)", id="bug-frames"),
    pytest.param(("EX_TABLE=12",), "Wrong size 12 of .ex_table (must be multiple of 8)", id="ex-table"),
    pytest.param(("ALTERNATIVE",), ".altinstructions provided, but no .altinstr_replacement", id="no-replacement"),
    pytest.param(("ALTERNATIVE", "REPLACEMENTS"), "Alternative orig ", id="orig-outside-text"),
])
def test_special_sections_are_checked_as_xen_checks_them(build, defines, line):
    """.bug_frames.N and .ex_table hold whole entries, an alternative patches the payload's text from
    .altinstr_replacement: else EINVAL with Xen's line."""
    (logged,) = refusal(build(HELLO_V1 + SPECIAL, *defines), errno.EINVAL).xen_log
    assert line in logged and logged.startswith("livepatch: hello.livepatch")
    assert load(build(HELLO_V1 + SPECIAL, "BUG_FRAMES=16", "EX_TABLE=8")).funcs
