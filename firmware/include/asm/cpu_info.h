/*
 * struct cpu_info sits at the top of each CPU's stack (Xen style);
 * get_cpu_info() finds it from rsp. Shared with assembly.
 */
#ifndef __ASM_CPU_INFO_H__
#define __ASM_CPU_INFO_H__

#include <platform.h>

#define STACK_SHIFT             14      /* log2(STACK_SIZE) */
#define CPU_INFO_SIZE           16      /* sizeof(struct cpu_info), a multiple of 16 */
#define CPU_INFO_processor_id   0

#ifndef __ASSEMBLY__
#include <xen/types.h>
#include <xen/compiler.h>

struct cpu_info {
    unsigned int processor_id;
    unsigned int nr_cpus;               /* as passed to _start */
    unsigned long reserved;
};

BUILD_BUG_ON(sizeof(struct cpu_info) != CPU_INFO_SIZE);
BUILD_BUG_ON(__builtin_offsetof(struct cpu_info, processor_id) != CPU_INFO_processor_id);
BUILD_BUG_ON((1 << STACK_SHIFT) != STACK_SIZE);

static inline struct cpu_info *get_cpu_info(void)
{
    unsigned long sp;

    __asm__ ("mov %%rsp, %0" : "=r" (sp));
    return (struct cpu_info *)((sp | (STACK_SIZE - 1)) + 1 - sizeof(struct cpu_info));
}

#define smp_processor_id() ((int)get_cpu_info()->processor_id)

extern char cpu_stacks[NR_CPUS][STACK_SIZE];
#endif /* !__ASSEMBLY__ */

#endif /* __ASM_CPU_INFO_H__ */
