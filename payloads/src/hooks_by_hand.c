/*
 * hooks_by_hand: apply and revert hooks that patch by hand with Xen's
 * helpers (apply_payload / revert_payload in the firmware), instead of
 * letting the hypervisor do it. The master writes the jump through the
 * writable alias of the text, inside the rendezvous; every other vCPU runs
 * it once it serialises on its way out (firmware/ABI.md).
 */
#include <xsplice_payload.h>

static const char extra[] = "xen_extra_version";

const char *xen_by_hand(void)
{
    return "Patched by hand";
}

static int apply_hook(livepatch_payload_t *payload)
{
    return apply_payload(payload);
}

static int revert_hook(livepatch_payload_t *payload)
{
    return revert_payload(payload);
}

LIVEPATCH_APPLY_HOOK(apply_hook);
LIVEPATCH_REVERT_HOOK(revert_hook);

LIVEPATCH_FUNC(livepatch_hooks_by_hand) = {
    .version = LIVEPATCH_PAYLOAD_VERSION,
    .name = extra,
    .new_addr = xen_by_hand,
    .old_addr = xen_extra_version,
    .new_size = XSPLICE_NEW_SIZE(xen_by_hand),
    .old_size = XSPLICE_OLD_SIZE(xen_extra_version),
};
