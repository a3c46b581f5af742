/*
 * jump_nowhere: its load hook, run by Xen's master inside the patching
 * window, calls an address where nothing is mapped (above Xen's image, in
 * a slot of the address space Xen leaves empty). The instruction fetch
 * faults; Xen's fatal-trap report reads the code around RIP through its
 * exception table ("[fault on access]") and Xen panics with "FATAL PAGE
 * FAULT", error code 0010 (a fetch).
 */
#include <xsplice_payload.h>

#define NOWHERE 0xffffc2d040600010UL

static void jump_nowhere_hook(void)
{
    ((void (*)(void))NOWHERE)();
}

LIVEPATCH_LOAD_HOOK(jump_nowhere_hook);
