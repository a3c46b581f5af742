/*
 * What block_budget.c shares with the slice loop (slice_loop.c) and with Python (VcpuBudget in __init__.py,
 * of the same layout): a vCPU's slice state, and run_slice().
 */
#ifndef BLOCK_BUDGET_H
#define BLOCK_BUDGET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef int (*emu_stop_fn)(void *uc);
typedef int (*emu_start_fn)(void *uc, uint64_t begin, uint64_t until, uint64_t timeout, size_t count);
typedef int (*reg_read_fn)(void *uc, int regid, void *value);
typedef int (*reg_write_fn)(void *uc, int regid, const void *value);
typedef size_t (*disasm_fn)(size_t handle, const uint8_t *code, size_t size,
                            uint64_t address, size_t count, void **insn);
typedef void (*free_insn_fn)(void *insn, size_t count);

#define MAX_WATCHES 8

/* Shared with Python (ctypes Structure of the same layout). */
struct vcpu_budget {
    struct block_table *table;
    emu_stop_fn emu_stop;
    uint64_t budget;   /* instructions this slice may run */
    uint64_t executed; /* instructions run so far in this slice */
    uint64_t stopped;  /* 1 when the budget ended the slice */
    /* Watched code: a block overlapping [watch_begin[i], watch_end[i]) stops the slice before it runs,
     * with its address and size in hit_address and hit_size (hit_size 0: no hit). A block at
     * skip_address runs once without that check (the one the host has just looked at). */
    uint64_t nr_watches;
    uint64_t watch_begin[MAX_WATCHES];
    uint64_t watch_end[MAX_WATCHES];
    uint64_t hit_address;
    uint64_t hit_size;
    uint64_t skip_address;
    /* What run_slice() needs: the instance, libunicorn's functions, the program counter's register id, and
     * where it leaves the program counter. */
    void *uc;
    emu_start_fn emu_start;
    reg_read_fn reg_read;
    uint64_t pc_register;
    uint64_t pc;
    /* A block holding a trap address stopped the slice before it ran (trap_size 0: none). */
    uint64_t trap_address;
    uint64_t trap_size;
    /* For on_rdtsc: virtual time when the slice started and per instruction (ps), and how to set registers
     * (libunicorn's uc_reg_write, also for probe_turn, and its ids of rax, rdx and rip). */
    uint64_t clock_ps;
    uint64_t ps_per_instruction;
    reg_write_fn reg_write;
    int32_t rax, rdx, rip;
    /* 1 once anything asked this slice to stop (on_block, or the host from a hook): no block is counted after
     * it (the module comment). */
    int32_t stop_pending;
    /* The flags register's id, and where run_slice() leaves its value (whether interrupts are on). */
    uint64_t flags_register;
    uint64_t flags;
    /* 1 once a Python hook ran this slice (hooks.py sets it): what the host holds may have changed, so the slice
     * loop (slice_loop.c) hands the slice to it. */
    uint64_t host_ran;
    /* 1 while the slice loop runs this slice: a Python hook first brings what the loop holds into Python. */
    uint64_t in_loop;
};

int run_slice(struct vcpu_budget *v, uint64_t begin, uint64_t budget);

#endif
