/* start_cpu(): the C side of boot, for the BSP and every AP. */
#include <platform.h>
#include <xen/lib.h>
#include <xen/sched.h>
#include <xen/softirq.h>
#include <xen/time.h>
#include <xen/version.h>
#include <asm/smp.h>
#include <asm/traps.h>

noreturn void start_cpu(unsigned int cpu, unsigned int nr_cpus);

noreturn void start_cpu(unsigned int cpu, unsigned int nr_cpus)
{
    unsigned int i;

    if ( cpu == 0 )
    {
        if ( nr_cpus == 0 || nr_cpus > NR_CPUS )
            panic("bad number of CPUs: %u\n", nr_cpus);
        nr_cpu_ids = nr_cpus;
        trap_init();
        load_idt();
        timer_init();
        scheduler_init();
        printk("xsplice-emu hypervisor %u.%u%s, %u CPUs\n",
               xen_major_version(), xen_minor_version(), xen_extra_version(),
               nr_cpus);
        for ( i = 1; i < nr_cpus; i++ )
            smp_start_cpu(i);
    }
    else
        load_idt();                     /* built by the BSP */

    printk("up\n");
    timer_enable();
    schedule();
}
