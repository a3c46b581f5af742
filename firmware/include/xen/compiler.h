/* Compiler helpers. */
#ifndef __XEN_COMPILER_H__
#define __XEN_COMPILER_H__

#define barrier()          __asm__ __volatile__ ("" ::: "memory")
#define ACCESS_ONCE(x)     (*(volatile __typeof__(x) *)&(x))
#define noreturn           __attribute__((noreturn))
#define noinline           __attribute__((noinline))
/* A real function the host or a payload may call or patch: never folded. */
#define __hook             __attribute__((noipa, used))
#define __used             __attribute__((used))
#define unlikely(x)        __builtin_expect(!!(x), 0)
#define ARRAY_SIZE(a)      (sizeof(a) / sizeof((a)[0]))
#define BUILD_BUG_ON(c)    _Static_assert(!(c), #c)

#endif /* __XEN_COMPILER_H__ */
