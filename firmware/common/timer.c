/* The periodic timer: counts ticks and makes the workload due. */
#include <platform.h>
#include <xen/lib.h>
#include <xen/xsplice.h>
#include <xen/sched.h>
#include <xen/softirq.h>
#include <xen/time.h>
#include <asm/system.h>
#include <asm/cpu_info.h>

unsigned long timer_ticks[NR_CPUS];

/* LOCAL_TIMER_VECTOR */
void timer_interrupt(void)
{
    unsigned int cpu = smp_processor_id();

    ACCESS_ONCE(timer_ticks[cpu])++;
    raise_softirq(TIMER_SOFTIRQ);
    /* The patch_from_irq fault: the work is picked up here, with live frames below. */
    if ( ACCESS_ONCE(xsplice_from_irq) )
        check_for_xsplice_work();   /* returns at once unless this CPU has work */
}

/* TIMER_SOFTIRQ: the workload is due every tick. */
static void timer_softirq_action(void)
{
    ACCESS_ONCE(workload_due[smp_processor_id()]) = 1;
    raise_softirq(SCHEDULE_SOFTIRQ);
}

void timer_init(void)
{
    open_softirq(TIMER_SOFTIRQ, timer_softirq_action);
}

/* This CPU's periodic timer on LOCAL_TIMER_VECTOR. */
void timer_enable(void)
{
    outl(LOCAL_TIMER_VECTOR, PORT_TIMER);
}
