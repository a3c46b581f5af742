/* Livepatch hooks (ABI.md, "Livepatch hooks in the firmware"). */
#ifndef __XEN_XSPLICE_H__
#define __XEN_XSPLICE_H__

#include <platform.h>
#include <xen/types.h>
#include <asm/regs.h>

extern u8 xsplice_work_to_do[NR_CPUS];
/* The patch_from_irq fault: livepatch work is picked up in interrupt handlers, not in reset_stack_and_jump. */
extern u8 xsplice_from_irq;

/* arch/x86/entry.S: the host drives it through PORT_XSPLICE. */
void check_for_xsplice_work(void);
unsigned long xsplice_reschedule_fn(unsigned long unused0, unsigned long unused1);
unsigned long xsplice_reschedule_from_irq_fn(unsigned long unused0, unsigned long unused1);
int xsplice_mask_nmi_callback(const struct cpu_user_regs *regs, int cpu);

#endif /* __XEN_XSPLICE_H__ */
