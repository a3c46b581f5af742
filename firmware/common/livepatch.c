/*
 * Xen's common livepatch helpers a payload's hooks call (xen/common/livepatch.c):
 * patch each function once and mark it, or the whole payload. The
 * payload's own state (applied list, CHECKED/APPLIED) belongs to the
 * controller: a *_tail call leaves a note in the descriptor it reads back.
 */
#include <xen/lib.h>
#include <xen/livepatch.h>

__hook void common_livepatch_apply(const struct livepatch_func *func, struct livepatch_fstate *state)
{
    if ( state->applied == LIVEPATCH_FUNC_APPLIED )
    {
        printk("livepatch: %s has been already applied before\n", func->name);
        return;
    }
    arch_livepatch_apply(func, state);
    state->applied = LIVEPATCH_FUNC_APPLIED;
}

__hook void common_livepatch_revert(const struct livepatch_func *func, struct livepatch_fstate *state)
{
    if ( state->applied != LIVEPATCH_FUNC_APPLIED )
    {
        printk("livepatch: %s has not been applied before\n", func->name);
        return;
    }
    arch_livepatch_revert(func, state);
    state->applied = LIVEPATCH_FUNC_NOT_APPLIED;
}

__hook int apply_payload(struct payload *data)
{
    unsigned int i;

    printk("livepatch: %s: Applying %u functions\n", data->name, data->nfuncs);
    for ( i = 0; i < data->n_load_funcs; i++ )
        data->load_funcs[i]();
    for ( i = 0; i < data->nfuncs; i++ )
        common_livepatch_apply(&data->funcs[i], &data->fstate[i]);
    return 0;
}

__hook void apply_payload_tail(struct payload *data)
{
    data->tail = LIVEPATCH_TAIL_APPLIED;
}

__hook int revert_payload(struct payload *data)
{
    unsigned int i;

    printk("livepatch: %s: Reverting\n", data->name);
    for ( i = 0; i < data->nfuncs; i++ )
        common_livepatch_revert(&data->funcs[i], &data->fstate[i]);
    for ( i = 0; i < data->n_unload_funcs; i++ )
        data->unload_funcs[i]();
    return 0;
}

__hook void revert_payload_tail(struct payload *data)
{
    data->tail = LIVEPATCH_TAIL_REVERTED;
}
