/*
 * The hypervisor's version (Xen's common/version.c). These are real
 * functions of at least 5 bytes: livepatch payloads replace them.
 */
#include <xen/lib.h>
#include <xen/version.h>

__hook unsigned int xen_major_version(void)
{
    return 4;
}

__hook unsigned int xen_minor_version(void)
{
    return 7;
}

__hook const char *xen_extra_version(void)
{
    return "-unstable";
}

__hook const char *xen_changeset(void)
{
    return "xsplice-emu";
}

/* Fixed, so that a rebuild of the same sources has the same build-id. */
__hook const char *xen_compile_date(void)
{
    return "Thu Jan  1 00:00:00 UTC 2016";
}

/* The image's GNU build-id note (see xen.lds). */
extern const char __note_gnu_build_id_start[], __note_gnu_build_id_end[];

struct elf_note {
    u32 namesz, descsz, type;
};

#define NT_GNU_BUILD_ID 3

__hook int xen_build_id(const void **p, unsigned int *len)
{
    const struct elf_note *n = (const void *)__note_gnu_build_id_start;
    const char *name = (const char *)(n + 1);

    if ( __note_gnu_build_id_end - __note_gnu_build_id_start <
         (long)sizeof(*n) + 4 ||
         n->type != NT_GNU_BUILD_ID || n->namesz != 4 ||
         memcmp(name, "GNU", 4) )
        return -ENODATA;
    *p = name + 4;
    *len = n->descsz;
    return 0;
}
