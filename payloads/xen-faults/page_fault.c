/*
 * page_fault: its load hook, run by Xen's master inside the patching
 * window, hands Xen's own strlen a pointer into the directmap past the
 * end of RAM: a not-present page. Xen's do_page_fault finds no fixup and
 * panics with "FATAL PAGE FAULT".
 */
#include <xsplice_payload.h>

#define PAST_THE_DIRECTMAP 0xffff830010000000UL

unsigned long strlen(const char *s);

static void bad_pointer_hook(void)
{
    printk("page_fault: strlen says %lu\n", strlen((const char *)PAST_THE_DIRECTMAP));
}

LIVEPATCH_LOAD_HOOK(bad_pointer_hook);
