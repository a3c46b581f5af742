/* The IDT, interrupt dispatch and fatal exceptions. */
#include <platform.h>
#include <xen/lib.h>
#include <xen/softirq.h>
#include <xen/time.h>
#include <asm/regs.h>
#include <asm/smp.h>
#include <asm/system.h>
#include <asm/cpu_info.h>

struct idt_entry {
    u16 offset_low;
    u16 selector;
    u8 ist;
    u8 type_attr;
    u16 offset_mid;
    u32 offset_high;
    u32 reserved;
};
BUILD_BUG_ON(sizeof(struct idt_entry) != IDT_GATE_SIZE);

struct __attribute__((packed)) desc_ptr {
    u16 limit;
    u64 base;
};

struct idt_entry idt_table[256] __attribute__((aligned(16)));
static struct desc_ptr idt_descr;

extern const char entry_stubs[];        /* entry.S: 256 stubs, 16 bytes each */

/* An interrupt gate: present, DPL 0, type 0xE (IF cleared on entry). */
static void set_intr_gate(unsigned int vector, unsigned long addr)
{
    struct idt_entry *e = &idt_table[vector];

    e->offset_low = addr & 0xffff;
    e->selector = CODE_SELECTOR;
    e->ist = 0;
    e->type_attr = 0x8e;
    e->offset_mid = (addr >> 16) & 0xffff;
    e->offset_high = addr >> 32;
    e->reserved = 0;
}

/* BSP only, before any other CPU starts. */
void trap_init(void)
{
    unsigned int v;

    for ( v = 0; v < 256; v++ )
        set_intr_gate(v, (unsigned long)entry_stubs + 16 * v);
    idt_descr.limit = sizeof(idt_table) - 1;
    idt_descr.base = (unsigned long)idt_table;
}

/* Every CPU: load the (shared) IDT. */
void load_idt(void)
{
    __asm__ __volatile__ ("lidt %0" :: "m" (idt_descr));
}

/* Give up: report vector (or FATAL_PANIC) and rip to the machine, stop. */
noreturn void fatal(unsigned int code, unsigned long rip)
{
    __asm__ __volatile__ ("outl %%eax, %w2"
                          :: "a" (code), "D" (rip), "Nd" (PORT_FATAL) : "memory");
    for ( ;; )
        __asm__ __volatile__ ("cli; hlt");
}

/* Exceptions 0-31 except the NMI: fatal. */
void do_trap(struct cpu_user_regs *regs, unsigned int vector)
{
    printk("FATAL TRAP: vector %u, rip %#lx\n", vector, regs->rip);
    fatal(vector, regs->rip);
}

void do_IRQ(struct cpu_user_regs *regs, unsigned int vector)
{
    switch ( vector )
    {
    case LOCAL_TIMER_VECTOR:
        timer_interrupt();
        break;
    case CALL_FUNCTION_VECTOR:
        smp_call_function_interrupt();
        break;
    case EVENT_CHECK_VECTOR:
        event_check_interrupt();
        break;
    default:
        printk("spurious interrupt: vector %#x, rip %#lx\n", vector, regs->rip);
        break;
    }
}
