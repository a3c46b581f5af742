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

/* ---- Hooks ----------------------------------------------------------- */
/*
 * Each macro adds one function pointer to the hook section of its kind (a
 * section may hold several, run in order):
 *   .livepatch.hooks.load / .unload         void (*)(void)
 *   .livepatch.hooks.preapply / .prerevert  int (*)(void *)  non-zero vetoes
 *   .livepatch.hooks.postapply / .postrevert int (*)(void *) after release;
 *                                           the result is not used
 *   .livepatch.hooks.apply / .revert        int (*)(void *)  REPLACE the
 *                                           built-in action (the hook patches
 *                                           or not; its result is the action's)
 * Xen passes the payload; this firmware calls a hook with `call *%rdx` and
 * sets no argument, so the pointer means nothing: never dereference it.
 */
typedef void xsplice_loadcall_t(void);
typedef int xsplice_actioncall_t(void *payload);

#define XSPLICE_HOOK_(kind, type, fn) \
    static type *const livepatch_##kind##_hook_##fn \
        __attribute__((section(".livepatch.hooks." #kind), used)) = fn

#define LIVEPATCH_LOAD_HOOK(fn)       XSPLICE_HOOK_(load, xsplice_loadcall_t, fn)
#define LIVEPATCH_UNLOAD_HOOK(fn)     XSPLICE_HOOK_(unload, xsplice_loadcall_t, fn)
#define LIVEPATCH_PREAPPLY_HOOK(fn)   XSPLICE_HOOK_(preapply, xsplice_actioncall_t, fn)
#define LIVEPATCH_APPLY_HOOK(fn)      XSPLICE_HOOK_(apply, xsplice_actioncall_t, fn)
#define LIVEPATCH_POSTAPPLY_HOOK(fn)  XSPLICE_HOOK_(postapply, xsplice_actioncall_t, fn)
#define LIVEPATCH_PREREVERT_HOOK(fn)  XSPLICE_HOOK_(prerevert, xsplice_actioncall_t, fn)
#define LIVEPATCH_REVERT_HOOK(fn)     XSPLICE_HOOK_(revert, xsplice_actioncall_t, fn)
#define LIVEPATCH_POSTREVERT_HOOK(fn) XSPLICE_HOOK_(postrevert, xsplice_actioncall_t, fn)

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
/* The firmware's printk returns nothing (firmware/include/xen/lib.h). */
void printk(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define EBUSY   16
#define EINVAL  22

#endif /* XSPLICE_PAYLOAD_H */
