/*
 * do_nmi: a well-formed patch of do_nmi. The loader accepts it; the
 * controller must refuse to patch a function on the NMI path.
 */
#include <xsplice_payload.h>

void do_nmi(const void *regs);

unsigned int new_do_nmi_calls __payload_data;

void new_do_nmi(const void *regs)
{
    ++new_do_nmi_calls;
}

LIVEPATCH_FUNC(livepatch_do_nmi) = {
    .version = LIVEPATCH_PAYLOAD_VERSION,
    .name = "do_nmi",
    .new_addr = new_do_nmi,
    .old_addr = do_nmi,
    .new_size = XSPLICE_NEW_SIZE(new_do_nmi),
    .old_size = XSPLICE_OLD_SIZE(do_nmi),
};
