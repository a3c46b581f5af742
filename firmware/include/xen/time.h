/* Time: the machine's clock page and the periodic timer. */
#ifndef __XEN_TIME_H__
#define __XEN_TIME_H__

#include <platform.h>
#include <xen/types.h>
#include <asm/cpu_info.h>

typedef s64 s_time_t;

/* ns since boot of this vCPU; the machine updates it between slices. */
static inline s_time_t NOW(void)
{
    return ((volatile s_time_t *)CLOCK_PAGE)[smp_processor_id()];
}

extern unsigned long timer_ticks[NR_CPUS];

void timer_init(void);
void timer_enable(void);
void timer_interrupt(void);

#endif /* __XEN_TIME_H__ */
