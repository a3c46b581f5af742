/*
 * xen_hello_world_v1: xen_extra_version() returns "Hello World", with a
 * version 1 record in .xsplice.funcs (the seed's payload format).
 */
#include <xsplice_payload.h>

static const char hello_world_patch_this_fnc[] = "xen_extra_version";

const char *xen_hello_world(void)
{
    return "Hello World";
}

XSPLICE_FUNC(xsplice_xen_hello_world) = {
    .version = XSPLICE_PAYLOAD_VERSION,
    .name = hello_world_patch_this_fnc,
    .new_addr = xen_hello_world,
    .old_addr = xen_extra_version,
    .new_size = XSPLICE_NEW_SIZE(xen_hello_world),
    .old_size = XSPLICE_OLD_SIZE(xen_extra_version),
};
