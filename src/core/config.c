#include "core/config.h"

#include <string.h>
#include <unistd.h>

#include "util/err.h"

void vm_config_defaults(struct vm_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->mem_bytes = VM_DEFAULT_MEM;
    cfg->cpus = 1;
    cfg->cmdline = "console=ttyS0";
    cfg->rng = true;
    cfg->kernel_cache = true;
}

static uint64_t host_memory_bytes(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
    return pages > 0 && size > 0 ? (uint64_t)pages * (uint64_t)size : UINT64_MAX;
}

int vm_config_check(const struct vm_config *cfg)
{
    uint64_t host = host_memory_bytes();

    if (!cfg->kernel_path)
        return err_plain(EINVAL, "no kernel given (--kernel PATH)");
    if (cfg->cpus == 0 || cfg->cpus > VM_MAX_CPUS)
        return err_plain(EINVAL, "--cpus must be between 1 and %d", VM_MAX_CPUS);
    if (cfg->mem_bytes < VM_MIN_MEM)
        return err_plain(EINVAL, "--mem must be at least %llu MiB",
                         (unsigned long long)(VM_MIN_MEM >> 20));
    if (cfg->mem_bytes % 4096)
        return err_plain(EINVAL, "--mem must be a multiple of 4 KiB");
    if (cfg->mem_bytes > host)
        return err_plain(ENOMEM, "--mem of %llu MiB is more than this host's %llu MiB",
                         (unsigned long long)(cfg->mem_bytes >> 20),
                         (unsigned long long)(host >> 20));
    return 0;
}
