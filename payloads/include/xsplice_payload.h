/*
 * xsplice_payload.h: what a livepatch payload for the xsplice-emu firmware
 * is made of (Xen's <xen/livepatch_payload.h> and <public/sysctl.h>, cut
 * down). Build a payload with `xsplice-emu payload build SRC.c`; it compiles
 * with -fpic and links with `ld -r`, adding the build-id notes.
 *
 * Everything declared after this header has hidden visibility, as in Xen:
 * with -fpic that makes gcc reach other symbols RIP-relative (R_X86_64_PC32,
 * PLT32 for calls) instead of through a GOT, so a payload carries only the
 * relocations the loader supports (NONE, 64, PC32, PLT32).
 */
#ifndef XSPLICE_PAYLOAD_H
#define XSPLICE_PAYLOAD_H

#pragma GCC visibility push(hidden)

#include <stdint.h>

/* ---- Function records ------------------------------------------------ */

/* Version 1 (the seed): section .xsplice.funcs, 64 bytes each. */
#define XSPLICE_PAYLOAD_VERSION     1

struct xsplice_patch_func {
    const char *name;           /* the function to patch (looked up when old_addr is 0) */
    void *new_addr;             /* the replacement; 0 = NOP out new_size bytes of old */
    void *old_addr;             /* the function to patch; 0 = look up name */
    uint32_t new_size;
    uint32_t old_size;
    uint8_t version;            /* XSPLICE_PAYLOAD_VERSION */
    uint8_t opaque[31];         /* the hypervisor's (saved instruction bytes) */
};
_Static_assert(sizeof(struct xsplice_patch_func) == 64, "v1 record is 64 bytes");

/* Version 2 (later Xen): section .livepatch.funcs, 104 bytes each. */
#define LIVEPATCH_PAYLOAD_VERSION   2

struct livepatch_expectation {
    uint8_t enabled : 1;        /* check data[0..len) against the old function */
    uint8_t len : 5;            /* 1..31 */
    uint8_t rsv : 2;            /* must be 0 */
    uint8_t data[31];
};

struct livepatch_func {
    const char *name;
    void *new_addr;
    void *old_addr;
    uint32_t new_size;
    uint32_t old_size;
    uint8_t version;            /* LIVEPATCH_PAYLOAD_VERSION */
    uint8_t _pad[39];
    struct livepatch_expectation expect;
};
_Static_assert(sizeof(struct livepatch_expectation) == 32, "expectation is 32 bytes");
_Static_assert(sizeof(struct livepatch_func) == 104, "v2 record is 104 bytes");

/*
 * Define a record: `XSPLICE_FUNC(my_record) = { .version = 1, ... };`.
 * Records are writable data, as in Xen (the hypervisor owns `opaque`).
 */
#define XSPLICE_FUNC(var) \
    struct xsplice_patch_func var __attribute__((section(".xsplice.funcs"), used))
#define LIVEPATCH_FUNC(var) \
    struct livepatch_func var __attribute__((section(".livepatch.funcs"), used))

/* ---- What a hook is handed, and Xen's helpers it may call ---------- */
/*
 * Like Xen, the hypervisor hands each pre-, action and post- hook its
 * payload: the function records, the hypervisor's per-function state
 * (`fstate[i].applied`, the bytes a patch overwrote) and the load/unload
 * hooks. After an action hook, every function must be in the state the
 * action promised: applied after a successful apply or a failed revert,
 * not applied otherwise (Xen panics; the testbed fails the action and puts
 * everything back). The helpers below are the firmware's (Xen's names and
 * signatures); they write code through the writable alias of the text.
 */
#define LIVEPATCH_OPAQUE_SIZE 31

enum livepatch_func_state {
    LIVEPATCH_FUNC_NOT_APPLIED,
    LIVEPATCH_FUNC_APPLIED,
};

struct livepatch_fstate {
    unsigned int patch_offset;
    unsigned int applied;               /* enum livepatch_func_state */
    uint8_t insn_buffer[LIVEPATCH_OPAQUE_SIZE];
};
_Static_assert(sizeof(struct livepatch_fstate) == 40, "fstate is 40 bytes");

typedef void livepatch_loadcall_t(void);

typedef struct payload {
    const char *name;
    struct livepatch_func *funcs;       /* this payload's records (v2 layout) */
    struct livepatch_fstate *fstate;    /* one per record */
    unsigned int nfuncs;
    unsigned int n_load_funcs;
    unsigned int n_unload_funcs;
    unsigned int tail;                  /* the hypervisor's: set by *_payload_tail */
    livepatch_loadcall_t *const *load_funcs;
    livepatch_loadcall_t *const *unload_funcs;
    uint8_t _reserved[8];
} livepatch_payload_t;
_Static_assert(sizeof(livepatch_payload_t) == 64, "the descriptor is 64 bytes");

