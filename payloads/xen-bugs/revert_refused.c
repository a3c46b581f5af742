/*
 * revert_refused: patches xen_extra_version to say "Refusing" and has a
 * revert action hook that refuses (-EINVAL) without reverting anything, so
 * the payload stays applied. Replacing it must then fail with -EINVAL and
 * leave it applied (upstream 0dd9268808: before it, REPLACE checked the
 * payload against the wrong rc and Xen panicked "partially reverted").
 */
#include <xsplice_payload.h>

static const char patch_this_fnc[] = "xen_extra_version";

const char *revert_refused_extra_version(void)
{
    return "Refusing";
}

static int refuse_revert(livepatch_payload_t *payload)
{
    (void)payload;
    printk("revert_refused: revert hook refuses: -EINVAL\n");
    return -22;                 /* -EINVAL: nothing reverted */
}

LIVEPATCH_REVERT_HOOK(refuse_revert);

LIVEPATCH_FUNC(livepatch_revert_refused) = {
    .version = LIVEPATCH_PAYLOAD_VERSION,
    .name = patch_this_fnc,
    .new_addr = revert_refused_extra_version,
    .old_addr = xen_extra_version,
    .new_size = XSPLICE_NEW_SIZE(revert_refused_extra_version),
    .old_size = XSPLICE_OLD_SIZE(xen_extra_version),
};
