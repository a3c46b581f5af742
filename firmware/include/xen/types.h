/* Fixed-width types for freestanding code. */
#ifndef __XEN_TYPES_H__
#define __XEN_TYPES_H__

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long u64;
typedef signed char s8;
typedef short s16;
typedef int s32;
typedef long s64;
typedef unsigned long size_t;
typedef _Bool bool;

#define NULL ((void *)0)
#define true 1
#define false 0

#endif /* __XEN_TYPES_H__ */
