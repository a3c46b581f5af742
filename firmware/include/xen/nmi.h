/* NMI handling with a replaceable callback. */
#ifndef __XEN_NMI_H__
#define __XEN_NMI_H__

#include <platform.h>
#include <asm/regs.h>

typedef int nmi_callback_t(const struct cpu_user_regs *regs, int cpu);

extern nmi_callback_t *nmi_callback;
extern unsigned int nmi_count[NR_CPUS];

int default_nmi_callback(const struct cpu_user_regs *regs, int cpu);

#endif /* __XEN_NMI_H__ */
