/*
 * general_protection: its load hook, run by Xen's master inside the
 * patching window, hands Xen's own strlen a non-canonical pointer. Xen's
 * do_general_protection finds no fixup and panics with "GENERAL
 * PROTECTION FAULT".
 */
#include <xsplice_payload.h>

#define NON_CANONICAL 0x8000000000000000UL

unsigned long strlen(const char *s);

static void bad_pointer_hook(void)
{
    printk("general_protection: strlen says %lu\n", strlen((const char *)NON_CANONICAL));
}

LIVEPATCH_LOAD_HOOK(bad_pointer_hook);
