/*
 * xen_hello_world: xen_extra_version() returns "Hello World".
 * Xen's test payload: a load hook that uses writable data (so once
 * reverted, the payload may not be applied again: unload and load it).
 */
#include <xsplice_payload.h>

static const char hello_world_patch_this_fnc[] = "xen_extra_version";
/* Xen's test payload carries this metadata (its Makefile's modinfo.o): `list` shows it. */
static const char modinfo[] __attribute__((section(".modinfo"), used)) = "LIVEPATCH_RULEZ";
static unsigned int cnt __payload_data;

const char *xen_hello_world(void)
{
    return "Hello World";
}

static void apply_hook(void)
{
    printk("xen_hello_world: load hook executing\n");
}

static void revert_hook(void)
{
    printk("xen_hello_world: unload hook executing\n");
}

static void hi_func(void)
{
    printk("xen_hello_world: hi_func: Hi! (called %u times)\n", ++cnt);
}

static void check_fnc(void)
{
    printk("xen_hello_world: check_fnc: hi_func called %u times\n", cnt);
}

LIVEPATCH_LOAD_HOOK(apply_hook);
LIVEPATCH_UNLOAD_HOOK(revert_hook);

/* Imbalance here, as in Xen: two load and three unload hooks. */
LIVEPATCH_LOAD_HOOK(hi_func);
LIVEPATCH_UNLOAD_HOOK(hi_func);
LIVEPATCH_UNLOAD_HOOK(check_fnc);

LIVEPATCH_FUNC(livepatch_xen_hello_world) = {
    .version = LIVEPATCH_PAYLOAD_VERSION,
    .name = hello_world_patch_this_fnc,
    .new_addr = xen_hello_world,
    .old_addr = xen_extra_version,
    .new_size = XSPLICE_NEW_SIZE(xen_hello_world),
    .old_size = XSPLICE_OLD_SIZE(xen_extra_version),
};
