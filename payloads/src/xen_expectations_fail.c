/*
 * xen_expectations_fail: the same patch with an expectation that can never
 * match (Xen's bytes: no function starts with them): -EINVAL.
 */
#include <xsplice_payload.h>

static const char livepatch_expectations_str[] = "xen_extra_version";

const char *xen_expectations_world(void)
{
    return "Hello World";
}

LIVEPATCH_FUNC(livepatch_expectations_fail) = {
    .version = LIVEPATCH_PAYLOAD_VERSION,
    .name = livepatch_expectations_str,
    .new_addr = xen_expectations_world,
    .old_addr = xen_extra_version,
    .new_size = XSPLICE_NEW_SIZE(xen_expectations_world),
    .old_size = XSPLICE_OLD_SIZE(xen_extra_version),
    .expect = {
        .enabled = 1,
        .len = 6,
        .data = { 0xDE, 0xAD, 0xC0, 0xDE, 0xBA, 0xBE },
    },
};
