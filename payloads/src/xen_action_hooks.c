/*
 * xen_action_hooks: apply and revert hooks that REPLACE the built-in
 * action. As Xen's, they mark every function applied / not applied in the
 * hypervisor's state and count, but patch nothing: xen_extra_version()
 * stays unpatched. The post-revert hook checks each ran once.
 */
#include <xsplice_payload.h>

static const char hello_world_patch_this_fnc[] = "xen_extra_version";

unsigned int apply_cnt __payload_data;
unsigned int revert_cnt __payload_data;
unsigned int post_revert_cnt __payload_data;

const char *xen_hello_world(void)
{
    return "Hello World";
}

static int apply_hook(livepatch_payload_t *payload)
{
    unsigned int i;

    for ( i = 0; i < payload->nfuncs; i++ )
        payload->fstate[i].applied = LIVEPATCH_FUNC_APPLIED;
    printk("xen_action_hooks: apply_hook (call %u)\n", ++apply_cnt);
    return 0;
}

static int revert_hook(livepatch_payload_t *payload)
{
    unsigned int i;

    for ( i = 0; i < payload->nfuncs; i++ )
        payload->fstate[i].applied = LIVEPATCH_FUNC_NOT_APPLIED;
    printk("xen_action_hooks: revert_hook (call %u)\n", ++revert_cnt);
    return 0;
}

static void post_revert_hook(livepatch_payload_t *payload)
{
    printk("xen_action_hooks: post_revert_hook (call %u): applied %u, reverted %u\n",
           ++post_revert_cnt, apply_cnt, revert_cnt);
    BUG_ON(apply_cnt != 1 || revert_cnt != 1);
}

LIVEPATCH_APPLY_HOOK(apply_hook);
LIVEPATCH_REVERT_HOOK(revert_hook);
LIVEPATCH_POSTREVERT_HOOK(post_revert_hook);

LIVEPATCH_FUNC(livepatch_action_hooks) = {
    .version = LIVEPATCH_PAYLOAD_VERSION,
    .name = hello_world_patch_this_fnc,
    .new_addr = xen_hello_world,
    .old_addr = xen_extra_version,
    .new_size = XSPLICE_NEW_SIZE(xen_hello_world),
    .old_size = XSPLICE_OLD_SIZE(xen_extra_version),
};
