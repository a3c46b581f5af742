"""Functions that must never be patched, derived from the hypervisor image's call graph.

Xen warns that patching do_nmi, anything on the NMI path or the patching
code itself ends in disaster. The roots are those entry points; everything
they reach by direct calls and jumps (found with capstone) is unsafe too, as
are the NMI callbacks the controller installs or restores; the walk does not
go through functions that never return (the machine is dying there).
"""

from __future__ import annotations

from ..image import CodeReader, Image, Symbol

ROOTS = {
    "do_nmi": "it handles NMIs",  # NMI_ENTRY
    "check_for_xsplice_work": "it is the xSplice rendezvous",
    "reset_stack_and_jump": "it is the xSplice rendezvous",
    "xsplice_mask_nmi_callback": "it is the xSplice NMI mask",
    "default_nmi_callback": "it is the NMI callback",
    "xsplice_reschedule_fn": "it is the xSplice rendezvous",
    "xsplice_reschedule_from_irq_fn": "it is the xSplice rendezvous",
    "text_poke": "it writes code for the patching",
    "arch_livepatch_apply": "it is the patching code",
    "arch_livepatch_revert": "it is the patching code",
    "common_livepatch_apply": "it is the patching code",
    "common_livepatch_revert": "it is the patching code",
    "apply_payload": "it is the patching code",
    "revert_payload": "it is the patching code",
    # Xen 4.17's own names, for a real xen-syms image (`payload check --xen-syms`)
    "check_for_livepatch_work": "it is the livepatch rendezvous",
    "arch_livepatch_quiesce": "it is the patching code",
    "arch_livepatch_revive": "it is the patching code",
    "arch_livepatch_mask": "it is the livepatch NMI mask",
    "arch_livepatch_unmask": "it is the livepatch NMI mask",
}


NMI_ENTRY = "do_nmi"

NEVER_RETURN = frozenset({"panic", "fatal_trap"})
"""What only these reach runs while the machine dies (Xen's do_nmi -> fatal_trap -> show_execution_state ->
print_xen_info -> xen_extra_version): not on the NMI path a patch can tear, so the walk stops at them."""


def on_nmi_path(why: str) -> bool:
    """Whether an unsafe function is so because NMIs run it (do_nmi, or reached from it)."""
    return why in (ROOTS[NMI_ENTRY], _reached_from(NMI_ENTRY))


def _reached_from(root: str) -> str:
    return f"it is reached from {root}"


def unsafe_functions(image: Image, read: CodeReader) -> dict[int, str]:
    """Address of every unsafe function -> why (`reached from do_nmi`, ...)."""
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
            for callee in _direct_callees(image, read, func):
                if callee.name not in NEVER_RETURN:
                    stack.append((callee, _reached_from(root)))
    return unsafe


def _direct_callees(image: Image, read: CodeReader, func: Symbol):
    """The functions `func` calls or jumps to directly (not into itself)."""
    code = read(func.address, func.size) if func.size else None
    if not code:
        return
    for target in image.arch.direct_branch_targets(code, func.address):
        found = image.function_at(target)
        if found and found[1] == 0 and found[0].address != func.address:
            yield found[0]
