"""The architecture object: the only place that names an ISA, and its encodings."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from capstone import CS_GRP_CALL, CS_GRP_JUMP
from capstone.x86 import X86_OP_IMM
from keystone import Ks

from xsplice_emu.arch import ARCHITECTURES, DEFAULT_ARCH, for_elf

PACKAGE = Path(__file__).resolve().parent.parent / "xsplice_emu"
ISA_NAMES = re.compile(r"x86_const|capstone\.x86|CS_ARCH_|UC_ARCH_|KS_ARCH_|EM_X86_64|UC_X86_")
REGISTER_NAMES = re.compile(r"(?i)^(?:[re](?:ip|sp|bp|ax|bx|cx|dx|si|di)|rflags|r(?:8|9|1[0-5])[dwb]?|UREGS_\w*)$")
"""x86 general registers and the saved-register layout (`UREGS_rip`), as code names them."""
OPCODES = frozenset({0x0F, 0x48, 0x55, 0x5D, 0x66, 0x90, 0xB8, 0xC3, 0xCC, 0xE8, 0xE9, 0xEB, 0xF3, 0xF4})
"""First bytes of the x86 instructions the testbed knows (push/pop rbp, nop, mov $imm,%eax, ret, int3, call,
jmp, hlt, endbr64, two-byte and prefixed forms): a byte string starting with one is code."""
TRACE_FIELDS = frozenset({"rip"})
"""Event fields of the trace format (docs/trace-format.md) named before the architecture was: an `emit` may pass
them."""
X86_PLATFORMS = ("engines/xen/",)
"""Code that is an x86 platform by nature: the xen engine runs Xen's x86 build and provides what x86 Xen expects
(x2APIC, TSC and MSRs, IDT entry points), so it may name x86 registers and opcodes; it still takes Unicorn's
register ids from arch/ (`PLATFORM_REGISTERS`)."""


def _code_bytes(node: ast.AST, source: str) -> bytes | None:
    """The bytes a literal written as escapes (b"\\x55", not b"U"), `bytes([...])` or `bytes.fromhex("...")`
    expression makes, else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, bytes):
        written = ast.get_source_segment(source, node) or ""
        return node.value if re.match(r"(?i)[rb]*[\'\"]\\x", written) else None
    if isinstance(node, ast.Call) and len(node.args) == 1:
        func, arg = node.func, node.args[0]
        if isinstance(func, ast.Name) and func.id in ("bytes", "bytearray") and isinstance(arg, ast.List | ast.Tuple):
            values = [e.value for e in arg.elts if isinstance(e, ast.Constant) and isinstance(e.value, int)]
            return bytes(v & 0xFF for v in values) if values else None
        if isinstance(func, ast.Attribute) and func.attr == "fromhex" and isinstance(arg, ast.Constant):
            return bytes.fromhex(str(arg.value)) if isinstance(arg.value, str) else None
    return None


def _names(node: ast.AST) -> Iterator[str]:
    """The identifiers a node defines or uses (variables, attributes, parameters, keyword arguments)."""
    if isinstance(node, ast.Name):
        yield node.id
    elif isinstance(node, ast.Attribute):
        yield node.attr
    elif isinstance(node, ast.arg):
        yield node.arg
    elif isinstance(node, ast.FunctionDef | ast.ClassDef):
        yield node.name
    elif isinstance(node, ast.alias):
        yield node.asname or node.name.rpartition(".")[2]
    elif isinstance(node, ast.Call):
        traced = isinstance(node.func, ast.Attribute) and node.func.attr == "emit"
        yield from (k.arg for k in node.keywords if k.arg and not (traced and k.arg in TRACE_FIELDS))


def isa_facts(source: str, *, platform: bool = False) -> Iterator[tuple[int, str]]:
    """(line, what) for each ISA fact in Python `source`: engine modes and ISA constants anywhere; unless it is an
    x86 `platform`, x86 register names and raw opcodes in code (not in comments or docstrings)."""
    for number, line in enumerate(source.splitlines(), 1):
        if ISA_NAMES.search(line):
            yield number, line.strip()
    if platform:
        return
    for node in ast.walk(ast.parse(source)):
        code = _code_bytes(node, source)
        if code and code[0] in OPCODES:
            yield node.lineno, f"raw opcode {code[:8].hex(' ')}"  # type: ignore[attr-defined]
        for name in _names(node):
            if REGISTER_NAMES.match(name):
                yield getattr(node, "lineno", 0), f"register name {name}"


