/* What a VM is made of, as the CLI (and later a .smolmachine) says it. */
#ifndef SMOLVM_CORE_CONFIG_H
#define SMOLVM_CORE_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#define VM_DEFAULT_MEM (256ull << 20)
#define VM_MIN_MEM (16ull << 20)
#define VM_MAX_CPUS 255 /* APIC IDs fit a byte in the MADT */

#define VM_MAX_DISKS 16
#define VM_DEFAULT_VSOCK_CID 3
#define VM_MAX_PORT_FORWARDS 32
#define VM_MAX_NET_ALLOW 16

/* The guest's network (src/net/config.c parses and checks it). */
enum vm_net_mode {
    VM_NET_NONE,
    VM_NET_USER, /* user-mode NAT (libslirp) in the smolvm-net helper process */
    VM_NET_TAP,  /* a host TAP device (an existing one, or made when root) */
    VM_NET_FD,   /* frames on an inherited SOCK_SEQPACKET socket (tests); not saved */
};

struct vm_port_forward {
    bool udp;
    uint32_t host_addr; /* IPv4, network order; 0: every address */
    uint16_t host_port, guest_port;
};

/* user,allow=CIDR: an IPv4 network the guest may connect to. */
struct vm_net_allow {
    uint32_t addr, mask; /* network order */
};

struct vm_net_config {
    enum vm_net_mode mode;
    bool restrict_outbound; /* user,restrict: only the forwards, no outbound */
    unsigned allow_count;   /* user,allow=...: outbound only to these (checked in the VMM) */
    struct vm_net_allow allow[VM_MAX_NET_ALLOW];
    bool mac_set;           /* --mac; else one is made up at each boot */
    uint8_t mac[6];
    unsigned forward_count;
    struct vm_port_forward forwards[VM_MAX_PORT_FORWARDS];
    char tap_name[16]; /* VM_NET_TAP: IFNAMSIZ, NUL-terminated */
    int fd; /* VM_NET_FD */
};

struct vm_disk_config {
    const char *path;
    const char *id; /* serial the guest reads with GET_ID; NULL: derived */
    const char *format; /* disk image format; NULL: probed */
    bool read_only;
    bool direct; /* O_DIRECT, cache=none */
};

#define VM_MAX_SHARES 8
#define VM_SHARE_TAG_MAX 36 /* virtio-fs config space: tag[36] */

/* A host folder served to the guest as virtio-fs under tag. A bundle's
 * config carries tags only (path NULL): which host folder a tag maps to
 * is decided by whoever starts it (--share). */
struct vm_share_config {
    const char *path;
    const char *tag;
    bool read_only;
};

enum vm_console_kind { VM_CONSOLE_SERIAL, VM_CONSOLE_VIRTIO };
/* How the guest finds its virtio-mmio devices: ACPI DSDT nodes (LNRO0005),
 * or virtio_mmio.device= on the kernel command line (for kernels built
 * with CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES and without ACPI). */
enum vm_discovery { VM_DISCOVERY_ACPI, VM_DISCOVERY_CMDLINE };

struct vm_config {
    uint64_t mem_bytes;
    unsigned cpus;
    const char *kernel_path;
    const char *initrd_path; /* NULL: none */
    const char *cmdline;
    const char *trace_until; /* NULL: no marker */
    bool interactive;        /* stdin is a terminal: raw mode, Ctrl-A x quits */
    enum vm_console_kind console; /* which device gets the host's stdin */
    bool rng;                /* virtio-rng */
    enum vm_discovery discovery;
    bool kernel_cache;       /* boot bzImages from a cached, unpacked vmlinux */
    uint32_t vsock_cid;      /* virtio-vsock's guest CID (>= 3); 0: no device */
    const char *vsock_path;  /* its host unix socket (host-only, not in JSON); NULL: none */
    unsigned disk_count;
    struct vm_disk_config disks[VM_MAX_DISKS];
    struct vm_net_config net;
    unsigned share_count;
    struct vm_share_config shares[VM_MAX_SHARES];
    bool owns_strings; /* from vm_config_from_json(): vm_config_release() frees them */
};

void vm_config_defaults(struct vm_config *cfg);

/* Checks what can be checked without a hypervisor: sizes, counts, host
 * memory. Message and -EINVAL/-ENOMEM on failure. */
int vm_config_check(const struct vm_config *cfg) __attribute__((warn_unused_result));

/* The guest-visible config (not host paths: a bundle carries its own
 * kernel, initrd and disks) as JSON text (malloc'd, NULL with a message
 * on failure), and back: a hostile text gives a message, never a VM with
 * values out of range. */
char *vm_config_to_json(const struct vm_config *cfg);
int vm_config_from_json(const char *text, struct vm_config *cfg)
    __attribute__((warn_unused_result));
void vm_config_release(struct vm_config *cfg);

/* Whether tag can name a share: 1 to VM_SHARE_TAG_MAX bytes of
 * [A-Za-z0-9._-]. */
bool vm_share_tag_valid(const char *tag);
/* --share HOSTDIR[:TAG][,ro] (spec is cut up; the tag points into it, the
 * path is malloc'd, absolute) appended to shares[*count]. 0, or -EINVAL
 * (a bad spec, a tag twice, too many) / -errno (the folder) with err set. */
int vm_share_parse(char *spec, struct vm_share_config *shares, unsigned *count);

/* " smolvm.share=TAG,..." for an appliance's init to mount each share at
 * /mnt/TAG, or "" when there are none or cmdline says where already. The
 * text lives in a static buffer until the next call. */
const char *vm_share_param(const struct vm_share_config *shares, unsigned count,
                           const char *cmdline);

/* A bundle's (or instance's) shares given their host folders at start:
 * each of given[] names a tag of cfg (its path is copied; ro adds to the
 * bundle's ro, never lifts it), and every share of cfg must then have
 * one. A message naming the tag otherwise (-EINVAL). */
int vm_config_map_shares(struct vm_config *cfg, const struct vm_share_config *given,
                         unsigned count) __attribute__((warn_unused_result));

#endif
