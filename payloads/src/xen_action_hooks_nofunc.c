/*
 * xen_action_hooks_nofunc: a payload with hooks and no function records
 * (no .livepatch.funcs at all). Xen loads it: the apply and revert hooks
 * are the whole action, and here they only count and report.
 */
#include <xsplice_payload.h>

unsigned int nofunc_apply_cnt __payload_data;
unsigned int nofunc_revert_cnt __payload_data;

static int nofunc_apply_hook(livepatch_payload_t *payload)
{
    printk("xen_action_hooks_nofunc: apply_hook (call %u)\n", ++nofunc_apply_cnt);
    return 0;
}

static int nofunc_revert_hook(livepatch_payload_t *payload)
{
    printk("xen_action_hooks_nofunc: revert_hook (call %u)\n", ++nofunc_revert_cnt);
    return 0;
}

LIVEPATCH_APPLY_HOOK(nofunc_apply_hook);
LIVEPATCH_REVERT_HOOK(nofunc_revert_hook);
