/*
 * Livepatch hooks. The rendezvous itself runs in the host: the firmware
 * only offers check_for_xsplice_work (entry.S) and these.
 */
#include <platform.h>
#include <xen/lib.h>
#include <xen/softirq.h>
#include <xen/xsplice.h>
#include <asm/cpu_info.h>

u8 xsplice_work_to_do[NR_CPUS];

/* The master's IPI function: come through reset_stack_and_jump soon. */
__hook unsigned long xsplice_reschedule_fn(unsigned long unused0,
                                           unsigned long unused1)
{
    ACCESS_ONCE(xsplice_work_to_do[smp_processor_id()]) = 1;
    raise_softirq(SCHEDULE_SOFTIRQ);
    return 0;
}

/* nmi_callback while patching: swallow NMIs. */
__hook int xsplice_mask_nmi_callback(const struct cpu_user_regs *regs, int cpu)
{
    return 1;
}
