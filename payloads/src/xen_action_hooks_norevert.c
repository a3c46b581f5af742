/*
 * xen_action_hooks_norevert: the built-in apply action runs (no apply
 * hook), but the revert hook replaces the revert and fails with -EINVAL,
 * so the payload stays applied. Pre/post hooks count and print around it.
 */
#include <xsplice_payload.h>

static const char hello_world_patch_this_fnc[] = "xen_extra_version";

unsigned int pre_apply_cnt __payload_data;
unsigned int post_apply_cnt __payload_data;
unsigned int pre_revert_cnt __payload_data;
unsigned int revert_cnt __payload_data;
unsigned int post_revert_cnt __payload_data;

const char *xen_hello_world(void)
{
    return "Hello World";
}

static int pre_apply_hook(void *payload)
{
    printk("xen_action_hooks_norevert: pre_apply_hook (call %u)\n", ++pre_apply_cnt);
    return 0;
}

static int post_apply_hook(void *payload)
{
    printk("xen_action_hooks_norevert: post_apply_hook (call %u)\n", ++post_apply_cnt);
    return 0;
}

static int pre_revert_hook(void *payload)
{
    printk("xen_action_hooks_norevert: pre_revert_hook (call %u)\n", ++pre_revert_cnt);
    return 0;
}

static int revert_hook(void *payload)
{
    printk("xen_action_hooks_norevert: revert_hook (call %u): -EINVAL\n", ++revert_cnt);
    return -EINVAL;             /* mark the action as inconsistent */
}

static int post_revert_hook(void *payload)
{
    printk("xen_action_hooks_norevert: post_revert_hook (call %u)\n", ++post_revert_cnt);
    return 0;
}

LIVEPATCH_REVERT_HOOK(revert_hook);
LIVEPATCH_PREAPPLY_HOOK(pre_apply_hook);
LIVEPATCH_POSTAPPLY_HOOK(post_apply_hook);
LIVEPATCH_PREREVERT_HOOK(pre_revert_hook);
LIVEPATCH_POSTREVERT_HOOK(post_revert_hook);

LIVEPATCH_FUNC(livepatch_action_hooks_norevert) = {
    .version = LIVEPATCH_PAYLOAD_VERSION,
    .name = hello_world_patch_this_fnc,
    .new_addr = xen_hello_world,
    .old_addr = xen_extra_version,
    .new_size = XSPLICE_NEW_SIZE(xen_hello_world),
    .old_size = XSPLICE_OLD_SIZE(xen_extra_version),
};
