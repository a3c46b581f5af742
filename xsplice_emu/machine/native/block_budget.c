/*
 * Deterministic preemption for Unicorn vCPUs, in C so that no Python runs
 * on the hot path.
 *
 * on_block() is registered as a UC_HOOK_BLOCK callback on every vCPU.  It
 * counts the instructions of each block it enters (looked up in a table
 * shared by all vCPUs of one machine, filled by capstone on a miss) and calls
 * uc_emu_stop() when the next block would exceed the slice's budget, so a
 * slice ends on a block boundary after at most `budget` instructions.
 * run_slice() starts a slice and reads the program counter after it: one
 * call from Python instead of two through the binding.
 *
 * A stop asked for during a slice (by on_block, or by the host from a hook
 * through stop_pending) ends the counting: a block hook Unicorn still calls
 * after it (a chained jump reaching the next block) is for a block that does
 * not run, and counting it would make where a slice ends depend on which
 * blocks happen to be chained, that is on what ran before.
 *
 * A machine may also name trap addresses (sorted): a block holding one stops
 * the slice before it runs (trap_address/trap_size say which), so the host
 * can hook those instructions, drop the block's translation and go on.
 */
#include <stdlib.h>
#include <string.h>

#include "block_budget.h"

struct block_entry {
    uint64_t address; /* 0: empty slot */
    uint32_t size;
    uint32_t insns; /* with TRAP when the block holds a trap address */
};

#define TRAP 0x80000000u

/* Guest addresses [guest_base, guest_base + guest_size) are host bytes at host_base. */
struct code_range {
    const uint8_t *host_base;
    uint64_t guest_base;
    uint64_t guest_size;
};

#define MAX_RANGES 4

struct block_table {
    struct block_entry *slots;
    size_t capacity; /* a power of two */
    size_t used;
    struct code_range ranges[MAX_RANGES];
    size_t nr_ranges;
    size_t cs_handle;
    disasm_fn disasm;
    free_insn_fn free_insn;
    const uint64_t *traps; /* sorted; owned by the caller */
    size_t nr_traps;
};

static void stop(void *uc, struct vcpu_budget *v)
{
    v->stop_pending = 1;
    v->emu_stop(uc);
}

static size_t slot_of(const struct block_table *t, uint64_t address, uint32_t size)
{
    uint64_t h = (address ^ ((uint64_t)size << 48)) * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 17) & (t->capacity - 1);
}

static uint32_t holds_trap(const struct block_table *t, uint64_t address, uint32_t size)
{
    size_t low = 0, high = t->nr_traps;
    while (low < high) { /* the first trap at or after address */
        size_t middle = low + (high - low) / 2;
        if (t->traps[middle] < address)
            low = middle + 1;
        else
            high = middle;
    }
    return low < t->nr_traps && t->traps[low] < address + size;
}

static void insert(struct block_table *t, uint64_t address, uint32_t size, uint32_t insns)
{
    size_t i = slot_of(t, address, size);
    while (t->slots[i].address)
        i = (i + 1) & (t->capacity - 1);
    t->slots[i].address = address;
    t->slots[i].size = size;
    t->slots[i].insns = insns | (holds_trap(t, address, size) ? TRAP : 0);
    t->used++;
}

static int rehash(struct block_table *t, size_t capacity, uint64_t drop_begin, uint64_t drop_end)
{
    struct block_entry *old = t->slots;
    size_t old_capacity = t->capacity;
    struct block_entry *fresh = calloc(capacity, sizeof(*fresh));
    if (!fresh)
        return -1;
    t->slots = fresh;
    t->capacity = capacity;
    t->used = 0;
    for (size_t i = 0; i < old_capacity; i++) {
        struct block_entry *e = &old[i];
        if (!e->address)
            continue;
        if (e->address < drop_end && e->address + e->size > drop_begin)
            continue;
        insert(t, e->address, e->size, e->insns & ~TRAP);
    }
    free(old);
    return 0;
}

static uint32_t count_insns(struct block_table *t, uint64_t address, uint32_t size)
{
    for (size_t r = 0; r < t->nr_ranges; r++) {
        const struct code_range *c = &t->ranges[r];
        void *insn = NULL;
        size_t n;
        if (address < c->guest_base || address + size > c->guest_base + c->guest_size)
            continue;
        n = t->disasm(t->cs_handle, c->host_base + (address - c->guest_base), size, address, 0, &insn);
        if (insn)
            t->free_insn(insn, n);
        return n ? (uint32_t)n : 1;
    }
    return 1;
}

/* The block's instruction count, with TRAP when it holds a trap address. */
static uint32_t lookup(struct block_table *t, uint64_t address, uint32_t size)
{
    size_t i = slot_of(t, address, size);
    uint32_t insns;
    for (;;) {
        struct block_entry *e = &t->slots[i];
        if (!e->address)
            break;
        if (e->address == address && e->size == size)
            return e->insns;
        i = (i + 1) & (t->capacity - 1);
    }
    insns = count_insns(t, address, size);
    if ((t->used + 1) * 2 <= t->capacity || !rehash(t, t->capacity * 2, 0, 0))
        insert(t, address, size, insns);
    return insns | (holds_trap(t, address, size) ? TRAP : 0);
}

