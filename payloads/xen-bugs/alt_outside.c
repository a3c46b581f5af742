/*
 * alt_outside: a payload with one alternative (.altinstructions) whose
 * original site is not in the payload's own .text but Xen's
 * xen_extra_version. Xen must refuse it at upload (-EINVAL, "Alternative
 * orig ... outside payload text") and leave its text alone (upstream
 * e74360e4ba: before it, the checks could never fail and Xen applied the
 * alternative to its own text). Its polarity is inverted on feature 0, so
 * on a CPU whose features Xen did not probe the replacement (a `ret`)
 * would be written.
 */
#include <xsplice_payload.h>

static const char patch_this_fnc[] = "xen_extra_version";

const char *alt_outside_extra_version(void)
{
    return "Altered";
}

__asm__(".pushsection .altinstructions, \"a\"\n"
        "    .long xen_extra_version - .\n"     /* orig_offset: Xen's text, not ours */
        "    .long .Lalt_outside_repl - .\n"    /* repl_offset */
        "    .word 0x8000\n"                    /* cpuid: ALT_FLAG_NOT | feature 0 */
        "    .byte 1, 1, 0, 0\n"                /* orig_len, repl_len, pad_len, priv */
        ".popsection\n"
        ".pushsection .altinstr_replacement, \"ax\"\n"
        ".Lalt_outside_repl: ret\n"
        ".popsection\n");

LIVEPATCH_FUNC(livepatch_alt_outside) = {
    .version = LIVEPATCH_PAYLOAD_VERSION,
    .name = patch_this_fnc,
    .new_addr = alt_outside_extra_version,
    .old_addr = xen_extra_version,
    .new_size = XSPLICE_NEW_SIZE(alt_outside_extra_version),
    .old_size = XSPLICE_OLD_SIZE(xen_extra_version),
};
