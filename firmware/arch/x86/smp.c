/* Call slots, the event-check IPI and starting the other CPUs. */
#include <platform.h>
#include <xen/lib.h>
#include <asm/smp.h>
#include <asm/system.h>
#include <asm/cpu_info.h>

struct call_slot call_slots[NR_CPUS][CALL_SLOTS] __attribute__((aligned(64)));
unsigned long event_checks[NR_CPUS];
unsigned int nr_cpu_ids = 1;

typedef u64 call_fn_t(u64 arg0, u64 arg1);

/* CALL_FUNCTION_VECTOR: run this CPU's pending slots in index order. */
void smp_call_function_interrupt(void)
{
    unsigned int cpu = smp_processor_id(), i;

    for ( i = 0; i < CALL_SLOTS; i++ )
    {
        volatile struct call_slot *slot = &call_slots[cpu][i];
        call_fn_t *fn;
        u64 result;

        if ( slot->state != CALL_SLOT_PENDING )
            continue;
        slot->state = CALL_SLOT_RUNNING;
        barrier();
        fn = (call_fn_t *)slot->fn;
        result = fn(slot->arg0, slot->arg1);
        slot->result = result;
        barrier();
        slot->state = CALL_SLOT_DONE;
        barrier();
        outl(i, PORT_CALL_DONE);
    }
}

/* EVENT_CHECK_VECTOR: only wakes the CPU. */
void event_check_interrupt(void)
{
    ACCESS_ONCE(event_checks[smp_processor_id()])++;
}

/* The machine starts `cpu` at _start; no need to wait for it. */
void smp_start_cpu(unsigned int cpu)
{
    outl(cpu, PORT_START_CPU);
}
