/* arch/x86/traps.c */
#ifndef __ASM_TRAPS_H__
#define __ASM_TRAPS_H__

#include <xen/compiler.h>

void trap_init(void);
void load_idt(void);
noreturn void fatal(unsigned int code, unsigned long rip);

#endif /* __ASM_TRAPS_H__ */
