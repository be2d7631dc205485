/* smolvm image build: an appliance from the host's kernel, modules and
 * busybox (src/image/appliance.h), cached by its inputs. */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "image/appliance.h"
#include "image/kernel.h"
#include "util/err.h"
#include "util/size.h"

#define MAX_ITEMS 64

static const char build_help[] =
    "usage: smolvm image build [-o DIR] [--kernel PATH] [--modules NAME,...]\n"
    "                          [--add PATH[:GUESTPATH]]... [--size SIZE] [--init PATH] [--json]\n"
    "\n"
    "Builds an appliance: the host's kernel, an initramfs with our static init and\n"
    "the kernel modules it needs (with their dependencies), and an ext2 root with\n"
    "busybox and what --add names. Cached by its inputs under\n"
    "$XDG_CACHE_HOME/smolvm/appliance/ (or DIR with -o): an unchanged rebuild is\n"
    "a lookup. Says what it built (kernel release, module files, root size) on\n"
    "stderr and prints the folder; boot it with 'smolvm run DIR'.\n"
    "\n"
    "  -o, --output DIR     where to build (default: the cache). DIR must not exist\n"
    "                       or be an appliance built before, which is replaced\n"
    "                       atomically; anything else there is refused, untouched\n"
    "      --kernel PATH|micro  a bzImage (default: the newest /boot/vmlinuz-*), or\n"
    "                       micro: smolvm's small kernel (smolvm kernel build, built\n"
    "                       once on first use), every driver built in (no modules),\n"
    "                       no ACPI: run finds its devices on the command line\n"
    "      --modules LIST   kernel modules to add to the default set (virtio_mmio,\n"
    "                       virtio_blk, virtio_console, virtio_net, virtio_rng, 9p,\n"
    "                       9pnet_virtio, vmw_vsock_virtio_transport, ext4)\n"
    "      --add HOST[:GUEST]  a file or directory tree into the root (default: same path)\n"
    "      --size SIZE      the root file system's size (default: content + 64 MiB); a\n"
    "                       size the content does not fit in is refused (exit 1)\n"
    "      --init PATH      the initramfs's /init (default: smolvm-init beside smolvm)\n"
    "      --json           print {\"dir\", \"cached\", \"seconds\", \"key\",\n"
    "                       \"kernel_release\", \"module_count\", \"root_bytes\"}\n"
    "  -h, --help           this text\n";

static void progress(void *opaque, const char *step)
{
    if (opaque)
        fprintf(stderr, "image build: %s\n", step);
}

static void kernel_progress(void *opaque, const char *line)
{
    (void)opaque;
    fprintf(stderr, "image build: micro kernel: %s\n", line);
}

/* --kernel micro: smolvm's own kernel, built (once) or found in its cache. */
static int use_micro_kernel(struct appliance_options *o, struct kernel_build_result *k)
{
    struct kernel_build_options ko = {.config = "micro", .progress = kernel_progress};

    if (o->module_count)
        return cli_fail(CLI_USAGE, "--modules: the micro kernel has its drivers built in");
    int r = kernel_build_lookup(&ko, k);
    if (r < 0)
        return cli_fail(CLI_FAILED, "%s", err_msg());
    if (r == 1) {
        fprintf(stderr, "image build: the micro kernel is not built yet: building it now, once "
                        "(smolvm kernel build; it is cached)\n");
        if (kernel_build(&ko, k) < 0)
            return cli_fail(CLI_FAILED, "%s", err_msg());
    }
    o->kernel = k->path;
    o->release = k->release;
    o->builtin_modules = true;
    o->cmdline_discovery = true;
    return CLI_OK;
}

static int split_modules(char *list, const char **out, size_t *count)
{
    char *save = NULL;
    for (char *m = strtok_r(list, ",", &save); m; m = strtok_r(NULL, ",", &save)) {
        if (*count == MAX_ITEMS)
            return cli_fail(CLI_USAGE, "at most %d modules", MAX_ITEMS);
        out[(*count)++] = m;
    }
    return 0;
}

static int build(int argc, char **argv)
{
    static const struct option longs[] = {
        {"output", required_argument, NULL, 'o'}, {"kernel", required_argument, NULL, 'k'},
        {"modules", required_argument, NULL, 'M'}, {"add", required_argument, NULL, 'A'},
        {"size", required_argument, NULL, 's'}, {"init", required_argument, NULL, 'I'},
        {"json", no_argument, NULL, 'j'}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    const char *modules[MAX_ITEMS];
    struct appliance_add adds[MAX_ITEMS];
    struct appliance_options o = {.progress = progress};
    struct appliance a;
    struct timespec t0, t1;
    bool json = false;
    int c;

    while ((c = cli_getopt_long(argc, argv, "o:h", longs, NULL)) != -1) {
        switch (c) {
        case 'o': o.out_dir = optarg; break;
        case 'k': o.kernel = optarg; break;
        case 'I': o.init = optarg; break;
        case 'j': json = true; break;
        case 'M':
            if (split_modules(optarg, modules, &o.module_count) != 0)
                return CLI_USAGE;
            o.modules = modules;
            break;
        case 'A': {
            if (o.add_count == MAX_ITEMS)
                return cli_fail(CLI_USAGE, "at most %d --add", MAX_ITEMS);
            char *colon = strchr(optarg, ':');
            if (colon)
                *colon = 0;
            adds[o.add_count].host = optarg;
            adds[o.add_count].guest = colon ? colon + 1 : optarg;
            if (adds[o.add_count].guest[0] != '/')
                return cli_fail(CLI_USAGE, "--add: the guest path must be absolute");
            o.adds = adds;
            o.add_count++;
            break;
        }
        case 's':
            if (size_parse(optarg, 1ull << 20, &o.root_size) < 0)
                return cli_fail(CLI_USAGE, "--size: %s", err_msg());
            break;
        case 'h': fputs(build_help, stdout); return CLI_OK;
        default: return CLI_USAGE; /* cli_getopt_long said why */
        }
    }
    if (optind != argc)
        return cli_fail(CLI_USAGE, "unexpected argument '%s'", argv[optind]);
    struct kernel_build_result micro = {0};
    if (o.kernel && strcmp(o.kernel, "micro") == 0) {
        int code = use_micro_kernel(&o, &micro);
        if (code != CLI_OK)
            return code;
    }
    o.opaque = isatty(STDERR_FILENO) ? &o : NULL;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int built = appliance_build(&o, &a);
    kernel_build_release(&micro);
    if (built < 0)
        return cli_fail(CLI_FAILED, "%s", err_msg());
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double seconds = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    if (json) {
        json_t *j = json_pack("{sssbsfsssssIsI}", "dir", a.dir, "cached", a.cached, "seconds",
                              seconds, "key", a.key, "kernel_release", a.release, "module_count",
                              (json_int_t)a.module_count, "root_bytes", (json_int_t)a.root_bytes);
        char *text = json_dumps(j, 0);
        puts(text);
        free(text);
        json_decref(j);
    } else {
        fprintf(stderr, "image build: %s in %.3f s: Linux %s, %zu module files, %llu MiB root\n",
                a.cached ? "cached" : "built", seconds, a.release, a.module_count,
                (unsigned long long)(a.root_bytes >> 20));
        puts(a.dir);
    }
    appliance_release(&a);
    return CLI_OK;
}

int cli_image(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "build") == 0) {
        cli_set_verb("image build");
        optind = 1;
        return build(argc - 1, argv + 1);
    }
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        fputs(build_help, stdout);
        return CLI_OK;
    }
    return cli_fail(CLI_USAGE, "the only image verb is 'build' (try 'smolvm image build --help')");
}
