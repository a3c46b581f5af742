/* The hypervisor version, and the xen_version hypercall. */
#ifndef __XEN_VERSION_H__
#define __XEN_VERSION_H__

unsigned int xen_major_version(void);
unsigned int xen_minor_version(void);
const char *xen_extra_version(void);
const char *xen_changeset(void);
const char *xen_compile_date(void);
int xen_build_id(const void **p, unsigned int *len);

#define XENVER_version      0
#define XENVER_extraversion 1
typedef char xen_extraversion_t[16];

#define __HYPERVISOR_xen_version 17
#define NR_hypercalls            64

#define ENOSYS  38
#define EINVAL  22
#define ENODATA 61

long do_xen_version(int cmd, void *arg);
long do_hypercall(unsigned long nr, unsigned long a1, unsigned long a2);

#endif /* __XEN_VERSION_H__ */
