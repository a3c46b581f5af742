/* bad_version: a .livepatch.funcs record with version 3: -EOPNOTSUPP. */
#include <xsplice_payload.h>

const char *xen_hello_world(void)
{
    return "Hello World";
}

LIVEPATCH_FUNC(livepatch_bad_version) = {
    .version = 3,
    .name = "xen_extra_version",
    .new_addr = xen_hello_world,
    .old_addr = xen_extra_version,
    .new_size = XSPLICE_NEW_SIZE(xen_hello_world),
    .old_size = XSPLICE_OLD_SIZE(xen_extra_version),
};
