/*
 * The machine's slice loop for quiet vCPUs, in C: the same choices the
 * Python loop (runner.py, core.py's _step, scheduler.py) makes, without
 * Python between slices.
 *
 * The ready queue is three arrays indexed by vCPU (time, seeded tie-break,
 * queued), which the Python scheduler keeps too; the next vCPU is the
 * queued one with the least (time, tie, index), as Python's heap of them
 * gives it. The seeded draws come from
 * a buffer of the scheduler's generator's 32-bit outputs, taken in the order
 * Python's random.Random takes them (random(): two words, getrandbits(20):
 * one), so a slice drawn here is the one Python would draw.
 *
 * A vCPU is quiet when the host found it running with nothing pending
 * (slice_loop.quiet); the loop then runs its slices and queues it again
 * itself while no interrupt falls due, and hands back to the host whatever
 * else is next: an alarm, the end of the run, a vCPU not known quiet, a
 * slice that did more than use up its budget (a Python hook ran, a fault, a
 * trap, a watch, a halt: LOOP_FINISH, the host finishes that slice).
 */
#include "block_budget.h"

/* The scheduler's generator's outputs drawn and not yet taken: words[next_word..nr_words). */
struct draws {
    const uint32_t *words;
    int64_t nr_words;
    int64_t next_word;
};

struct ready_queue {
    uint64_t nr_vcpus;
    int64_t *time;
    int64_t *tie;
    int64_t *queued;
};

/* The queued vCPU with the least (time, tie, index), or -1. */
static int64_t ready_first(const struct ready_queue *r)
{
    int64_t best = -1;
    for (uint64_t i = 0; i < r->nr_vcpus; i++) {
        if (!r->queued[i])
            continue;
        if (best < 0 || r->time[i] < r->time[best] || (r->time[i] == r->time[best] && r->tie[i] < r->tie[best]))
            best = (int64_t)i;
    }
    return best;
}

enum { LOOP_HOST = 0, LOOP_FINISH = 1 };

/* Shared with Python (SliceLoop in __init__.py, same layout). Times in ps; INT64_MAX: never. */
struct slice_loop {
    struct ready_queue *ready;
    struct vcpu_budget **budgets; /* per vCPU; clock_ps and pc are its clock and program counter meanwhile */
    int64_t *quiet;               /* 1: the host found it running with nothing pending, and nothing ran since */
    int64_t *arrival;             /* when its next interrupt arrives, as the host found it */
    int64_t *executed;            /* instructions it ran here since the host last took them */
    int64_t *requeued;            /* times it was queued again here (the scheduler's generation) */
    int64_t *touched;             /* the vCPUs run here since the host last took them... */
    int64_t nr_touched;           /* ...and how many */
    struct draws *draws;          /* the scheduler's; a Python hook may take draws (and ends the loop) */
    uint64_t *clock_page;         /* each vCPU's clock (ns) at the start of its slice, for the guest */
    int64_t until_ps;
    int64_t next_alarm_ps;
    int64_t next_wake_ps;         /* of the sleeper next to wake, wake_owner (-1: none): queuing it ends the loop */
    int64_t wake_owner;
    int64_t now_ps;
    int64_t slice_min;
    int64_t slice_span;
    int64_t ps_per_ns;
    /* Out: the vCPU not known quiet that is next (-1: none), or the one whose slice of `budget` instructions
     * the host finishes (LOOP_FINISH), with run_slice's status. */
    int64_t index;
    int64_t budget;
    int64_t status;
};

static int64_t earliest(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/* Python's random(): 53 bits from two words. */
static double draw_unit(struct draws *d)
{
    uint32_t high = d->words[d->next_word++] >> 5, low = d->words[d->next_word++] >> 6;
    return (high * 67108864.0 + low) * (1.0 / 9007199254740992.0);
}

/* Run quiet vCPUs' slices until the host must take the next step: LOOP_HOST (nothing left half done) or
 * LOOP_FINISH. */
int64_t run_quiet_slices(struct slice_loop *l)
{
    struct ready_queue *r = l->ready;
    struct draws *d = l->draws;
    l->index = -1;
    for (;;) {
        int64_t i = ready_first(r), clock, horizon, budget, ran, ps_per_instruction;
        int64_t ready_ps = i < 0 ? INT64_MAX : r->time[i];
        struct vcpu_budget *v;
        int status;
        if (l->next_alarm_ps <= ready_ps || ready_ps >= l->until_ps)
            return LOOP_HOST; /* an alarm, or the end of the run */
        v = l->budgets[i];
        if (!l->quiet[i]) {
            l->index = i;
            return LOOP_HOST;
        }
        clock = (int64_t)v->clock_ps;
        if (l->arrival[i] <= clock) {
            l->quiet[i] = 0; /* an interrupt falls due: the host latches it */
            return LOOP_HOST;
        }
        if (d->nr_words - d->next_word < 3)
            return LOOP_HOST; /* draws to take from the generator first */
        r->queued[i] = 0;
        if (ready_ps > l->now_ps)
            l->now_ps = ready_ps;
        if (!l->executed[i] && !l->requeued[i])
            l->touched[l->nr_touched++] = i;
        budget = l->slice_min + (int64_t)(draw_unit(d) * (double)l->slice_span);
        ps_per_instruction = (int64_t)v->ps_per_instruction;
        horizon = earliest(earliest(l->until_ps, l->arrival[i]), earliest(l->next_wake_ps, l->next_alarm_ps)) - clock;
        if (horizon < budget * ps_per_instruction)
            budget = horizon <= 0 ? 1 : (horizon + ps_per_instruction - 1) / ps_per_instruction;
        l->clock_page[i] = (uint64_t)clock / (uint64_t)l->ps_per_ns;
        v->executed = 0;
        v->trap_size = 0;
        v->in_loop = 1;
        status = run_slice(v, v->pc, (uint64_t)budget);
        v->in_loop = 0;
        if (status || v->trap_size || v->host_ran || v->hit_size || !v->stopped) {
            l->index = i;
            l->budget = budget;
            l->status = status;
            return LOOP_FINISH;
        }
        ran = (int64_t)v->executed;
        v->executed = 0;
        v->clock_ps = (uint64_t)(clock + ran * ps_per_instruction);
        l->executed[i] += ran;
        l->requeued[i]++;
        r->time[i] = (int64_t)v->clock_ps;
        r->tie[i] = d->words[d->next_word++] >> 12;
        r->queued[i] = 1;
        if (i == l->wake_owner)
            return LOOP_HOST; /* its sleeper entry is stale now: the host finds the next one */
    }
}
