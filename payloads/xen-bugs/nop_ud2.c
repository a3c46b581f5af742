/*
 * nop_ud2: a NOP payload (no new code) on a function Xen 4.17 builds with
 * CET-IBT as `endbr64; ud2; mov $-EIO,%eax; ret`: it NOPs the 2-byte ud2.
 * Like Xen's xen_nop, .new_size counts from the function's start, ENDBR64
 * included; Xen patches past the ENDBR64, so it writes 2 NOPs and the
 * function then returns -EIO (upstream 8a87b9a0fb: before it, the NOPs ran
 * 4 bytes further, over the mov).
 */
#include <xsplice_payload.h>

#define ENDBR64_LEN 4
#define UD2_LEN 2

_Static_assert(XSPLICE_OLD_SIZE(drivers_passthrough_vtd_qinval_c__vtd_flush_context_noop) == 16,
               "vtd_flush_context_noop is no longer `endbr64; ud2; mov $-5,%eax; jmp __x86_return_thunk`");

LIVEPATCH_FUNC(livepatch_nop_ud2) = {
    .version = LIVEPATCH_PAYLOAD_VERSION,
    .name = "drivers/passthrough/vtd/qinval.c#vtd_flush_context_noop",
    .old_addr = 0,              /* looked up by name: a static */
    .new_addr = 0,              /* NOPs */
    .new_size = ENDBR64_LEN + UD2_LEN,
    .old_size = XSPLICE_OLD_SIZE(drivers_passthrough_vtd_qinval_c__vtd_flush_context_noop),
};
