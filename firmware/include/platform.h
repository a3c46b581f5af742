/*
 * The numbers of firmware/ABI.md, shared with xsplice_emu/platform.py.
 * Keep this file to plain "#define NAME value" lines: a test parses it.
 * Usable from both C and assembly.
 */
#ifndef __PLATFORM_H__
#define __PLATFORM_H__

/* Memory */
#define RAM_BASE 0x1000
/* All of RAM again, read-write and never executable: how code is written (text is read-only) */
#define TEXT_ALIAS_OFFSET 0x100000000
#define CLOCK_PAGE 0x10000
#define IMAGE_BASE 0x100000
#define NR_CPUS 256
#define STACK_SIZE 16384
/* The lowest page of each CPU's stack is its guard page: unmapped, a stack that runs over faults there */
#define STACK_GUARD_SIZE 4096

/* I/O ports */
#define PORT_CONSOLE 0xE9
#define PORT_FATAL 0xF0
#define PORT_TIMER 0xF1
#define PORT_START_CPU 0xF2
#define PORT_CALL_DONE 0xF3
#define PORT_XSPLICE 0xF4
#define PORT_TASK 0xF5

/* Vectors */
#define NMI_VECTOR 2
#define LOCAL_TIMER_VECTOR 0xF9
#define CALL_FUNCTION_VECTOR 0xFB
#define EVENT_CHECK_VECTOR 0xFC

/* PORT_FATAL's eax for a panic (not a vector) */
#define FATAL_PANIC 0xFFFF

/* Answers of PORT_XSPLICE to check_for_xsplice_work */
#define XSPLICE_WAIT 0
#define XSPLICE_RETURN 1
#define XSPLICE_IRQ_OFF 2
#define XSPLICE_IRQ_ON 3
#define XSPLICE_SERIALISE 4
#define XSPLICE_CALL 5
#define XSPLICE_ANSWERS 8             /* the table check_for_xsplice_work jumps through: a power of two */

/* Call slots: call_slots[NR_CPUS][CALL_SLOTS], CALL_SLOT_SIZE bytes each */
#define CALL_SLOTS 8
#define CALL_SLOT_SIZE 48
#define CALL_SLOT_FREE 0
#define CALL_SLOT_PENDING 1
#define CALL_SLOT_RUNNING 2
#define CALL_SLOT_DONE 3
/* struct call_slot: offsets of the fields the host reads (asm/smp.h checks them) */
#define CALL_SLOT_RESULT 24
#define CALL_SLOT_STATE 32
#define CALL_SLOT_SEQ 40

/* x86: one IDT gate; what the CPU pushes on interrupt entry without an error code */
#define IDT_GATE_SIZE 16
#define INTERRUPT_FRAME_SIZE 40

/* struct cpu_user_regs (asm/regs.h), the frame the interrupt entry builds: the host's stack walk reads the
 * interrupted context's frame pointer and RIP from it */
#define UREGS_rbp 32
#define UREGS_rip 128
#define UREGS_rsp 152

/* GDT selectors */
#define CODE_SELECTOR 0x08
#define DATA_SELECTOR 0x10

#endif /* __PLATFORM_H__ */
