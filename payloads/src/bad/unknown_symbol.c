/* unknown_symbol: old_addr relocates against a symbol no one defines: -ENOENT. */
#include <xsplice_payload.h>

void no_such_function(void);

void new_no_such_function(void)
{
}

LIVEPATCH_FUNC(livepatch_unknown_symbol) = {
    .version = LIVEPATCH_PAYLOAD_VERSION,
    .name = "no_such_function",
    .new_addr = new_no_such_function,
    .old_addr = no_such_function,
    .new_size = XSPLICE_NEW_SIZE(new_no_such_function),
    .old_size = 5,
};
