/* Helpers for the assembly files. */
#ifndef __ASM_ASM_DEFNS_H__
#define __ASM_ASM_DEFNS_H__

#ifdef __ASSEMBLY__
#define ENTRY(name)       \
    .globl name;          \
    .type name, @function;\
    .p2align 4, 0x90;     \
name:

#define END(name)         \
    .size name, . - name
#endif

#endif /* __ASM_ASM_DEFNS_H__ */
