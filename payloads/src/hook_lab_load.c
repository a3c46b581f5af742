/*
 * hook_lab_load: pre-, post-, load and unload hooks that do what the host
 * chose (hook_lab.h); the hypervisor patches xen_extra_version itself.
 */
#include "hook_lab.h"

static void load_hook(void) { misbehave(LOAD); }
static void unload_hook(void) { misbehave(UNLOAD); }

LIVEPATCH_LOAD_HOOK(load_hook);
LIVEPATCH_UNLOAD_HOOK(unload_hook);

LIVEPATCH_FUNC(livepatch_hook_lab_load) = {
    .version = LIVEPATCH_PAYLOAD_VERSION,
    .name = hook_lab_patch_this_fnc,
    .new_addr = hook_lab_extra,
    .old_addr = xen_extra_version,
    .new_size = XSPLICE_NEW_SIZE(hook_lab_extra),
    .old_size = XSPLICE_OLD_SIZE(xen_extra_version),
};
