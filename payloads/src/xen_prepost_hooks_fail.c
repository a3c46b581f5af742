/*
 * xen_prepost_hooks_fail: the pre-apply hook always returns -EBUSY, which
 * vetoes the apply: nothing is patched and the other hooks never run.
 */
#include <xsplice_payload.h>

static const char prepost_hooks_fail_patch_this_fnc[] = "xen_extra_version";

unsigned int pre_apply_cnt __payload_data;
unsigned int unreachable_cnt __payload_data;

const char *xen_hello_world(void)
{
    return "Hello World";
}

static int pre_apply_hook(livepatch_payload_t *payload)
{
    printk("xen_prepost_hooks_fail: pre_apply_hook (call %u): -EBUSY\n", ++pre_apply_cnt);
    return -EBUSY;
}

static void unreachable_hook(livepatch_payload_t *payload)
{
    printk("xen_prepost_hooks_fail: unreachable hook ran (call %u)\n", ++unreachable_cnt);
}

static int unreachable_pre_hook(livepatch_payload_t *payload)
{
    unreachable_hook(payload);
    return -EINVAL;
}

LIVEPATCH_PREAPPLY_HOOK(pre_apply_hook);
LIVEPATCH_POSTAPPLY_HOOK(unreachable_hook);
LIVEPATCH_PREREVERT_HOOK(unreachable_pre_hook);
LIVEPATCH_POSTREVERT_HOOK(unreachable_hook);

LIVEPATCH_FUNC(livepatch_prepost_hooks_fail) = {
    .version = LIVEPATCH_PAYLOAD_VERSION,
    .name = prepost_hooks_fail_patch_this_fnc,
    .new_addr = xen_hello_world,
    .old_addr = xen_extra_version,
    .new_size = XSPLICE_NEW_SIZE(xen_hello_world),
    .old_size = XSPLICE_OLD_SIZE(xen_extra_version),
};
