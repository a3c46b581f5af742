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
u8 xsplice_from_irq;

/* The master's IPI function (Xen's reschedule_fn): come through reset_stack_and_jump soon. */
__hook unsigned long xsplice_reschedule_fn(unsigned long unused0,
                                           unsigned long unused1)
{
    ACCESS_ONCE(xsplice_work_to_do[smp_processor_id()]) = 1;
    raise_softirq(SCHEDULE_SOFTIRQ);
    return 0;
}

/*
 * The master's IPI function under the patch_from_irq fault (xsplice_from_irq
 * set): join the rendezvous here and now, inside the interrupt handler, on
 * top of whatever it interrupted.
 */
__hook unsigned long xsplice_reschedule_from_irq_fn(unsigned long unused0,
                                                    unsigned long unused1)
{
    ACCESS_ONCE(xsplice_work_to_do[smp_processor_id()]) = 1;
    check_for_xsplice_work();
    return 0;
}

/* nmi_callback while patching: swallow NMIs. */
__hook int xsplice_mask_nmi_callback(const struct cpu_user_regs *regs, int cpu)
{
    return 1;
}
