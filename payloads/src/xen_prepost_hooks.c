/*
 * xen_prepost_hooks: xen_extra_version() returns "Hello World", with a
 * pre- and a post- hook around apply and revert. As in Xen, the pre-revert
 * hook vetoes the first revert (returns -1) and allows the second.
 * Each hook counts its calls in .data and prints, so the order shows on
 * the console.
 */
#include <xsplice_payload.h>

static const char hello_world_patch_this_fnc[] = "xen_extra_version";

unsigned int pre_apply_cnt __payload_data;
unsigned int post_apply_cnt __payload_data;
unsigned int pre_revert_cnt __payload_data;
unsigned int post_revert_cnt __payload_data;
static int pre_revert_retry __payload_data = 1;

const char *xen_hello_world(void)
{
    return "Hello World";
}

static int pre_apply_hook(livepatch_payload_t *payload)
{
    printk("xen_prepost_hooks: pre_apply_hook (call %u)\n", ++pre_apply_cnt);
    return 0;
}

static void post_apply_hook(livepatch_payload_t *payload)
{
    printk("xen_prepost_hooks: post_apply_hook (call %u)\n", ++post_apply_cnt);
}

static int pre_revert_hook(livepatch_payload_t *payload)
{
    printk("xen_prepost_hooks: pre_revert_hook (call %u)\n", ++pre_revert_cnt);
    /* The first revert attempt fails, the second succeeds. */
    return -(pre_revert_retry--);
}

static void post_revert_hook(livepatch_payload_t *payload)
{
    printk("xen_prepost_hooks: post_revert_hook (call %u)\n", ++post_revert_cnt);
}

LIVEPATCH_PREAPPLY_HOOK(pre_apply_hook);
LIVEPATCH_POSTAPPLY_HOOK(post_apply_hook);
LIVEPATCH_PREREVERT_HOOK(pre_revert_hook);
LIVEPATCH_POSTREVERT_HOOK(post_revert_hook);

LIVEPATCH_FUNC(livepatch_prepost_hooks) = {
    .version = LIVEPATCH_PAYLOAD_VERSION,
    .name = hello_world_patch_this_fnc,
    .new_addr = xen_hello_world,
    .old_addr = xen_extra_version,
    .new_size = XSPLICE_NEW_SIZE(xen_hello_world),
    .old_size = XSPLICE_OLD_SIZE(xen_extra_version),
};
