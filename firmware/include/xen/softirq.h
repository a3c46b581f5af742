/* Softirqs: per-CPU pending bits run in task context. */
#ifndef __XEN_SOFTIRQ_H__
#define __XEN_SOFTIRQ_H__

#include <platform.h>
#include <xen/compiler.h>
#include <asm/cpu_info.h>

enum {
    TIMER_SOFTIRQ = 0,
    SCHEDULE_SOFTIRQ,
    NR_SOFTIRQS
};

typedef void (*softirq_handler)(void);

typedef struct {
    unsigned long __softirq_pending;
} irq_cpustat_t;

extern irq_cpustat_t irq_stat[NR_CPUS];

#define softirq_pending(cpu) ACCESS_ONCE(irq_stat[cpu].__softirq_pending)

void open_softirq(int nr, softirq_handler handler);
void do_softirq(void);

/* Atomic against this CPU's interrupt handlers (a single locked RMW). Inline: an interrupt handler that raises
 * one runs straight through, which makes fewer blocks for each emulated CPU to translate. */
static inline void cpu_raise_softirq(unsigned int cpu, unsigned int nr)
{
    __atomic_fetch_or(&irq_stat[cpu].__softirq_pending, 1UL << nr, __ATOMIC_SEQ_CST);
}

static inline void raise_softirq(unsigned int nr)
{
    cpu_raise_softirq(smp_processor_id(), nr);
}

#endif /* __XEN_SOFTIRQ_H__ */
