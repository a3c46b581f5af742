/*
 * busy_chunk: replaces the busy task's static busy_chunk (schedule.c) with a
 * cheaper one that only counts. A function every busy vCPU is inside, or
 * returns into, most of the time: patched from an interrupt handler
 * (apply --from-irq) the safety oracle's `active` check fires.
 */
#include <xsplice_payload.h>

extern unsigned long busy_work[];

void new_busy_chunk(unsigned int cpu)
{
    busy_work[cpu] += 512;
}

LIVEPATCH_FUNC(livepatch_busy_chunk) = {
    .version = LIVEPATCH_PAYLOAD_VERSION,
    .name = "schedule.c#busy_chunk",
    .old_addr = 0,              /* looked up by name */
    .new_addr = new_busy_chunk,
    .new_size = XSPLICE_NEW_SIZE(new_busy_chunk),
    .old_size = XSPLICE_OLD_SIZE(schedule_c__busy_chunk),
};
