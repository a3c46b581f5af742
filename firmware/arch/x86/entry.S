/*
 * Interrupt entry, reset_stack_and_jump and check_for_xsplice_work.
 *
 * The machine pushes no error code for any vector, so every stub pushes a
 * zero error_code and its entry_vector (one 8-byte slot, Xen's layout) and
 * joins common_interrupt, which builds a struct cpu_user_regs.
 */
#include <platform.h>
#include <asm/cpu_info.h>
#include <asm/regs.h>
#include <asm/asm_defns.h>

        .text
        .code64

/* 256 stubs of 16 bytes each: the IDT gate of vector v is entry_stubs + 16 * v. */
        .p2align 4
        .globl  entry_stubs
        .type   entry_stubs, @function
entry_stubs:
        vec = 0
        .rept 256
        pushq   $0                      /* error_code = 0, entry_vector = 0 */
        movl    $vec, 4(%rsp)           /* entry_vector */
        jmp     common_interrupt
        .org    entry_stubs + 16 * (vec + 1), 0xcc
        vec = vec + 1
        .endr
        .size   entry_stubs, . - entry_stubs

common_interrupt:
        cld
        pushq   %rdi
        pushq   %rsi
        pushq   %rdx
        pushq   %rcx
        pushq   %rax
        pushq   %r8
        pushq   %r9
        pushq   %r10
        pushq   %r11
        pushq   %rbx
        pushq   %rbp
        pushq   %r12
        pushq   %r13
        pushq   %r14
        pushq   %r15
        mov     %rsp, %rdi              /* struct cpu_user_regs * */
        mov     %rsp, %rbp              /* callee-saved: restores rsp below */
        and     $-16, %rsp              /* 16-byte aligned at the C call */
        movl    UREGS_entry_vector(%rdi), %esi
        cmp     $NMI_VECTOR, %esi
        je      1f
        cmp     $32, %esi
        jb      2f
        call    do_IRQ                  /* do_IRQ(regs, vector) */
        jmp     3f
1:      call    do_nmi                  /* do_nmi(regs) */
        jmp     3f
2:      call    do_trap                 /* do_trap(regs, vector): does not return */
3:      mov     %rbp, %rsp
        popq    %r15
        popq    %r14
        popq    %r13
        popq    %r12
        popq    %rbp
        popq    %rbx
        popq    %r11
        popq    %r10
        popq    %r9
        popq    %r8
        popq    %rax
        popq    %rcx
        popq    %rdx
        popq    %rsi
        popq    %rdi
        add     $8, %rsp                /* error_code, entry_vector */
        iretq
        .type   common_interrupt, @function
        .size   common_interrupt, . - common_interrupt

/*
 * noreturn void reset_stack_and_jump(void (*fn)(void))
 * rsp = this CPU's stack top (the struct cpu_info base); call
 * check_for_xsplice_work on that empty stack (as Xen does: it returns at once
 * unless this CPU's xsplice_work_to_do is set); then tell the host which task
 * runs (PORT_TASK, for the trace) and jump to fn. A zero return address is
 * pushed before the jump so fn starts ABI-aligned (rsp = 8 mod 16) and
 * backtraces end there.
 */
ENTRY(reset_stack_and_jump)
        mov     %rdi, %rbx              /* fn survives the call below */
        mov     %rsp, %rax
        or      $(STACK_SIZE - 1), %rax
        sub     $(CPU_INFO_SIZE - 1), %rax
        mov     %rax, %rsp              /* stack top: the cpu_info base */
        xor     %ebp, %ebp
        cmpb    $0, xsplice_from_irq(%rip)  /* the patch_from_irq fault: interrupt handlers pick it up */
        jne     1f
        call    check_for_xsplice_work  /* every time: the work path then translates no block of its own here */
1:      mov     %ebx, %eax              /* the image lies below 4 GiB */
        outl    %eax, $PORT_TASK
        pushq   $0
        jmp     *%rbx
END(reset_stack_and_jump)

/*
 * void check_for_xsplice_work(void)
 * Return at once unless this CPU's xsplice_work_to_do is set; else ask the
 * controller what to do until it says RETURN. Clobbers the caller-saved
 * registers (cpuid, payload hooks), so C may call it.
 */
ENTRY(check_for_xsplice_work)
        mov     %rsp, %rax              /* this CPU's flag: Xen's fast path, nothing to do */
        or      $(STACK_SIZE - 1), %rax
        movl    (CPU_INFO_processor_id - (CPU_INFO_SIZE - 1))(%rax), %eax
        lea     xsplice_work_to_do(%rip), %rcx
        cmpb    $0, (%rcx, %rax)
        je      .Lreturn
.Lask:
1:      inl     $PORT_XSPLICE, %eax
0:      and     $(XSPLICE_ANSWERS - 1), %eax
        jmp     *xsplice_answers(, %rax, 8)     /* one block per answer: few to translate on each vCPU */
.Lirq_off:
        cli
        jmp     1b
.Lirq_on:
        sti
        jmp     1b
.Lserialise:
        pushq   %rbx
        xor     %eax, %eax
        cpuid                           /* serialise */
        popq    %rbx
        jmp     1b
.Lcall:
        sub     $8, %rsp                /* ABI alignment for the callee */
        call    *%rdx                   /* a payload hook; its result stays in rax */
        add     $8, %rsp
        .globl  xsplice_hook_returned   /* asking from here, and only from here, says the hook returned */
xsplice_hook_returned:
        inl     $PORT_XSPLICE, %eax
        jmp     0b
.Lreturn:
        ret
END(check_for_xsplice_work)

        .section .rodata
        .balign 8
xsplice_answers:                        /* indexed by the controller's answer (XSPLICE_*); unknown: ask again */
        .quad   .Lask, .Lreturn, .Lirq_off, .Lirq_on, .Lserialise, .Lcall, .Lask, .Lask
        .previous
