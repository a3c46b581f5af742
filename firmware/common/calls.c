/* Functions the host runs through call slots, for its tests (ABI.md). */
#include <platform.h>
#include <xen/lib.h>
#include <xen/calls.h>
#include <xen/livepatch.h>
#include <xen/sched.h>
#include <xen/softirq.h>
#include <xen/time.h>
#include <asm/system.h>
#include <asm/cpu_info.h>

typedef unsigned long host_fn_t(unsigned long, unsigned long);

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

/* 0 divide error, 1 invalid opcode, 2 read of unmapped memory, 3 int3, 4 write to text, 5 call into data,
 * 6 a push below this CPU's stack (into its guard page). */
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
    case 4:
        ACCESS_ONCE(*(volatile u8 *)call_set_busy) = 0xcc;     /* text is read-only */
        break;
    case 5:
        ((host_fn_t *)busy_flag)(0, 0);                       /* data is not executable */
        break;
    case 6:
        __asm__ __volatile__ ("mov %%rsp, %%rdx; and %0, %%rsp; add %1, %%rsp; push %%rdx"
                              :: "i" (~(STACK_SIZE - 1)), "i" (STACK_GUARD_SIZE) : "rdx", "memory");
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


/* Write `jmp new` over `old` through the text alias, no serialising, then call `old`: the writer sees it. */
__hook unsigned long call_poke_jump(unsigned long old, unsigned long new)
{
    struct livepatch_func func = { .new_addr = (void *)new, .old_addr = (void *)old };
    struct livepatch_fstate state = { 0 };

    arch_livepatch_apply(&func, &state);
    return ((host_fn_t *)old)(0, 0);
}

/* Call `fn` for ns without serialising; how many results differed from the first one. */
__hook unsigned long call_watch(unsigned long fn, unsigned long ns)
{
    s_time_t start = NOW();
    unsigned long first = ((host_fn_t *)fn)(0, 0), changed = 0;

    while ( (unsigned long)(NOW() - start) < ns )
        changed += ((host_fn_t *)fn)(0, 0) != first;
    return changed;
}

/*
 * An atomicity bug for the explorer's tests: a read-modify-write of a shared
 * counter with a call between the read and the write (so they are in
 * different blocks, and a slice can end between them). Two vCPUs adding at
 * once can lose an update, in few schedules.
 */
unsigned long racy_counter;

static noinline void racy_gap(void)
{
    barrier();
}

__hook unsigned long call_racy_add(unsigned long times, unsigned long unused)
{
    unsigned long i;

    for ( i = 0; i < times; i++ )
    {
        unsigned long seen = ACCESS_ONCE(racy_counter);

        racy_gap();
        ACCESS_ONCE(racy_counter) = seen + 1;
    }
    return 0;
}

__hook unsigned long call_racy_count(unsigned long unused0, unsigned long unused1)
{
    return ACCESS_ONCE(racy_counter);
}
