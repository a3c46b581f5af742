/*
 * static_target: a valid payload that patches a static function by its
 * file#symbol name. tiny_a.c and tiny_b.c both define a static
 * local_answer (42 and 43): only tiny_a.c's becomes 4242.
 */
#include <xsplice_payload.h>

unsigned int new_local_answer(void)
{
    return 4242;
}

LIVEPATCH_FUNC(livepatch_static_target) = {
    .version = LIVEPATCH_PAYLOAD_VERSION,
    .name = "tiny_a.c#local_answer",
    .old_addr = 0,              /* looked up by name */
    .new_addr = new_local_answer,
    .new_size = XSPLICE_NEW_SIZE(new_local_answer),
    .old_size = XSPLICE_OLD_SIZE(tiny_a_c__local_answer),
};
