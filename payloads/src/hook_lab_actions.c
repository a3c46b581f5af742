/*
 * hook_lab_actions: pre-, post- and action hooks (apply, revert) that do
 * what the host chose (hook_lab.h); an action hook that behaves patches
 * xen_extra_version with Xen's helpers.
 */
#include "hook_lab.h"

static int apply_hook(livepatch_payload_t *payload)
{
    return misbehave(APPLY) ?: apply_payload(payload);
}

static int revert_hook(livepatch_payload_t *payload)
{
    return misbehave(REVERT) ?: revert_payload(payload);
}

LIVEPATCH_APPLY_HOOK(apply_hook);
LIVEPATCH_REVERT_HOOK(revert_hook);

LIVEPATCH_FUNC(livepatch_hook_lab_actions) = {
    .version = LIVEPATCH_PAYLOAD_VERSION,
    .name = hook_lab_patch_this_fnc,
    .new_addr = hook_lab_extra,
    .old_addr = xen_extra_version,
    .new_size = XSPLICE_NEW_SIZE(hook_lab_extra),
    .old_size = XSPLICE_OLD_SIZE(xen_extra_version),
};
