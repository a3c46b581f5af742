/*
 * Global functions shorter than the 5 bytes a livepatch jump needs, for
 * the payload loader's negative tests. .size records their real lengths.
 */
#include <asm/asm_defns.h>

        .text
ENTRY(tiny_ret)                         /* 1 byte */
        ret
END(tiny_ret)

ENTRY(tiny_zero)                        /* 3 bytes */
        xor     %eax, %eax
        ret
END(tiny_zero)
