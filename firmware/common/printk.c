/*
 * printk: a minimal vsnprintf and the console on PORT_CONSOLE. Every line
 * gets a "cpuN: " prefix; a line is emitted with IRQs off so an interrupt
 * handler's line never splits it.
 */
#include <platform.h>
#include <xen/lib.h>
#include <asm/system.h>
#include <asm/cpu_info.h>
#include <asm/traps.h>

struct out {
    char *buf;
    size_t size, len;
};

static void put(struct out *o, char c)
{
    if ( o->len + 1 < o->size )
        o->buf[o->len] = c;
    o->len++;
}

static void put_str(struct out *o, const char *s, int width, bool left)
{
    int n = 0;

    if ( !s )
        s = "(null)";
    while ( s[n] )
        n++;
    for ( ; !left && width > n; width-- )
        put(o, ' ');
    while ( *s )
        put(o, *s++);
    for ( ; left && width > n; width-- )
        put(o, ' ');
}

static void put_num(struct out *o, unsigned long v, unsigned int base, bool neg,
                    int width, char pad, bool left, const char *prefix)
{
    char tmp[24];
    int n = 0, len;
    const char *digits = "0123456789abcdef";

    do {
        tmp[n++] = digits[v % base];
        v /= base;
    } while ( v );
    len = n + (neg ? 1 : 0) + (prefix ? 2 : 0);
    if ( pad == ' ' && !left )
        for ( ; width > len; width-- )
            put(o, ' ');
    if ( neg )
        put(o, '-');
    if ( prefix )
    {
        put(o, prefix[0]);
        put(o, prefix[1]);
    }
    if ( pad == '0' && !left )
        for ( ; width > len; width-- )
            put(o, '0');
    while ( n )
        put(o, tmp[--n]);
    for ( ; left && width > len; width-- )
        put(o, ' ');
}

/* %s %c %d %i %u %x %p %% with l/ll/z, width, '0', '-' and '#'. */
int vsnprintf(char *buf, size_t size, const char *fmt, va_list args)
{
    struct out o = { buf, size, 0 };

    for ( ; *fmt; fmt++ )
    {
        bool left = false, alt = false;
        char pad = ' ';
        int width = 0, lng = 0;

        if ( *fmt != '%' )
        {
            put(&o, *fmt);
            continue;
        }
        for ( fmt++; ; fmt++ )
        {
            if ( *fmt == '-' )
                left = true;
            else if ( *fmt == '0' )
                pad = '0';
            else if ( *fmt == '#' )
                alt = true;
            else
                break;
        }
        for ( ; *fmt >= '0' && *fmt <= '9'; fmt++ )
            width = width * 10 + (*fmt - '0');
        for ( ; *fmt == 'l' || *fmt == 'z'; fmt++ )
            lng++;

        switch ( *fmt )
        {
        case 's':
            put_str(&o, va_arg(args, const char *), width, left);
            break;
        case 'c':
            put(&o, (char)va_arg(args, int));
            break;
        case 'd':
        case 'i':
        {
            long v = lng ? va_arg(args, long) : va_arg(args, int);

            put_num(&o, v < 0 ? -(unsigned long)v : (unsigned long)v, 10,
                    v < 0, width, pad, left, NULL);
            break;
        }
        case 'u':
        case 'x':
        case 'X':
        {
            unsigned long v = lng ? va_arg(args, unsigned long)
                                  : va_arg(args, unsigned int);

            put_num(&o, v, *fmt == 'u' ? 10 : 16, false, width, pad, left,
                    alt && *fmt != 'u' ? "0x" : NULL);
            break;
        }
        case 'p':
            put_num(&o, (unsigned long)va_arg(args, void *), 16, false,
                    width, pad, left, "0x");
            break;
        case '%':
            put(&o, '%');
            break;
        case '\0':
            fmt--;                      /* a lone '%' ends the format */
            break;
        default:
            put(&o, '%');
            put(&o, *fmt);
            break;
        }
    }
    if ( size )
        buf[o.len < size ? o.len : size - 1] = '\0';
    return o.len;
}

int snprintf(char *buf, size_t size, const char *fmt, ...)
{
    va_list args;
    int n;

    va_start(args, fmt);
    n = vsnprintf(buf, size, fmt, args);
    va_end(args);
    return n;
}

/* Per CPU: the console is in the middle of a line (no prefix due). */
static u8 console_mid_line[NR_CPUS];

static void console_write(const char *s)
{
    unsigned int cpu = smp_processor_id();
    unsigned long flags;
    char prefix[16];

    snprintf(prefix, sizeof(prefix), "cpu%u: ", cpu);
    local_irq_save(flags);
    for ( ; *s; s++ )
    {
        const char *p;

        if ( !console_mid_line[cpu] )
            for ( p = prefix; *p; p++ )
                outb(*p, PORT_CONSOLE);
        outb(*s, PORT_CONSOLE);
        console_mid_line[cpu] = (*s != '\n');
    }
    local_irq_restore(flags);
}

void printk(const char *fmt, ...)
{
    char buf[256];
    va_list args;

    va_start(args, fmt);
    vsnprintf(buf, sizeof(buf), fmt, args);
    va_end(args);
    console_write(buf);
}

noreturn void panic(const char *fmt, ...)
{
    char buf[256];
    va_list args;
    size_t n;

    local_irq_disable();
    va_start(args, fmt);
    vsnprintf(buf, sizeof(buf), fmt, args);
    va_end(args);
    n = strlen(buf);
    console_write("PANIC: ");
    console_write(buf);
    if ( n == 0 || buf[n - 1] != '\n' )
        console_write("\n");
    fatal(FATAL_PANIC, (unsigned long)__builtin_return_address(0));
}
