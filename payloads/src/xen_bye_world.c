/*
 * xen_bye_world: xen_extra_version() returns "Bye World!". Built with
 * `--depends xen_hello_world.livepatch`: it applies only on top of it.
 */
#include <xsplice_payload.h>

static const char bye_world_patch_this_fnc[] = "xen_extra_version";

const char *xen_bye_world(void)
{
    return "Bye World!";
}

LIVEPATCH_FUNC(livepatch_xen_bye_world) = {
    .version = LIVEPATCH_PAYLOAD_VERSION,
    .name = bye_world_patch_this_fnc,
    .new_addr = xen_bye_world,
    .old_addr = xen_extra_version,
    .new_size = XSPLICE_NEW_SIZE(xen_bye_world),
    .old_size = XSPLICE_OLD_SIZE(xen_extra_version),
};
