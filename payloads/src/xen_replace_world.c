/*
 * xen_replace_world: xen_extra_version() returns "Hello Again World!".
 * old_addr is 0: the loader looks the function up by name. Used with
 * REPLACE, which reverts every applied payload first.
 */
#include <xsplice_payload.h>

static const char xen_replace_world_name[] = "xen_extra_version";

const char *xen_replace_world(void)
{
    return "Hello Again World!";
}

LIVEPATCH_FUNC(livepatch_xen_replace_world) = {
    .version = LIVEPATCH_PAYLOAD_VERSION,
    .name = xen_replace_world_name,
    .old_addr = 0,              /* forces the lookup of .name */
    .new_addr = xen_replace_world,
    .new_size = XSPLICE_NEW_SIZE(xen_replace_world),
    .old_size = XSPLICE_OLD_SIZE(xen_extra_version),
};
