/* Interrupt flag and port I/O. */
#ifndef __ASM_SYSTEM_H__
#define __ASM_SYSTEM_H__

#include <xen/types.h>

static inline void local_irq_disable(void) { __asm__ __volatile__ ("cli" ::: "memory"); }
static inline void local_irq_enable(void)  { __asm__ __volatile__ ("sti" ::: "memory"); }
/* sti's shadow covers hlt: no interrupt slips in between. */
static inline void safe_halt(void)         { __asm__ __volatile__ ("sti; hlt" ::: "memory"); }
static inline void cpu_relax(void)         { __asm__ __volatile__ ("pause" ::: "memory"); }

static inline unsigned long local_save_flags(void)
{
    unsigned long flags;

    __asm__ __volatile__ ("pushfq; popq %0" : "=r" (flags) :: "memory");
    return flags;
}

#define local_irq_save(flags) \
    do { (flags) = local_save_flags(); local_irq_disable(); } while (0)

static inline void local_irq_restore(unsigned long flags)
{
    __asm__ __volatile__ ("pushq %0; popfq" :: "g" (flags) : "memory", "cc");
}

#define X86_EFLAGS_IF 0x200UL

static inline void outb(u8 value, u16 port)
{
    __asm__ __volatile__ ("outb %0, %w1" :: "a" (value), "Nd" (port));
}

static inline void outl(u32 value, u16 port)
{
    __asm__ __volatile__ ("outl %0, %w1" :: "a" (value), "Nd" (port) : "memory");
}

static inline u32 inl(u16 port)
{
    u32 value;

    __asm__ __volatile__ ("inl %w1, %0" : "=a" (value) : "Nd" (port) : "memory");
    return value;
}

#endif /* __ASM_SYSTEM_H__ */
