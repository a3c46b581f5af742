/*
 * hook_lab_load: pre-, post-, load and unload hooks that do what the host
 * chose (hook_lab.h); the hypervisor patches xen_extra_version itself.
 */
#include "hook_lab.h"

static void load_hook(void) { misbehave(LOAD); }
static void unload_hook(void) { misbehave(UNLOAD); }

LIVEPATCH_LOAD_HOOK(load_hook);
LIVEPATCH_UNLOAD_HOOK(unload_hook);

HOOK_LAB_RECORD(livepatch_hook_lab_load);
