/* Cross-CPU calls the host makes through call slots (ABI.md). */
#ifndef __ASM_SMP_H__
#define __ASM_SMP_H__

#include <platform.h>
#include <xen/types.h>
#include <xen/compiler.h>

struct call_slot {
    u64 fn;         /* u64 fn(u64 arg0, u64 arg1) */
    u64 arg0;
    u64 arg1;
    u64 result;     /* written by the guest */
    u32 state;      /* CALL_SLOT_* */
    u32 pad;
    u64 seq;        /* host's tag, never touched here */
};

BUILD_BUG_ON(sizeof(struct call_slot) != CALL_SLOT_SIZE);
BUILD_BUG_ON(__builtin_offsetof(struct call_slot, result) != CALL_SLOT_RESULT);
BUILD_BUG_ON(__builtin_offsetof(struct call_slot, state) != CALL_SLOT_STATE);
BUILD_BUG_ON(__builtin_offsetof(struct call_slot, seq) != CALL_SLOT_SEQ);

extern struct call_slot call_slots[NR_CPUS][CALL_SLOTS];
extern unsigned int nr_cpu_ids;
extern unsigned long event_checks[NR_CPUS];

void smp_call_function_interrupt(void);
void event_check_interrupt(void);
void smp_start_cpu(unsigned int cpu);

#endif /* __ASM_SMP_H__ */
