/*
 * hook_forever: its load hook, run by Xen's master inside the patching
 * window, never returns. Xen's rendezvous never ends (as on hardware, the
 * other CPUs wait with IRQs off), so dom0's next hypercall finds no CPU to
 * run on: the testbed says so, and where the CPU it waited for is.
 */
#include <xsplice_payload.h>

static void forever_hook(void)
{
    for ( ;; )
        __asm__ __volatile__ ( "" ::: "memory" );
}

LIVEPATCH_LOAD_HOOK(forever_hook);
