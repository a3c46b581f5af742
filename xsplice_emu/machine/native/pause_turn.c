/*
 * The xen engine's spin-waits (engines/xen/spins.py), in C where they run per turn.
 *
 * on_pause() is the first half of the sleep check: at the `pause` of a pure loop a vCPU's turn is the pause, the
 * slice under way and the values of the registers the loop writes. The hook keeps the vCPU's last turn and calls
 * the host's Python hook (which stops the vCPU there to sleep) only when a turn repeats the last one; a turn that
 * does not, runs no Python.
 *
 * probe_turn() tells whether a sleeping vCPU would still spin on memory as it is now: it runs one turn of the
 * loop from the pause and puts the vCPU back as it was. A pure loop stores nothing, and the turn is kept inside
 * the loop's code (a block starting outside it stops the turn before it runs), so putting back the registers the
 * loop writes, the flags, the program counter and the slice state undoes it. Then a store that changes what many
 * vCPUs spin on (a ticket lock's head) wakes only those whose loop would leave, not every one for a slice of its
 * own.
 */
#include <stdint.h>
#include <string.h>

#include "block_budget.h"

#define PAUSE_REGISTERS 16
#define PROBE_BUDGET 64 /* instructions: two turns of the longest loop (LOOP_REACH in x86_64_pause_loops.py) */

typedef void (*code_fn)(void *uc, uint64_t address, uint32_t size, void *user);

/* A pure loop: the address of its pause, the registers it writes (Unicorn ids), and the code it spans when that
 * is all loop (begin == end: not probed). */
struct spin_loop {
    uint64_t pause;
    uint64_t nr_written;
    int32_t written[PAUSE_REGISTERS];
    uint64_t begin, end;
};

/* Shared with Python (PauseTurn in __init__.py, same layout): one per vCPU. */
struct pause_turn {
    code_fn host_paused;            /* the host's UC_HOOK_CODE callback: the turn repeated */
    struct vcpu_budget *budget;     /* the vCPU's */
    const uint64_t *slice;          /* numbers the slice under way */
    const struct spin_loop *loops;  /* sorted by pause */
    uint64_t nr_loops;
    uint64_t probing;               /* 1 while probe_turn() runs: a repeated turn stops there */
    uint64_t repeated;
    uint64_t pause;                 /* the last turn (pause 0: none) */
    uint64_t last_slice;
    uint64_t values[PAUSE_REGISTERS];
};

static const struct spin_loop *loop_at(const struct pause_turn *t, uint64_t pause)
{
    uint64_t low = 0, high = t->nr_loops;
    while (low < high) {
        uint64_t middle = low + (high - low) / 2;
        if (t->loops[middle].pause < pause)
            low = middle + 1;
        else
            high = middle;
    }
    return low < t->nr_loops && t->loops[low].pause == pause ? &t->loops[low] : NULL;
}

static void read_written(void *uc, const struct pause_turn *t, const struct spin_loop *loop, uint64_t *values)
{
    memset(values, 0, PAUSE_REGISTERS * sizeof values[0]);
    for (uint64_t i = 0; i < loop->nr_written; i++)
        t->budget->reg_read(uc, loop->written[i], &values[i]);
}

/* A UC_HOOK_CODE callback at a pure loop's pause, with a struct pause_turn as its user data. */
void on_pause(void *uc, uint64_t address, uint32_t size, void *user)
{
    struct pause_turn *t = user;
    const struct spin_loop *loop = loop_at(t, address);
    uint64_t values[PAUSE_REGISTERS];
    if (loop == NULL)
        return;
    read_written(uc, t, loop, values);
    if (t->pause == address && t->last_slice == *t->slice && memcmp(t->values, values, sizeof values) == 0) {
        if (t->probing) {
            t->repeated = 1;
            t->budget->stop_pending = 1;
            t->budget->emu_stop(uc);
        } else {
            t->host_paused(uc, address, size, NULL);
        }
        return;
    }
    t->pause = address;
    t->last_slice = *t->slice;
    memcpy(t->values, values, sizeof values);
}

/* Whether the vCPU of `t`, stopped at the pause of a pure loop, would come round to it again with the registers
 * the loop writes unchanged, on memory as it is now (1), or leave the loop (0, also when the turn cannot tell:
 * no such loop, a loop not all in one span, a turn that runs out of budget); -1 when a host hook ran in the turn,
 * which a pure loop never calls (what the host did then is not undone). The vCPU is left as it was. */
int probe_turn(struct pause_turn *t, uint64_t pause)
{
    struct vcpu_budget *v = t->budget;
    struct vcpu_budget saved = *v;
    const struct spin_loop *loop = loop_at(t, pause);
    uint64_t values[PAUSE_REGISTERS], flags;
    int repeated;
    if (loop == NULL || loop->begin == loop->end)
        return 0;
    read_written(v->uc, t, loop, values);
    v->reg_read(v->uc, (int)v->flags_register, &flags);
    v->nr_watches = 2;
    v->watch_begin[0] = 0, v->watch_end[0] = loop->begin;
    v->watch_begin[1] = loop->end, v->watch_end[1] = UINT64_MAX;
    v->skip_address = 0;
    v->executed = 0;
    t->probing = 1, t->repeated = 0, t->pause = 0;
    run_slice(v, pause, PROBE_BUDGET);
    repeated = v->host_ran ? -1 : (int)t->repeated;
    t->probing = 0, t->pause = 0;
    for (uint64_t i = 0; i < loop->nr_written; i++)
        v->reg_write(v->uc, loop->written[i], &values[i]);
    v->reg_write(v->uc, (int)v->flags_register, &flags);
    v->reg_write(v->uc, (int)v->pc_register, &pause);
    *v = saved;
    return repeated;
}
