/* Functions the host runs through call slots (ABI.md list). */
#ifndef __XEN_CALLS_H__
#define __XEN_CALLS_H__

unsigned long call_stall_irqs_off(unsigned long ns, unsigned long unused);
unsigned long call_set_busy(unsigned long on, unsigned long unused);
unsigned long call_fault(unsigned long kind, unsigned long unused);
unsigned long call_sti_window(unsigned long ns, unsigned long unused);
unsigned long call_poke_jump(unsigned long old, unsigned long new);
unsigned long call_watch(unsigned long fn, unsigned long ns);

#endif /* __XEN_CALLS_H__ */
