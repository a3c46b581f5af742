/* Functions the host runs through call slots, for its tests (ABI.md). */
#include <platform.h>
#include <xen/lib.h>
#include <xen/calls.h>
#include <xen/sched.h>
#include <xen/softirq.h>
#include <xen/time.h>
#include <asm/system.h>
#include <asm/cpu_info.h>

static inline __attribute__((always_inline)) unsigned long spin_ns(unsigned long ns)
{
    s_time_t start = NOW();
    unsigned long spins = 0;

    while ( (unsigned long)(NOW() - start) < ns )
    {
        cpu_relax();
        spins++;
    }
    return spins;
}

/* Spin with IF = 0 (it runs in the IPI handler) until NOW() moved by ns. */
__hook unsigned long call_stall_irqs_off(unsigned long ns, unsigned long unused)
{
    return spin_ns(ns);
}

/* Set or clear this CPU's busy flag; the scheduler acts on it. */
__hook unsigned long call_set_busy(unsigned long on, unsigned long unused)
{
    ACCESS_ONCE(busy_flag[smp_processor_id()]) = !!on;
    raise_softirq(SCHEDULE_SOFTIRQ);
    return 0;
}

/* 0 divide error, 1 invalid opcode, 2 read of unmapped memory, 3 int3. */
__hook unsigned long call_fault(unsigned long kind, unsigned long unused)
{
    unsigned long v = 0;

    switch ( kind )
    {
    case 0:
        __asm__ __volatile__ ("xor %%edx, %%edx; xor %%ecx, %%ecx;"
                              "mov $1, %%eax; divl %%ecx"
                              ::: "rax", "rcx", "rdx");
        break;
    case 1:
        __asm__ __volatile__ ("ud2");
        break;
    case 2:
        __asm__ __volatile__ ("mov 0x8, %0" : "=r" (v) :: "memory");
        break;
    case 3:
        __asm__ __volatile__ ("int3");
        break;
    default:
        return ~0UL;
    }
    return v;
}

/* ns with IF = 0, then sti and ns with IF = 1; IF is restored on return. */
__hook unsigned long call_sti_window(unsigned long ns, unsigned long unused)
{
    unsigned long flags = local_save_flags();
    unsigned long spins;

    local_irq_disable();
    spins = spin_ns(ns);
    local_irq_enable();
    spins += spin_ns(ns);
    local_irq_restore(flags);
    return spins;
}
