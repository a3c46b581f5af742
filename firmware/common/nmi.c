/* NMIs, with a callback the livepatch master swaps to mask them. */
#include <platform.h>
#include <xen/lib.h>
#include <xen/nmi.h>
#include <asm/cpu_info.h>

unsigned int nmi_count[NR_CPUS];

__hook int default_nmi_callback(const struct cpu_user_regs *regs, int cpu)
{
    return 0;
}

/* A data pointer the host may rewrite. */
nmi_callback_t *nmi_callback = default_nmi_callback;

void do_nmi(const struct cpu_user_regs *regs)
{
    int cpu = smp_processor_id();

    ++ACCESS_ONCE(nmi_count[cpu]);
    if ( ACCESS_ONCE(nmi_callback)(regs, cpu) )
        return;
    printk("NMI received\n");
}
