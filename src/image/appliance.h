/* Appliances (as libguestfs's supermin): a bootable Linux assembled from
 * what the host has. A directory holding
 *   kernel       the host's kernel
 *   initrd       a cpio of our static /init and the kernel modules needed
 *                to reach the root disk and the devices (with their
 *                dependencies, decompressed)
 *   root.ext2    an ext2 root: busybox with its applet links, /etc basics,
 *                and whatever was added
 *   appliance.json  what it was built from, and its kernel command line
 * cached under a hash of its inputs, so an unchanged rebuild is a lookup. */
#ifndef SMOLVM_IMAGE_APPLIANCE_H
#define SMOLVM_IMAGE_APPLIANCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct appliance_add {
    const char *host;  /* a file or a directory tree */
    const char *guest; /* where it goes in the root (absolute) */
};

struct appliance_options {
    const char *out_dir;            /* NULL: the cache, by input hash */
    const char *kernel;             /* NULL: the newest /boot/vmlinuz-* */
    const char *release;            /* the kernel's; NULL: from the bzImage's header */
    bool builtin_modules;           /* the kernel has every driver built in: no modules
                                     * (smolvm's micro kernel, image/kernel.h) */
    bool cmdline_discovery;         /* it has no ACPI: boot with --virtio-discovery cmdline */
    const char *const *modules;     /* added to the default set */
    size_t module_count;
    const struct appliance_add *adds;
    size_t add_count;
    uint64_t root_size;             /* 0: the content plus room */
    const char *init;               /* our static /init; NULL: next to this program */
    void (*progress)(void *opaque, const char *step);
    void *opaque;
};

struct appliance {
    char *dir;
    bool cached;  /* found ready, nothing built */
    char key[65]; /* the input hash */
    char release[128];   /* the kernel's */
    size_t module_count; /* module files in the initrd, dependencies included */
    uint64_t root_bytes; /* root.ext2's size */
};

int appliance_build(const struct appliance_options *o, struct appliance *out)
    __attribute__((warn_unused_result));
void appliance_release(struct appliance *a);

/* Paths of an appliance directory's parts (DIR/kernel, ...): 0 if DIR
 * is one, -ENOENT (message set) if not. Strings malloc'd. */
struct appliance_files {
    char *kernel, *initrd, *root, *cmdline;
    bool cmdline_discovery; /* virtio devices on the command line: the kernel has no ACPI */
};
int appliance_open(const char *dir, struct appliance_files *out)
    __attribute__((warn_unused_result));
void appliance_files_release(struct appliance_files *f);
/* Whether a VM source names an appliance: a folder (the only folder
 * create and run take); such a VM gets a network by default. */
bool appliance_folder(const char *path);

#endif
