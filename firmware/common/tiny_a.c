/* A static function whose name tiny_b.c uses too (file#name lookups). */
#include <xen/compiler.h>

unsigned int answer_a(void);

static __attribute__((noipa, used)) unsigned int local_answer(void)
{
    return 42;
}

/* Calls it (no tail call, so this wrapper is a patchable 5+ bytes too). */
unsigned int answer_a(void)
{
    unsigned int r = local_answer();

    __asm__ __volatile__ ("" : "+r" (r));
    return r;
}
