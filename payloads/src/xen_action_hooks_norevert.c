/*
 * xen_action_hooks_norevert: the built-in apply runs (no apply hook); the
 * revert hook replaces the revert and fails with -EINVAL, leaving every
 * function applied (so the failed action is consistent). The post-revert
 * hook then reverts by hand, as Xen's does: revert_payload() puts the old
 * bytes back through the text alias, with no rendezvous, and
 * revert_payload_tail() marks the payload reverted. The pre/post hooks
 * check the hypervisor's per-function state and count.
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

static void check_all(livepatch_payload_t *payload, unsigned int state)
{
    unsigned int i;

    for ( i = 0; i < payload->nfuncs; i++ )
        BUG_ON(payload->fstate[i].applied != state);
}

static int pre_apply_hook(livepatch_payload_t *payload)
{
    check_all(payload, LIVEPATCH_FUNC_NOT_APPLIED);
    printk("xen_action_hooks_norevert: pre_apply_hook (call %u)\n", ++pre_apply_cnt);
    return 0;
}

static void post_apply_hook(livepatch_payload_t *payload)
{
    check_all(payload, LIVEPATCH_FUNC_APPLIED);
    printk("xen_action_hooks_norevert: post_apply_hook (call %u)\n", ++post_apply_cnt);
}

static int pre_revert_hook(livepatch_payload_t *payload)
{
    check_all(payload, LIVEPATCH_FUNC_APPLIED);
    printk("xen_action_hooks_norevert: pre_revert_hook (call %u)\n", ++pre_revert_cnt);
    return 0;
}

static int revert_hook(livepatch_payload_t *payload)
{
    printk("xen_action_hooks_norevert: revert_hook (call %u): -EINVAL\n", ++revert_cnt);
    return -EINVAL;             /* mark the action as inconsistent */
}

static void post_revert_hook(livepatch_payload_t *payload)
{
    unsigned long flags;

    printk("xen_action_hooks_norevert: post_revert_hook (call %u): reverting by hand\n", ++post_revert_cnt);
    local_irq_save(flags);
    BUG_ON(revert_payload(payload));
    revert_payload_tail(payload);
    local_irq_restore(flags);
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
