/* The string functions gcc may call even in freestanding code. */
#include <xen/lib.h>

void *memset(void *s, int c, size_t n)
{
    void *d = s;

    __asm__ __volatile__ ("rep stosb" : "+D" (d), "+c" (n) : "a" (c) : "memory");
    return s;
}

void *memcpy(void *dst, const void *src, size_t n)
{
    void *d = dst;

    __asm__ __volatile__ ("rep movsb" : "+D" (d), "+S" (src), "+c" (n) :: "memory");
    return dst;
}

void *memmove(void *dst, const void *src, size_t n)
{
    char *d = dst;
    const char *s = src;

    if ( d <= s || d >= s + n )
        return memcpy(dst, src, n);
    while ( n-- )
        d[n] = s[n];
    return dst;
}

int memcmp(const void *a, const void *b, size_t n)
{
    const unsigned char *p = a, *q = b;

    for ( ; n; n--, p++, q++ )
        if ( *p != *q )
            return *p - *q;
    return 0;
}

size_t strlen(const char *s)
{
    size_t n = 0;

    while ( s[n] )
        n++;
    return n;
}

int strcmp(const char *a, const char *b)
{
    for ( ; *a && *a == *b; a++, b++ )
        ;
    return (unsigned char)*a - (unsigned char)*b;
}

/* Copy at most size - 1 bytes and terminate; returns strlen(src). */
size_t strlcpy(char *dst, const char *src, size_t size)
{
    size_t n = strlen(src);

    if ( size )
    {
        size_t m = n < size - 1 ? n : size - 1;

        memcpy(dst, src, m);
        dst[m] = '\0';
    }
    return n;
}
