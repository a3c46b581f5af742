/*
 * The scheduler: per CPU an idle loop, a workload due every timer tick and
 * a busy task while the CPU's busy flag is set. Every switch goes through
 * reset_stack_and_jump(), where livepatch work is picked up.
 */
#include <platform.h>
#include <xen/lib.h>
#include <xen/sched.h>
#include <xen/softirq.h>
#include <xen/version.h>
#include <xen/xsplice.h>
#include <asm/system.h>
#include <asm/cpu_info.h>

unsigned long workload_runs[NR_CPUS];
unsigned long busy_work[NR_CPUS];      /* words processed: only grows */
unsigned long busy_checksum[NR_CPUS];
u8 busy_flag[NR_CPUS];
u8 workload_due[NR_CPUS];

noreturn void schedule(void)
{
    unsigned int cpu = smp_processor_id();
    task_fn_t *next;

    if ( ACCESS_ONCE(busy_flag[cpu]) )
        next = busy_task;
    else if ( ACCESS_ONCE(workload_due[cpu]) )
        next = workload_task;
    else
        next = idle_loop;
    reset_stack_and_jump(next);
}

static void schedule_softirq_action(void)
{
    schedule();
}

void scheduler_init(void)
{
    open_softirq(SCHEDULE_SOFTIRQ, schedule_softirq_action);
}

noreturn void idle_loop(void)
{
    unsigned int cpu = smp_processor_id();

    for ( ;; )
    {
        do_softirq();
        if ( !ACCESS_ONCE(xsplice_from_irq) )
            check_for_xsplice_work();   /* returns at once unless this CPU has work */
        local_irq_disable();
        if ( !softirq_pending(cpu) && !ACCESS_ONCE(xsplice_work_to_do[cpu]) )
            safe_halt();                /* sti; hlt */
        else
            local_irq_enable();
    }
}

/* What each CPU's workload printed last. */
static struct {
    bool printed;
    unsigned int major, minor;
    xen_extraversion_t extra;
} last_version[NR_CPUS];

noreturn void workload_task(void)
{
    unsigned int cpu = smp_processor_id();
    xen_extraversion_t extra;
    unsigned int major, minor;

    local_irq_enable();
    ACCESS_ONCE(workload_runs[cpu])++;

    memset(extra, 0, sizeof(extra));
    do_hypercall(__HYPERVISOR_xen_version, XENVER_extraversion,
                 (unsigned long)extra);
    major = xen_major_version();
    minor = xen_minor_version();

    if ( !last_version[cpu].printed || major != last_version[cpu].major ||
         minor != last_version[cpu].minor ||
         strcmp(extra, last_version[cpu].extra) )
    {
        printk("xen version %u.%u%s\n", major, minor, extra);
        last_version[cpu].printed = true;
        last_version[cpu].major = major;
        last_version[cpu].minor = minor;
        memcpy(last_version[cpu].extra, extra, sizeof(extra));
    }

    ACCESS_ONCE(workload_due[cpu]) = 0;
    raise_softirq(SCHEDULE_SOFTIRQ);
    do_softirq();                       /* -> schedule(), never returns */
    schedule();
}

/*
 * Per CPU: 4 KiB of scratch and the xorshift state. A chunk walks
 * BUSY_WORDS of it, about 5,000 instructions: a busy CPU looks at its
 * softirqs every ~5 us, as a host does on its frequent exits.
 */
#define BUSY_WORDS 128
static u64 busy_buf[NR_CPUS][512] __attribute__((aligned(4096)));
static u64 busy_seed[NR_CPUS];

/* About 5,000 instructions of loads, stores and arithmetic. */
static noinline void busy_chunk(unsigned int cpu)
{
    volatile u64 *buf = busy_buf[cpu];
    u64 x = busy_seed[cpu] ?: 0x9e3779b97f4a7c15UL + cpu;
    u64 sum = 0;
    unsigned int pass, i;

    for ( pass = 0; pass < 2; pass++ )
    {
        for ( i = 0; i < BUSY_WORDS; i++ )
        {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            buf[i] = x;
        }
        for ( i = 0; i < BUSY_WORDS; i++ )
            sum += buf[i] ^ (sum >> 3);
    }
    busy_seed[cpu] = x;
    busy_checksum[cpu] += sum;
    ACCESS_ONCE(busy_work[cpu]) += 2 * 2 * BUSY_WORDS;
}

noreturn void busy_task(void)
{
    unsigned int cpu = smp_processor_id();

    local_irq_enable();
    for ( ;; )
    {
        busy_chunk(cpu);
        if ( softirq_pending(cpu) )
            do_softirq();
    }
}
