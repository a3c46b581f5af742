/*
 * wx_section: the new function and a variable share a section that is both
 * writable and executable (.text.wx, "awx"): -EOPNOTSUPP.
 */
#include <xsplice_payload.h>

unsigned int wx_major_version(void);

__asm__ (
    "   .pushsection .text.wx, \"awx\", @progbits\n"
    "   .globl wx_major_version\n"
    "   .type wx_major_version, @function\n"
    "wx_major_version:\n"
    "   movl wx_counter(%rip), %eax\n"
    "   ret\n"
    "   .size wx_major_version, . - wx_major_version\n"
    "wx_counter:\n"
    "   .long 5\n"
    "   .popsection\n");

LIVEPATCH_FUNC(livepatch_wx_section) = {
    .version = LIVEPATCH_PAYLOAD_VERSION,
    .name = "xen_major_version",
    .new_addr = wx_major_version,
    .old_addr = xen_major_version,
    .new_size = XSPLICE_NEW_SIZE(wx_major_version),
    .old_size = XSPLICE_OLD_SIZE(xen_major_version),
};
