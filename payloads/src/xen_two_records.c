/*
 * xen_two_records: two function records on xen_extra_version, "First" then
 * "Second". Applied, the second record's jump is there ("Second"). Xen
 * reverts records first to last: the first puts the original bytes back,
 * then the second puts back what it overwrote, the first record's jump, so
 * that "First" stays while the payload reads CHECKED (no .data: it may be
 * applied again).
 */
#include <xsplice_payload.h>

static const char two_records_patch_this_fnc[] = "xen_extra_version";

const char *xen_two_records_first(void)
{
    return "First";
}

const char *xen_two_records_second(void)
{
    return "Second";
}

/* One array: two separate objects would be padded apart in the section. */
LIVEPATCH_FUNC(livepatch_xen_two_records[2]) = {
    {
        .version = LIVEPATCH_PAYLOAD_VERSION,
        .name = two_records_patch_this_fnc,
        .new_addr = xen_two_records_first,
        .old_addr = xen_extra_version,
        .new_size = XSPLICE_NEW_SIZE(xen_two_records_first),
        .old_size = XSPLICE_OLD_SIZE(xen_extra_version),
    },
    {
        .version = LIVEPATCH_PAYLOAD_VERSION,
        .name = two_records_patch_this_fnc,
        .new_addr = xen_two_records_second,
        .old_addr = xen_extra_version,
        .new_size = XSPLICE_NEW_SIZE(xen_two_records_second),
        .old_size = XSPLICE_OLD_SIZE(xen_extra_version),
    },
};
