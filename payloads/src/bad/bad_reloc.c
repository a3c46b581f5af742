/*
 * bad_reloc: carries an R_X86_64_PC64 relocation (a 64-bit PC-relative
 * offset, as large-code-model code has), which the loader does not do:
 * -EOPNOTSUPP. (A GOT reference from -fPIC code would not show this: its
 * undefined _GLOBAL_OFFSET_TABLE_ fails symbol resolution first, -ENOENT.)
 */
#include <xsplice_payload.h>

extern const long major_version_offset;

__asm__ (
    "   .pushsection .rodata.bad_reloc, \"a\", @progbits\n"
    "   .balign 8\n"
    "   .globl major_version_offset\n"
    "   .hidden major_version_offset\n"
    "major_version_offset:\n"
    "   .quad xen_major_version - .\n"
    "   .popsection\n");

unsigned int new_xen_major_version(void)
{
    return 4 + (major_version_offset != 0);
}

LIVEPATCH_FUNC(livepatch_bad_reloc) = {
    .version = LIVEPATCH_PAYLOAD_VERSION,
    .name = "xen_major_version",
    .new_addr = new_xen_major_version,
    .old_addr = xen_major_version,
    .new_size = XSPLICE_NEW_SIZE(new_xen_major_version),
    .old_size = XSPLICE_OLD_SIZE(xen_major_version),
};
