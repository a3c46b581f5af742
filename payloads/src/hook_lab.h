/*
 * hook_lab.h: hooks whose behaviour the host chooses at run time (the
 * "hook behaviours" fuzz axis, tests/test_fuzz_hooks.py), so that one
 * build serves every case. Before an action the host writes, into this
 * payload's .data, what each kind of hook does (hook_behaviour[kind]),
 * where a poking hook stores its 0xcc (hook_poke_at, written through the
 * text alias) and how deep a recursing one goes (hook_depth).
 */
#include <xsplice_payload.h>

#define TEXT_ALIAS_OFFSET 0x100000000UL

void check_for_xsplice_work(void);
void do_softirq(void);

enum hook_kind { LOAD, UNLOAD, PREAPPLY, APPLY, POSTAPPLY, PREREVERT, REVERT, POSTREVERT, HOOK_KINDS };

enum behaviour {
    BEHAVE,             /* return 0 (an action hook does the action) */
    VETO,               /* return -EINVAL */
    LOOP,               /* never return */
    RECURSE,            /* recurse hook_depth calls deep, then behave */
    REENTER,            /* ask for xsplice work again, then behave */
    STI,                /* enable interrupts, then behave */
    SOFTIRQS,           /* enable interrupts and run softirqs for ever (the scheduler takes the stack) */
    FAULT,              /* store into the unmapped page 0 */
    POKE_AND_FAULT,     /* int3 into hook_poke_at, then fault */
    POKE_AND_VETO,      /* int3 into hook_poke_at, then return -EINVAL */
};

static volatile unsigned char hook_behaviour[HOOK_KINDS] __payload_data __attribute__((used));
static volatile unsigned long hook_poke_at __payload_data __attribute__((used));
static volatile unsigned int hook_depth __payload_data __attribute__((used));

static __attribute__((noinline)) unsigned int recurse(unsigned int depth)
{
    volatile unsigned char frame[32];

    frame[0] = depth;
    return depth ? recurse(depth - 1) + frame[0] : 0;
}

static void poke(void)
{
    *(volatile unsigned char *)(hook_poke_at + TEXT_ALIAS_OFFSET) = 0xcc;
}

/* What hook_behaviour[kind] says; the rc, when it returns at all. */
static int misbehave(enum hook_kind kind)
{
    switch ( hook_behaviour[kind] )
    {
    case VETO:
        return -EINVAL;
    case LOOP:
        for ( ;; )
            ;
    case RECURSE:
        recurse(hook_depth);
        return 0;
    case REENTER:
        check_for_xsplice_work();
        return 0;
    case STI:
        __asm__ __volatile__ ("sti");
        return 0;
    case SOFTIRQS:
        __asm__ __volatile__ ("sti");
        for ( ;; )
            do_softirq();
    case FAULT:
        *(volatile int *)8 = 0;
        return 0;
    case POKE_AND_FAULT:
        poke();
        *(volatile int *)8 = 0;
        return 0;
    case POKE_AND_VETO:
        poke();
        return -EINVAL;
    default:
        return 0;
    }
}

static int pre_apply_hook(livepatch_payload_t *payload) { return misbehave(PREAPPLY); }
static void post_apply_hook(livepatch_payload_t *payload) { misbehave(POSTAPPLY); }
static int pre_revert_hook(livepatch_payload_t *payload) { return misbehave(PREREVERT); }
static void post_revert_hook(livepatch_payload_t *payload) { misbehave(POSTREVERT); }

LIVEPATCH_PREAPPLY_HOOK(pre_apply_hook);
LIVEPATCH_POSTAPPLY_HOOK(post_apply_hook);
LIVEPATCH_PREREVERT_HOOK(pre_revert_hook);
LIVEPATCH_POSTREVERT_HOOK(post_revert_hook);

static const char hook_lab_patch_this_fnc[] = "xen_extra_version";

static const char *hook_lab_extra(void)
{
    return "Hook lab";
}

/* The one record of a hook_lab payload: xen_extra_version -> hook_lab_extra. */
#define HOOK_LAB_RECORD(var)                                                    \
    LIVEPATCH_FUNC(var) = {                                                     \
        .version = LIVEPATCH_PAYLOAD_VERSION,                                   \
        .name = hook_lab_patch_this_fnc,                                        \
        .new_addr = hook_lab_extra,                                             \
        .old_addr = xen_extra_version,                                          \
        .new_size = XSPLICE_NEW_SIZE(hook_lab_extra),                           \
        .old_size = XSPLICE_OLD_SIZE(xen_extra_version),                        \
    }
