/* The per-CPU scheduler: idle, workload and busy tasks. */
#ifndef __XEN_SCHED_H__
#define __XEN_SCHED_H__

#include <platform.h>
#include <xen/types.h>
#include <xen/compiler.h>

typedef void task_fn_t(void);

extern unsigned long workload_runs[NR_CPUS];
extern unsigned long busy_work[NR_CPUS];
extern u8 busy_flag[NR_CPUS];
extern u8 workload_due[NR_CPUS];

void scheduler_init(void);
noreturn void schedule(void);
noreturn void idle_loop(void);
noreturn void workload_task(void);
noreturn void busy_task(void);
/* arch/x86/entry.S */
noreturn void reset_stack_and_jump(task_fn_t *fn);

#endif /* __XEN_SCHED_H__ */
