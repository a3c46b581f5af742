/* The xen_version hypercall and the hypercall table. */
#include <xen/lib.h>
#include <xen/version.h>

long do_xen_version(int cmd, void *arg)
{
    switch ( cmd )
    {
    case XENVER_version:
        return (xen_major_version() << 16) | xen_minor_version();
    case XENVER_extraversion:
        strlcpy(arg, xen_extra_version(), sizeof(xen_extraversion_t));
        return 0;
    }
    return -EINVAL;
}

typedef long hypercall_fn_t(unsigned long, unsigned long);

hypercall_fn_t *const hypercall_table[NR_hypercalls] = {
    [__HYPERVISOR_xen_version] = (hypercall_fn_t *)do_xen_version,
};

long do_hypercall(unsigned long nr, unsigned long a1, unsigned long a2)
{
    hypercall_fn_t *fn;

    if ( nr >= NR_hypercalls )
        return -ENOSYS;
    fn = ACCESS_ONCE(hypercall_table[nr]);
    if ( !fn )
        return -ENOSYS;
    return fn(a1, a2);
}
