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

HOOK_LAB_RECORD(livepatch_hook_lab_actions);
