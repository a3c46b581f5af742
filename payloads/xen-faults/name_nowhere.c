/*
 * name_nowhere: hello world's record, its name pointing where nothing is
 * mapped. Xen's loader takes it (it finds the function by old_addr and
 * never reads the name to patch), and Xen applies and reverts it; the
 * testbed, which reads each record Xen patches from to note it, names it
 * by that address instead of stopping the run.
 */
#include <xsplice_payload.h>

#define NOWHERE 0xffffc2d040600010UL

const char *xen_hello_world(void)
{
    return "Hello World";
}

LIVEPATCH_FUNC(livepatch_name_nowhere) = {
    .version = LIVEPATCH_PAYLOAD_VERSION,
    .name = (const char *)NOWHERE,
    .new_addr = xen_hello_world,
    .old_addr = xen_extra_version,
    .new_size = XSPLICE_NEW_SIZE(xen_hello_world),
    .old_size = XSPLICE_OLD_SIZE(xen_extra_version),
};
