/* Softirqs: per-CPU pending bits run in task context. */
#ifndef __XEN_SOFTIRQ_H__
#define __XEN_SOFTIRQ_H__

#include <platform.h>
#include <xen/compiler.h>

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
void raise_softirq(unsigned int nr);
void cpu_raise_softirq(unsigned int cpu, unsigned int nr);
void do_softirq(void);

#endif /* __XEN_SOFTIRQ_H__ */
