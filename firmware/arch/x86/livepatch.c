/*
 * x86 patching by hand (Xen's arch/x86/livepatch.c): a jmp rel32, or NOPs,
 * written through the writable alias of the read-only text. The writer
 * runs the new bytes at once; other CPUs once they serialise (ABI.md).
 */
#include <platform.h>
#include <xen/lib.h>
#include <xen/livepatch.h>

void text_poke(void *addr, const void *src, size_t len)
{
    memcpy((u8 *)addr + TEXT_ALIAS_OFFSET, src, len);
}

static unsigned int insn_len(const struct livepatch_func *func, const struct livepatch_fstate *state)
{
    return func->new_addr ? ARCH_PATCH_INSN_SIZE : func->new_size - state->patch_offset;
}

/* Intel's recommended NOPs, up to 8 bytes each. */
static void add_nops(u8 *insn, unsigned int len)
{
    static const u8 nops[9][8] = {
        { 0 }, { 0x90 }, { 0x66, 0x90 }, { 0x0f, 0x1f, 0x00 }, { 0x0f, 0x1f, 0x40, 0x00 },
        { 0x0f, 0x1f, 0x44, 0x00, 0x00 }, { 0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00 },
        { 0x0f, 0x1f, 0x80, 0x00, 0x00, 0x00, 0x00 },
        { 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00 },
    };

    while ( len )
    {
        unsigned int chunk = len > 8 ? 8 : len;

        memcpy(insn, nops[chunk], chunk);
        insn += chunk;
        len -= chunk;
    }
}

__hook void arch_livepatch_apply(const struct livepatch_func *func, struct livepatch_fstate *state)
{
    u8 insn[LIVEPATCH_OPAQUE_SIZE];
    u8 *old_ptr = func->old_addr;
    unsigned int len;

    state->patch_offset = 0;            /* no endbr64: the firmware is built without CET */
    len = insn_len(func, state);
    if ( !len || len > LIVEPATCH_OPAQUE_SIZE )
        return;
    memcpy(state->insn_buffer, old_ptr + state->patch_offset, len);
    if ( func->new_addr )
    {
        s32 rel = (s32)((long)func->new_addr -
                        ((long)old_ptr + state->patch_offset + ARCH_PATCH_INSN_SIZE));

        insn[0] = 0xe9;
        memcpy(&insn[1], &rel, sizeof(rel));
    }
    else
        add_nops(insn, len);
    text_poke(old_ptr + state->patch_offset, insn, len);
}

__hook void arch_livepatch_revert(const struct livepatch_func *func, struct livepatch_fstate *state)
{
    unsigned int len = insn_len(func, state);

    if ( len && len <= LIVEPATCH_OPAQUE_SIZE )
        text_poke((u8 *)func->old_addr + state->patch_offset, state->insn_buffer, len);
}
