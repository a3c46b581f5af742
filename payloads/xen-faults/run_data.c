/*
 * run_data: its load hook calls into its own .data, where a `ret` is. Xen
 * maps a payload's data no-execute (arch_livepatch_secure), so the call's
 * fetch is a page fault in Xen (present, instruction fetch: error code
 * 0011) and Xen panics with its own report.
 */
#include <xsplice_payload.h>

static unsigned char ret_in_data[16] = { 0xc3 };

static void run_data_hook(void)
{
    ((void (*)(void))ret_in_data)();
}

LIVEPATCH_LOAD_HOOK(run_data_hook);
