/*
 * What a payload's hooks see and may call, as in Xen (xen/livepatch.h,
 * xen/livepatch_payload.h): the payload descriptor the controller builds
 * for each hook call, per-function state, and the helpers that patch by
 * hand through the writable alias of the text (ABI.md).
 */
#ifndef __XEN_LIVEPATCH_H__
#define __XEN_LIVEPATCH_H__

#include <xen/types.h>
#include <xen/compiler.h>

#define LIVEPATCH_OPAQUE_SIZE 31
#define ARCH_PATCH_INSN_SIZE 5          /* jmp rel32 */

/* Offsets and sizes the controller writes (xsplice_emu/livepatch/abi.py; a test compares). */
#define FSTATE_SIZE 40
#define FSTATE_PATCH_OFFSET 0
#define FSTATE_APPLIED 4
#define FSTATE_INSN_BUFFER 8
#define PAYLOAD_DESC_SIZE 64
#define PAYLOAD_DESC_NAME 0
#define PAYLOAD_DESC_FUNCS 8
#define PAYLOAD_DESC_FSTATE 16
#define PAYLOAD_DESC_NFUNCS 24
#define PAYLOAD_DESC_N_LOAD 28
#define PAYLOAD_DESC_N_UNLOAD 32
#define PAYLOAD_DESC_TAIL 36
#define PAYLOAD_DESC_LOAD_FUNCS 40
#define PAYLOAD_DESC_UNLOAD_FUNCS 48

enum livepatch_func_state {
    LIVEPATCH_FUNC_NOT_APPLIED,
    LIVEPATCH_FUNC_APPLIED,
};

/* What a hook asked the hypervisor to do to the payload's own state (Xen's *_payload_tail). */
enum livepatch_tail {
    LIVEPATCH_TAIL_NONE,
    LIVEPATCH_TAIL_APPLIED,
    LIVEPATCH_TAIL_REVERTED,
};

struct livepatch_func {                 /* a v2 record (.livepatch.funcs), 104 bytes */
    const char *name;
    void *new_addr;
    void *old_addr;
    u32 new_size;
    u32 old_size;
    u8 version;
    u8 _pad[39];
    u8 expect[32];
};

struct livepatch_fstate {               /* the hypervisor's state of one function */
    unsigned int patch_offset;
    unsigned int applied;               /* enum livepatch_func_state */
    u8 insn_buffer[LIVEPATCH_OPAQUE_SIZE];
};

typedef void livepatch_loadcall_t(void);

struct payload {                        /* livepatch_payload_t, as far as a hook reads it */
    const char *name;
    struct livepatch_func *funcs;
    struct livepatch_fstate *fstate;
    unsigned int nfuncs;
    unsigned int n_load_funcs;
    unsigned int n_unload_funcs;
    unsigned int tail;                  /* enum livepatch_tail */
    livepatch_loadcall_t *const *load_funcs;
    livepatch_loadcall_t *const *unload_funcs;
    u8 _reserved[8];
};

BUILD_BUG_ON(sizeof(struct livepatch_func) != 104);
BUILD_BUG_ON(sizeof(struct livepatch_fstate) != FSTATE_SIZE);
BUILD_BUG_ON(__builtin_offsetof(struct livepatch_fstate, applied) != FSTATE_APPLIED);
BUILD_BUG_ON(__builtin_offsetof(struct livepatch_fstate, insn_buffer) != FSTATE_INSN_BUFFER);
BUILD_BUG_ON(sizeof(struct payload) != PAYLOAD_DESC_SIZE);
BUILD_BUG_ON(__builtin_offsetof(struct payload, funcs) != PAYLOAD_DESC_FUNCS);
BUILD_BUG_ON(__builtin_offsetof(struct payload, fstate) != PAYLOAD_DESC_FSTATE);
BUILD_BUG_ON(__builtin_offsetof(struct payload, nfuncs) != PAYLOAD_DESC_NFUNCS);
BUILD_BUG_ON(__builtin_offsetof(struct payload, n_load_funcs) != PAYLOAD_DESC_N_LOAD);
BUILD_BUG_ON(__builtin_offsetof(struct payload, n_unload_funcs) != PAYLOAD_DESC_N_UNLOAD);
BUILD_BUG_ON(__builtin_offsetof(struct payload, tail) != PAYLOAD_DESC_TAIL);
BUILD_BUG_ON(__builtin_offsetof(struct payload, load_funcs) != PAYLOAD_DESC_LOAD_FUNCS);
BUILD_BUG_ON(__builtin_offsetof(struct payload, unload_funcs) != PAYLOAD_DESC_UNLOAD_FUNCS);

/* Write code: through the writable alias, as Xen writes its read-only text. */
void text_poke(void *addr, const void *src, size_t len);

void arch_livepatch_apply(const struct livepatch_func *func, struct livepatch_fstate *state);
void arch_livepatch_revert(const struct livepatch_func *func, struct livepatch_fstate *state);
void common_livepatch_apply(const struct livepatch_func *func, struct livepatch_fstate *state);
void common_livepatch_revert(const struct livepatch_func *func, struct livepatch_fstate *state);
int apply_payload(struct payload *data);
void apply_payload_tail(struct payload *data);
int revert_payload(struct payload *data);
void revert_payload_tail(struct payload *data);

#endif /* __XEN_LIVEPATCH_H__ */
