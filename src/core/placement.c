/* The placement table: every device a VM can have, in the order their
 * slots are handed out. A virtio-mmio device takes the next window (and
 * its IRQ) after those of the rows above it that the config asks for; its
 * state record is named after its window, "virtio-blk@0xd0001000".
 *
 * Saved bundles depend on this table: a bundle's records and its guest's
 * device tree carry these windows. So
 *   - a new device is one new row at the END (its windows come after every
 *     existing one, so configs without it keep their layout);
 *   - rows are never reordered or removed.
 * The rows up to virtio-console reproduce what configs got before the
 * table existed (devices in the link order of src/meson.build). */
#include "core/placement.h"

#include <stdbool.h>
#include <stdio.h>

#include "arch/x86/layout.h"
#include "util/err.h"

static unsigned one(const struct vm_config *cfg)
{
    (void)cfg;
    return 1;
}

static unsigned rng(const struct vm_config *cfg)
{
    return cfg->rng;
}

static unsigned disks(const struct vm_config *cfg)
{
    return cfg->disk_count;
}

static unsigned virtio_console(const struct vm_config *cfg)
{
    return cfg->console == VM_CONSOLE_VIRTIO;
}

static unsigned shares(const struct vm_config *cfg)
{
    return cfg->share_count;
}

static unsigned nets(const struct vm_config *cfg)
{
    return cfg->net.mode != VM_NET_NONE;
}

static unsigned vsock(const struct vm_config *cfg)
{
    return cfg->vsock_cid != 0;
}

static const struct placement_row {
    const char *type;       /* device_type name */
    bool virtio_mmio;       /* takes a window and an IRQ */
    const char *state_name; /* a legacy device's record; NULL: none (virtio: from its window) */
    unsigned (*count)(const struct vm_config *cfg);
} rows[] = {
    {"serial", false, "serial-com1", one}, /* COM1: fixed port and IRQ */
    {"i8042", false, NULL, one},
    {"acpi-pm", false, NULL, one},
    {"vmgenid", false, "vmgenid", one},
    {"virtio-rng", true, NULL, rng},
    {"virtio-blk", true, NULL, disks},
    {"virtio-console", true, NULL, virtio_console},
    {"virtio-fs", true, NULL, shares},
    {"virtio-net", true, NULL, nets},
    {"virtio-vsock", true, NULL, vsock},
    /* New devices here, one row each. */
};

static void place_virtio(const struct placement_row *row, unsigned window,
                         struct device_slot *s)
{
    s->mmio_base = X86_VIRTIO_MMIO_BASE + (uint64_t)window * X86_VIRTIO_MMIO_WINDOW;
    s->mmio_size = X86_VIRTIO_MMIO_WINDOW;
    s->irq = X86_VIRTIO_IRQ_BASE + window;
    snprintf(s->state_name, sizeof(s->state_name), "%s@0x%llx", row->type,
             (unsigned long long)s->mmio_base);
}

int placement_for(const struct vm_config *cfg, struct device_slot *slots, unsigned max,
                  unsigned *count)
{
    unsigned n = 0, windows = 0;

    for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++) {
        unsigned instances = rows[r].count(cfg);
        for (unsigned i = 0; i < instances; i++) {
            struct device_slot *s = &slots[n];
            if (n == max)
                return err_plain(ENOSPC, "more than %u devices", max);
            if (rows[r].virtio_mmio && windows == X86_VIRTIO_MAX_DEVICES)
                return err_plain(ENOSPC, "no room for another virtio-mmio device (at most %d)",
                                 X86_VIRTIO_MAX_DEVICES);
            *s = (struct device_slot){.type = rows[r].type, .index = i};
            if (rows[r].virtio_mmio)
                place_virtio(&rows[r], windows++, s);
            else if (rows[r].state_name)
                snprintf(s->state_name, sizeof(s->state_name), "%s", rows[r].state_name);
            n++;
        }
    }
    *count = n;
    return 0;
}
