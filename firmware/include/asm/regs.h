/*
 * The frame the interrupt entry path builds (Xen's struct cpu_user_regs):
 * general registers, then error_code/entry_vector, then the iret frame.
 */
#ifndef __ASM_REGS_H__
#define __ASM_REGS_H__

#include <platform.h>

#define UREGS_error_code    120
#define UREGS_entry_vector  124
#define UREGS_rflags        144
#define UREGS_SIZE          168

#ifndef __ASSEMBLY__
#include <xen/types.h>
#include <xen/compiler.h>

struct cpu_user_regs {
    u64 r15, r14, r13, r12, rbp, rbx, r11, r10, r9, r8;
    u64 rax, rcx, rdx, rsi, rdi;
    u32 error_code;     /* always 0: the machine pushes no error code */
    u32 entry_vector;   /* written by the entry stub */
    u64 rip, cs, rflags, rsp, ss;   /* pushed by the interrupt */
};

BUILD_BUG_ON(__builtin_offsetof(struct cpu_user_regs, error_code) != UREGS_error_code);
BUILD_BUG_ON(__builtin_offsetof(struct cpu_user_regs, entry_vector) != UREGS_entry_vector);
BUILD_BUG_ON(__builtin_offsetof(struct cpu_user_regs, rip) != UREGS_rip);
BUILD_BUG_ON(__builtin_offsetof(struct cpu_user_regs, rbp) != UREGS_rbp);
BUILD_BUG_ON(__builtin_offsetof(struct cpu_user_regs, rflags) != UREGS_rflags);
BUILD_BUG_ON(__builtin_offsetof(struct cpu_user_regs, rsp) != UREGS_rsp);  /* platform.h */
BUILD_BUG_ON(sizeof(struct cpu_user_regs) != UREGS_SIZE);
BUILD_BUG_ON(UREGS_SIZE - UREGS_rip != INTERRUPT_FRAME_SIZE);

/* C entry points of arch/x86/entry.S */
void do_IRQ(struct cpu_user_regs *regs, unsigned int vector);
void do_nmi(const struct cpu_user_regs *regs);
void do_trap(struct cpu_user_regs *regs, unsigned int vector);
#endif

#endif /* __ASM_REGS_H__ */
