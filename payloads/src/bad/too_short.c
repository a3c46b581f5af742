/* too_short: patches tiny_ret, a 1-byte function: old_size 1 < 5, -EINVAL. */
#include <xsplice_payload.h>

void tiny_ret(void);

void new_tiny_ret(void)
{
}

LIVEPATCH_FUNC(livepatch_too_short) = {
    .version = LIVEPATCH_PAYLOAD_VERSION,
    .name = "tiny_ret",
    .new_addr = new_tiny_ret,
    .old_addr = tiny_ret,
    .new_size = XSPLICE_NEW_SIZE(new_tiny_ret),
    .old_size = XSPLICE_OLD_SIZE(tiny_ret),
};