void arch_livepatch_apply(const struct livepatch_func *func, struct livepatch_fstate *state);
void arch_livepatch_revert(const struct livepatch_func *func, struct livepatch_fstate *state);
void common_livepatch_apply(const struct livepatch_func *func, struct livepatch_fstate *state);
void common_livepatch_revert(const struct livepatch_func *func, struct livepatch_fstate *state);
int apply_payload(livepatch_payload_t *data);
void apply_payload_tail(livepatch_payload_t *data);
int revert_payload(livepatch_payload_t *data);
void revert_payload_tail(livepatch_payload_t *data);

/* ---- Hooks ----------------------------------------------------------- */
/*
 * Each macro adds one function pointer to the hook section of its kind (a
 * section may hold several, run in order):
 *   .livepatch.hooks.load / .unload         void (*)(void), inside the built-in action only
 *   .livepatch.hooks.preapply / .prerevert  int (*)(livepatch_payload_t *), non-zero vetoes
 *   .livepatch.hooks.apply / .revert        int (*)(livepatch_payload_t *), REPLACE the
 *                                           built-in action (the hook patches or not; its
 *                                           result is the action's)
 *   .livepatch.hooks.postapply / .postrevert void (*)(livepatch_payload_t *), after release
 */
typedef int livepatch_precall_t(livepatch_payload_t *payload);
typedef int livepatch_actioncall_t(livepatch_payload_t *payload);
typedef void livepatch_postcall_t(livepatch_payload_t *payload);

#define XSPLICE_HOOK_(kind, type, fn) \
    static type *const livepatch_##kind##_hook_##fn \
        __attribute__((section(".livepatch.hooks." #kind), used)) = fn

#define LIVEPATCH_LOAD_HOOK(fn)       XSPLICE_HOOK_(load, livepatch_loadcall_t, fn)
#define LIVEPATCH_UNLOAD_HOOK(fn)     XSPLICE_HOOK_(unload, livepatch_loadcall_t, fn)
#define LIVEPATCH_PREAPPLY_HOOK(fn)   XSPLICE_HOOK_(preapply, livepatch_precall_t, fn)
#define LIVEPATCH_APPLY_HOOK(fn)      XSPLICE_HOOK_(apply, livepatch_actioncall_t, fn)
#define LIVEPATCH_POSTAPPLY_HOOK(fn)  XSPLICE_HOOK_(postapply, livepatch_postcall_t, fn)
#define LIVEPATCH_PREREVERT_HOOK(fn)  XSPLICE_HOOK_(prerevert, livepatch_precall_t, fn)
#define LIVEPATCH_REVERT_HOOK(fn)     XSPLICE_HOOK_(revert, livepatch_actioncall_t, fn)
#define LIVEPATCH_POSTREVERT_HOOK(fn) XSPLICE_HOOK_(postrevert, livepatch_postcall_t, fn)

/* Writable payload data, explicitly in .data (so never "safe to re-apply"). */
#define __payload_data __attribute__((section(".data")))

/* ---- Sizes and bytes known only at build time ------------------------ */
/*
 * `xsplice-emu payload build` generates <xsplice_firmware.h> from the
 * firmware ELF the payload is built against (the one whose build-id goes
 * into .livepatch.depends), as Xen's test Makefile generates config.h:
 *   XSPLICE_OLD_SIZE(fn)        st_size of the firmware's global function fn
 *   XSPLICE_EXPECT_AS_BUILT(fn) an expectation of fn's first min(size, 31)
 *                               bytes as they are in that firmware
 *   XSPLICE_NEW_SIZE(fn)        st_size of this payload's own function fn
 *                               (a first compile pass measures it)
 */
#if __has_include(<xsplice_firmware.h>)
#include <xsplice_firmware.h>
#endif

#define XSPLICE_OLD_SIZE(fn)    XSPLICE_FW_SIZE_##fn
#define XSPLICE_EXPECT_AS_BUILT(fn) \
    { .enabled = 1, .len = XSPLICE_FW_HEAD_LEN_##fn, .data = { XSPLICE_FW_HEAD_##fn } }
#ifdef XSPLICE_SIZING_PASS
#define XSPLICE_NEW_SIZE(fn)    0
#else
#define XSPLICE_NEW_SIZE(fn)    XSPLICE_NEW_SIZE_##fn
#endif

/* ---- The firmware's functions a payload may call or replace ---------- */

const char *xen_extra_version(void);
unsigned int xen_minor_version(void);
unsigned int xen_major_version(void);
/* The firmware's printk returns nothing (firmware/include/xen/lib.h); panic stops the machine. */
void printk(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void panic(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
#define BUG_ON(cond) do { if ( cond ) panic("BUG at %s:%d\n", __FILE__, __LINE__); } while ( 0 )

#define local_irq_save(flags) __asm__ __volatile__ ("pushfq; popq %0; cli" : "=r" (flags) :: "memory")
#define local_irq_restore(flags) __asm__ __volatile__ ("pushq %0; popfq" :: "r" (flags) : "memory", "cc")

#define EBUSY   16
#define EINVAL  22

#endif /* XSPLICE_PAYLOAD_H */
