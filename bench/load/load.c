/* The VMM's host-side load path, without KVM: open and check the kernel
 * (a bzImage swapped for its cached unpacked vmlinux, as core/vm.c does)
 * and initrd, map guest RAM, load the kernel and initrd into it (what
 * `smolvm run --trace-boot` reports as inputs_read, memory_mapped and
 * kernel_loaded, less KVM's own calls). Built against a tree's libsmolvm.a;
 * a tree that has arch/x86/kernel_file.h loads an ELF's segments from its
 * file, an older one reads the file whole first, as its vm.c does.
 * Prints: inputs_us memory_us loaded_us total_us */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "arch/x86/boot.h"
#include "arch/x86/layout.h"
#include "arch/x86/unpack.h"
#include "core/memory.h"
#include "util/err.h"
#include "util/file.h"
#if __has_include("arch/x86/kernel_file.h")
#include "arch/x86/kernel_file.h"
#define FROM_FILE 1
#endif

struct initrd {
    int fd;
    const char *path;
};

static int read_initrd(void *opaque, void *dst, size_t len)
{
    struct initrd *i = opaque;
    return file_read_exact(i->fd, dst, len, "initrd", i->path);
}

/* A bzImage's cached unpacked vmlinux (made on first use: run once
 * before timing), else path. Only a bzImage is read whole, as core/vm.c
 * does to find its cache entry. */
static const char *unpacked(const char *path)
{
    uint8_t head[0x206];
    struct mapped_file image;
    char *dir, *out = NULL;
    size_t size;
    int fd = file_open_read(path, "kernel", &size);

    if (fd < 0 || size < sizeof(head) || file_read_exact(fd, head, sizeof(head), "kernel", path) < 0 ||
        x86_kernel_kind(head, sizeof(head)) != X86_KERNEL_BZIMAGE || file_map(path, "kernel", &image) < 0) {
        if (fd >= 0)
            close(fd);
        return path;
    }
    close(fd);
    dir = x86_kernel_cache_dir();
    (void)!x86_unpacked_kernel(image.data, image.len, dir, &out);
    file_unmap(&image);
    free(dir);
    return out ? out : path;
}

static long long now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000ll + t.tv_nsec / 1000;
}

static int fail(const char *what)
{
    fprintf(stderr, "load: %s: %s\n", what, err_msg());
    return 1;
}

int main(int argc, char **argv)
{
    struct guest_region layout[GUEST_MEMORY_MAX_REGIONS];
    struct guest_memory mem;
    struct x86_cpu_state bsp;
    struct initrd initrd = {.path = argc > 2 ? argv[2] : NULL};
    struct x86_boot_request req = {.cmdline = "console=ttyS0 quiet panic=-1",
                                   .read_initrd = read_initrd, .read_initrd_opaque = &initrd,
                                   .rsdp_gpa = X86_ACPI_ADDR};
    unsigned long long mem_mib = argc > 3 ? strtoull(argv[3], NULL, 10) : 256;
    long long t0, t_inputs, t_memory, t_loaded;
    const char *path;
#ifdef FROM_FILE
    struct x86_kernel_file kernel;
#else
    struct mapped_file kernel;
#endif

    if (argc < 3) {
        fprintf(stderr, "usage: load VMLINUX INITRD [MEM_MIB]\n");
        return 2;
    }
    t0 = now_us();
    path = unpacked(argv[1]);
#ifdef FROM_FILE
    if (x86_kernel_open(path, "kernel", &kernel) < 0)
        return fail("kernel");
    x86_kernel_request(&kernel, &req);
#else
    if (file_map(path, "kernel", &kernel) < 0 || x86_kernel_check(kernel.data, kernel.len) < 0)
        return fail("kernel");
    req.kernel = kernel.data;
    req.kernel_len = kernel.len;
#endif
    initrd.fd = file_open_read(initrd.path, "initrd", &req.initrd_len);
    if (initrd.fd < 0)
        return fail("initrd");
    t_inputs = now_us();
    if (guest_memory_alloc(&mem, layout, x86_ram_layout(mem_mib << 20, layout)) < 0)
        return fail("memory");
    t_memory = now_us();
    if (x86_boot_load(&mem, &req, &bsp) < 0)
        return fail("load");
    t_loaded = now_us();
    printf("%lld %lld %lld %lld\n", t_inputs - t0, t_memory - t_inputs, t_loaded - t_memory,
           t_loaded - t0);
    return 0;
}