def test_no_module_outside_arch_names_an_isa():
    """Engine modes, ISA constants, register names and raw opcodes appear only under xsplice_emu/arch/ (x86
    register names and opcodes also in the xen engine, an x86 platform)."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if not relative.startswith("arch/"):
            platform = relative.startswith(X86_PLATFORMS)
            offenders += [f"{relative}:{n}: {what}" for n, what in isa_facts(path.read_text(), platform=platform)]
    assert offenders == []


@pytest.mark.parametrize("line", ['PROLOGUE = b"\\x55"', "TRAP = bytes([0xCC])", 'JUMP = bytes.fromhex("e900000000")',
                                  "def f(rax: int) -> int: return rax", "offset = UREGS_rip",
                                  "from unicorn.x86_const import UC_X86_REG_RIP", "value = vcpu.rsp",
                                  "emit(vcpu, kind, rbp=1)"])
def test_the_guard_names_each_kind_of_isa_fact(line):
    """Each kind of ISA fact, written in a module outside arch/, is caught (a mutation of the guard's input)."""
    assert list(isa_facts(line + "\n"))


@pytest.mark.parametrize("line", ['MAGIC = b"\\x7fELF"', "ports = bytes([on])", '"""push rbp; ret."""',
                                  "machine.emit(vcpu, kind, rip=pc)", "PORT_CONSOLE = 0xE9"])
def test_the_guard_passes_what_is_not_an_isa_fact(line):
    """ELF magic, a flag byte, prose, the trace's `rip` field and a port number are not ISA facts."""
    assert list(isa_facts(line + "\n")) == []


def test_the_firmware_image_names_its_architecture(image):
    """The built-in firmware is x86-64; its ELF machine picks the registered architecture."""
    assert image.arch is ARCHITECTURES["EM_X86_64"] is DEFAULT_ARCH
    assert for_elf("EM_X86_64", 32) is None
    assert for_elf("EM_AARCH64", 64) is None


@pytest.mark.parametrize("distance", [0, 5, -5, 1 << 20, -(1 << 20), (1 << 31) - 1 + 5, -(1 << 31) + 5])
def test_jump_patch_decodes_to_a_jump_to_its_target(distance):
    """A jump patch written at OLD disassembles as `jmp NEW`, within the rel32 reach."""
    arch = DEFAULT_ARCH
    old = 0x1_0000_0000
    new = old + distance
    patch = arch.jump(old, new)
    assert len(patch) == arch.jump_size
    assert arch.jump_reaches(old, new)
    assert list(arch.instructions(patch, old)) == [(old, arch.jump_size, f"jmp {new:#x}")]


@pytest.mark.parametrize("distance", [(1 << 31) + 5, -(1 << 31) + 4])
def test_jump_reach_ends_at_rel32(distance):
    """One byte past the signed 32-bit displacement is out of reach."""
    assert not DEFAULT_ARCH.jump_reaches(0x1_0000_0000, 0x1_0000_0000 + distance)


@pytest.mark.parametrize("size", range(1, 32))
def test_nops_are_exactly_that_many_bytes_of_nops(size):
    """`nops(n)` is n bytes that decode, whole, into NOP instructions."""
    code = DEFAULT_ARCH.nops(size)
    decoded = list(DEFAULT_ARCH.instructions(code, 0x1000))
    assert len(code) == size == sum(length for _, length, _ in decoded)
    assert all(text.startswith("nop") for _, _, text in decoded)


def _capstone_branch_immediates(arch, code: bytes, address: int) -> list[int]:
    """The immediates of the instructions capstone's details group as jumps and calls (unsigned)."""
    return [op.imm & (2**64 - 1) for insn in arch.detailed_disassembler.disasm(code, address)
            if insn.group(CS_GRP_JUMP) or insn.group(CS_GRP_CALL) for op in insn.operands if op.type == X86_OP_IMM]


def test_direct_branch_targets_are_the_immediates_of_capstones_jumps_and_calls(image):
    """Read from capstone's text, without its details: every function of the firmware gives the same targets in
    the same order; code in Xen's high half gives each kind of branch's target, `loop` too (capstone's groups leave
    it out), and an indirect one none."""
    arch = image.arch
    for func in image.functions():
        code = image.read(func.address, func.size) if func.size else None
        if code:
            assert list(arch.direct_branch_targets(code, func.address)) == \
                _capstone_branch_immediates(arch, code, func.address), func.name
    base = 0xFFFF82D040200000
    code, _ = Ks(*arch.keystone_mode).asm(
        f"call {base + 0x100:#x}; jmp {base - 0x40:#x}; jne {base:#x}; jrcxz {base + 0x10:#x}; loop {base:#x}; "
        "jmp rax; call qword ptr [rip + 0x10]; ret", base)
    assert list(arch.direct_branch_targets(bytes(code), base)) == [base + 0x100, base - 0x40, base, base + 0x10, base]
