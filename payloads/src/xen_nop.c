/*
 * xen_nop: NOPs out xen_minor_version except its final `ret`.
 * xen_minor_version is `mov $7,%eax; ret` (5 + 1 bytes): new_addr 0 makes
 * this a NOP patch of new_size bytes, so the function returns whatever
 * %eax held. Nothing writable but the record: safe to revert and re-apply.
 */
#include <xsplice_payload.h>

static const char minor_version_patch_this_fnc[] = "xen_minor_version";

_Static_assert(XSPLICE_OLD_SIZE(xen_minor_version) == 6,
               "xen_minor_version is no longer `mov $7,%eax; ret`");

LIVEPATCH_FUNC(livepatch_nop) = {
    .version = LIVEPATCH_PAYLOAD_VERSION,
    .name = minor_version_patch_this_fnc,
    .new_addr = 0,
    .old_addr = xen_minor_version,
    .new_size = XSPLICE_OLD_SIZE(xen_minor_version) - 1,   /* all but `ret` */
    .old_size = XSPLICE_OLD_SIZE(xen_minor_version),
};
