/* Softirqs: per-CPU pending bits, run lowest bit first in task context. */
#include <platform.h>
#include <xen/lib.h>
#include <xen/softirq.h>
#include <asm/cpu_info.h>

irq_cpustat_t irq_stat[NR_CPUS];
static softirq_handler softirq_handlers[NR_SOFTIRQS];

void open_softirq(int nr, softirq_handler handler)
{
    softirq_handlers[nr] = handler;
}

/*
 * Run pending handlers until none is pending. A handler may not return
 * (SCHEDULE_SOFTIRQ's schedule()): its bit is cleared before it runs and
 * the others stay pending for the next task.
 */
void do_softirq(void)
{
    unsigned int cpu = smp_processor_id(), i;
    unsigned long pending;

    while ( (pending = softirq_pending(cpu)) != 0 )
    {
        i = __builtin_ctzl(pending);
        __atomic_fetch_and(&irq_stat[cpu].__softirq_pending, ~(1UL << i),
                           __ATOMIC_SEQ_CST);
        if ( i < NR_SOFTIRQS && softirq_handlers[i] )
            softirq_handlers[i]();
    }
}
