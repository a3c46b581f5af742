/*
 * xen_action_hooks: apply and revert hooks that REPLACE the built-in
 * action. Here they only count and return 0, so applying this payload
 * leaves xen_extra_version() unpatched (Xen's hooks mark the functions
 * applied by hand; this firmware gives a hook nothing to mark).
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

static int apply_hook(void *payload)
{
    printk("xen_action_hooks: apply_hook (call %u)\n", ++apply_cnt);
    return 0;
}

static int revert_hook(void *payload)
{
    printk("xen_action_hooks: revert_hook (call %u)\n", ++revert_cnt);
    return 0;
}

static int post_revert_hook(void *payload)
{
    printk("xen_action_hooks: post_revert_hook (call %u): applied %u, reverted %u\n",
           ++post_revert_cnt, apply_cnt, revert_cnt);
    return 0;
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
