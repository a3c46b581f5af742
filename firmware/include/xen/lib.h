/* printk, panic and the string helpers. */
#ifndef __XEN_LIB_H__
#define __XEN_LIB_H__

#include <stdarg.h>
#include <xen/types.h>
#include <xen/compiler.h>

int vsnprintf(char *buf, size_t size, const char *fmt, va_list args);
int snprintf(char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void printk(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
noreturn void panic(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

void *memset(void *s, int c, size_t n);
void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);
size_t strlcpy(char *dst, const char *src, size_t size);

#endif /* __XEN_LIB_H__ */
