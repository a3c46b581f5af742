"""Functions that must never be patched, derived from the firmware's call graph.

Xen warns that patching do_nmi, anything on the NMI path or the patching
code itself ends in disaster. The roots are those entry points; everything
they reach by direct calls and jumps (found with capstone) is unsafe too, as
are the NMI callbacks the controller installs or restores.
"""

from __future__ import annotations

from capstone import CS_ARCH_X86, CS_MODE_64, Cs
from capstone.x86 import X86_OP_IMM

from ..image import Image, Symbol
from ..memory import GuestMemory

ROOTS = {
    "do_nmi": "it handles NMIs",
    "check_for_xsplice_work": "it is the xSplice rendezvous",
    "reset_stack_and_jump": "it is the xSplice rendezvous",
    "xsplice_mask_nmi_callback": "it is the xSplice NMI mask",
    "default_nmi_callback": "it is the NMI callback",
    "xsplice_reschedule_fn": "it is the xSplice rendezvous",
}


def unsafe_functions(image: Image, memory: GuestMemory) -> dict[int, str]:
    """Address of every unsafe function -> why (`reached from do_nmi`, ...)."""
    disassembler = Cs(CS_ARCH_X86, CS_MODE_64)
    disassembler.detail = True
    unsafe: dict[int, str] = {}
    for root, why in ROOTS.items():
        start = image.lookup(root)
        if start is None:
            continue
        stack = [(start, why)]
        while stack:
            func, reason = stack.pop()
            if func.address in unsafe:
                continue
            unsafe[func.address] = reason
            for callee in _direct_targets(image, memory, disassembler, func):
                stack.append((callee, f"it is reached from {root}"))
    return unsafe


def _direct_targets(image: Image, memory: GuestMemory, disassembler: Cs, func: Symbol):
    if not func.size:
        return
    for insn in disassembler.disasm(memory.read(func.address, func.size), func.address):
        if not (insn.group(1) or insn.group(2)):  # CS_GRP_JUMP, CS_GRP_CALL
            continue
        for op in insn.operands:
            if op.type == X86_OP_IMM:
                found = image.function_at(op.imm)
                if found and found[1] == 0 and found[0].address != func.address:
                    yield found[0]
