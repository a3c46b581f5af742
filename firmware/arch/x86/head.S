/*
 * _start: every vCPU enters here (rdi = cpu id, rsi = number of vCPUs,
 * IF = 0, no stack). Put the CPU on its own stack with struct cpu_info at
 * the top, load the GDT, reload the segments and call start_cpu().
 */
#include <platform.h>
#include <asm/cpu_info.h>
#include <asm/asm_defns.h>

        .section .text.head, "ax", @progbits
        .code64
ENTRY(_start)
        cli
        cld
        /* rsp = &cpu_stacks[cpu + 1] - sizeof(struct cpu_info) */
        mov     %edi, %eax
        inc     %rax
        shl     $STACK_SHIFT, %rax
        lea     cpu_stacks(%rip), %rsp
        add     %rax, %rsp
        sub     $CPU_INFO_SIZE, %rsp
        movl    %edi, CPU_INFO_processor_id(%rsp)
        movl    %esi, CPU_INFO_processor_id+4(%rsp)

        lgdt    gdt_descr(%rip)
        /* Reload CS through a far return. */
        pushq   $CODE_SELECTOR
        lea     1f(%rip), %rax
        pushq   %rax
        lretq
1:      mov     $DATA_SELECTOR, %eax
        mov     %eax, %ss
        mov     %eax, %ds
        mov     %eax, %es
        xor     %eax, %eax
        mov     %eax, %fs
        mov     %eax, %gs

        xor     %ebp, %ebp              /* end of the frame-pointer chain */
        /* start_cpu(cpu, nr_cpus): rdi, rsi are still as the machine set them. */
        call    start_cpu
2:      cli
        hlt
        jmp     2b
END(_start)

        .section .data, "aw", @progbits
        .p2align 4
gdt_table:
        .quad   0x0000000000000000      /* null */
        .quad   0x00af9a000000ffff      /* 0x08: 64-bit code, DPL 0 */
        .quad   0x00cf92000000ffff      /* 0x10: data, DPL 0 */
gdt_table_end:

        .p2align 4
        .word   0                       /* pad: base is 8-aligned */
        .word   0
        .word   0
gdt_descr:
        .word   gdt_table_end - gdt_table - 1
        .quad   gdt_table
        .type   gdt_descr, @object
        .size   gdt_descr, 10

        /* One 16 KiB stack per CPU, aligned to its size. */
        .section .bss.stacks, "aw", @nobits
        .p2align STACK_SHIFT
        .globl  cpu_stacks
        .type   cpu_stacks, @object
cpu_stacks:
        .skip   NR_CPUS * STACK_SIZE
        .size   cpu_stacks, . - cpu_stacks
