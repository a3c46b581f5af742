/*
 * Hooks at single instructions added on many vCPUs in one call from Python: the xen engine hooks every site of a
 * function on every vCPU when one vCPU first reaches it (1,872 hooks in a first apply on 72 vCPUs: ~2 us each
 * through ctypes, ~0.3 us here).
 *
 * hook_sites() adds, for each vCPU in order and on it for each site in order, a hook of the given type (UC_HOOK_CODE)
 * covering that site's one address: the order, and so the order in which Unicorn calls two hooks at one address,
 * is the one a loop over the vCPUs, then the sites, adding each with uc_hook_add would give.
 */
#include <stddef.h>
#include <stdint.h>

typedef int (*hook_add_fn)(void *uc, size_t *handle, int type, void *callback, void *user, uint64_t begin,
                           uint64_t end, ...);

/* One vCPU's hook for one kind of site: its instance, the callback and the callback's user data (Python lays these
 * and the sites out as arrays of 64-bit words: site_hooks.py). */
struct vcpu_hook {
    void *uc;
    void *callback;
    void *user;
};

/* A site and the hooks to put there: hooks[i] on vCPU i. */
struct site_hook {
    uint64_t address;
    const struct vcpu_hook *hooks;
};

/* 0 when every hook was added; else 1 + the index of the vCPU whose instance refused one (uc_hook_add's status in
 * *status). */
size_t hook_sites(const struct site_hook *sites, size_t nr_sites, size_t nr_vcpus, int type, hook_add_fn hook_add,
                  int *status)
{
    for (size_t vcpu = 0; vcpu < nr_vcpus; vcpu++) {
        for (size_t s = 0; s < nr_sites; s++) {
            const struct vcpu_hook *h = &sites[s].hooks[vcpu];
            size_t handle;
            *status = hook_add(h->uc, &handle, type, h->callback, h->user, sites[s].address,
                               sites[s].address);
            if (*status)
                return vcpu + 1;
        }
    }
    return 0;
}
