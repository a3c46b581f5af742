/*
 * xen_expectations: patches xen_extra_version with an expectation of its
 * first bytes exactly as they are in the firmware this payload is built
 * against (read from that ELF at build time, like Xen's expect_config.h).
 */
#include <xsplice_payload.h>

static const char livepatch_expectations_str[] = "xen_extra_version";

const char *xen_expectations_world(void)
{
    return "Hello World";
}

LIVEPATCH_FUNC(livepatch_expectations) = {
    .version = LIVEPATCH_PAYLOAD_VERSION,
    .name = livepatch_expectations_str,
    .new_addr = xen_expectations_world,
    .old_addr = xen_extra_version,
    .new_size = XSPLICE_NEW_SIZE(xen_expectations_world),
    .old_size = XSPLICE_OLD_SIZE(xen_extra_version),
    .expect = XSPLICE_EXPECT_AS_BUILT(xen_extra_version),
};