struct block_table *block_table_new(const uint8_t *host_base, uint64_t guest_base,
                                    uint64_t guest_size, size_t cs_handle,
                                    disasm_fn disasm, free_insn_fn free_insn)
{
    struct block_table *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->capacity = 4096;
    t->slots = calloc(t->capacity, sizeof(*t->slots));
    if (!t->slots) {
        free(t);
        return NULL;
    }
    t->ranges[0] = (struct code_range){host_base, guest_base, guest_size};
    t->nr_ranges = 1;
    t->cs_handle = cs_handle;
    t->disasm = disasm;
    t->free_insn = free_insn;
    return t;
}

/* Blocks in [guest_base, guest_base + guest_size) are counted from host_base too; -1 when full. */
int block_table_add_range(struct block_table *t, const uint8_t *host_base, uint64_t guest_base,
                          uint64_t guest_size)
{
    if (t->nr_ranges == MAX_RANGES)
        return -1;
    t->ranges[t->nr_ranges++] = (struct code_range){host_base, guest_base, guest_size};
    return 0;
}

/* Forget every block overlapping [begin, end): its code was rewritten. */
int block_table_forget(struct block_table *t, uint64_t begin, uint64_t end)
{
    return rehash(t, t->capacity, begin, end);
}

/* From now on a block holding one of traps[0..n) (sorted; kept alive by the caller) stops a slice before it
 * runs. The traps may only shrink (a block counted already may lose its trap, never gain one). */
void block_table_set_traps(struct block_table *t, const uint64_t *traps, size_t n)
{
    t->traps = traps;
    t->nr_traps = n;
    for (size_t i = 0; i < t->capacity; i++) {
        struct block_entry *e = &t->slots[i];
        if (e->address && (e->insns & TRAP) && !holds_trap(t, e->address, e->size))
            e->insns &= ~TRAP;
    }
}

void block_table_free(struct block_table *t)
{
    if (!t)
        return;
    free(t->slots);
    free(t);
}

/* What on_block does in every case but its common one (below). */
static __attribute__((noinline)) void on_block_slow(void *uc, uint64_t address, uint32_t size, struct vcpu_budget *v)
{
    uint32_t insns;
    if (v->stop_pending)
        return;
    if (v->nr_watches) {
        if (address == v->skip_address) {
            v->skip_address = 0;
        } else {
            for (uint64_t i = 0; i < v->nr_watches && i < MAX_WATCHES; i++) {
                if (address < v->watch_end[i] && address + (size ? size : 1) > v->watch_begin[i]) {
                    v->hit_address = address;
                    v->hit_size = size ? size : 1;
                    stop(uc, v);
                    return;
                }
            }
        }
    }
    insns = lookup(v->table, address, size ? size : 1);
    if (insns & TRAP) {
        v->trap_address = address;
        v->trap_size = size ? size : 1;
        stop(uc, v);
        return;
    }
    if (v->executed && v->executed + insns > v->budget) {
        v->stopped = 1;
        stop(uc, v);
        return;
    }
    v->executed += insns;
}

/* The common case here, in a few instructions and no stack frame (Unicorn calls this before every block a vCPU
 * runs): a block counted before, found at its own slot, holding no trap, that fits the budget. */
void on_block(void *uc, uint64_t address, uint32_t size, void *user)
{
    struct vcpu_budget *v = user;
    const struct block_table *t = v->table;
    const struct block_entry *e = &t->slots[slot_of(t, address, size)];
    uint64_t executed = v->executed;
    if (__builtin_expect(!(v->stop_pending | v->nr_watches) && e->address == address && e->size == size &&
                         !(e->insns & TRAP) && executed + e->insns <= v->budget, 1)) {
        v->executed = executed + e->insns;
        return;
    }
    on_block_slow(uc, address, size, v);
}

/* Run a slice of at most `budget` instructions from `begin`: uc_emu_start's status; v->pc is where it stopped and
 * v->flags the flags it stopped with. The instance has exit addresses on and none set, so emu_start's `until`
 * (0 here) is ignored: the budget hook ends the slice. */
int run_slice(struct vcpu_budget *v, uint64_t begin, uint64_t budget)
{
    int status;
    v->budget = budget;
    v->stopped = 0;
    v->stop_pending = 0;
    v->host_ran = 0;
    status = v->emu_start(v->uc, begin, 0, 0, 0);
    v->reg_read(v->uc, (int)v->pc_register, &v->pc);
    v->reg_read(v->uc, (int)v->flags_register, &v->flags);
    return status;
}

/* A UC_HOOK_CODE callback at a two-byte `rdtsc`: edx:eax = the TSC, the vCPU's virtual time in instructions
 * (the blocks counted so far this slice included), and the vCPU goes on after the instruction. */
void on_rdtsc(void *uc, uint64_t address, uint32_t size, void *user)
{
    struct vcpu_budget *v = user;
    uint64_t tsc = (v->clock_ps + v->executed * v->ps_per_instruction) / v->ps_per_instruction;
    uint64_t low = tsc & 0xffffffffu, high = tsc >> 32, next = address + 2;
    (void)size;
    v->reg_write(uc, v->rax, &low);
    v->reg_write(uc, v->rdx, &high);
    v->reg_write(uc, v->rip, &next);
}

/* A UC_HOOK_MEM_FETCH_PROT callback that handles nothing (the fetch faults as with no hook). Registered over
 * read-only code, its presence alone makes Unicorn skip, for each block it translates there, a scan of the whole
 * TLB that arms its self-modifying-code check: code that is never written through its own addresses needs none. */
bool never_handled(void *uc, int type, uint64_t address, int size, int64_t value, void *user)
{
    (void)uc, (void)type, (void)address, (void)size, (void)value, (void)user;
    return false;
}
