/* smolvm kernel build: a small kernel for smolvm's machine, from Debian's
 * linux-source and a configuration in the repository (image/kernel.h),
 * built once and cached. */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "image/kernel.h"
#include "util/err.h"
#include "util/file.h"

static const char build_help[] =
    "usage: smolvm kernel build [--config micro|PATH] [--source TARBALL] [-j N]\n"
    "                           [-o FILE] [--json]\n"
    "\n"
    "Builds a Linux kernel for smolvm's machine from Debian's linux-source\n"
    "(apt-get install linux-source-6.1): `make allnoconfig` with a configuration\n"
    "fragment on top, the kernel an ELF vmlinux booted by its PVH entry. The\n"
    "micro configuration (kernel/micro.config in smolvm's source, built in) has\n"
    "everything an appliance uses built in and no PCI or ACPI: boot it with\n"
    "--virtio-discovery cmdline (appliances built with --kernel micro do). Built\n"
    "once, niced, and cached by the source's and the configuration's hash under\n"
    "$XDG_CACHE_HOME/smolvm/kernels/; says how it goes on stderr and prints the\n"
    "vmlinux's path.\n"
    "\n"
    "  --config micro|PATH  the configuration fragment (CONFIG_X=y lines; default\n"
    "                       micro); an option Kconfig drops fails the build\n"
    "  --source TARBALL     the kernel source (default: the newest\n"
    "                       /usr/src/linux-source-*.tar.xz)\n"
    "  -j, --jobs N         make's jobs (default: the online CPUs)\n"
    "  -o, --output FILE    also copy the vmlinux to FILE\n"
    "  --json               print {\"path\", \"cached\", \"key\", \"release\", \"seconds\"}\n"
    "  -h, --help           this text\n";

static void progress(void *opaque, const char *line)
{
    (void)opaque;
    fprintf(stderr, "kernel build: %s\n", line);
}

static int build(int argc, char **argv)
{
    static const struct option longs[] = {
        {"config", required_argument, NULL, 'c'}, {"source", required_argument, NULL, 's'},
        {"jobs", required_argument, NULL, 'j'},   {"output", required_argument, NULL, 'o'},
        {"json", no_argument, NULL, 'J'},         {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    struct kernel_build_options o = {.config = "micro", .progress = progress};
    struct kernel_build_result k;
    const char *output = NULL;
    struct timespec t0, t1;
    bool json = false;
    char *end;
    int c;

    while ((c = cli_getopt_long(argc, argv, "j:o:h", longs, NULL)) != -1) {
        switch (c) {
        case 'c': o.config = optarg; break;
        case 's': o.source = optarg; break;
        case 'o': output = optarg; break;
        case 'J': json = true; break;
        case 'j': {
            unsigned long n = strtoul(optarg, &end, 10);
            if (*optarg < '1' || *optarg > '9' || *end || n > 256)
                return cli_fail(CLI_USAGE, "--jobs: '%s' is not a number from 1 to 256", optarg);
            o.jobs = (unsigned)n;
            break;
        }
        case 'h': fputs(build_help, stdout); return CLI_OK;
        default: return CLI_USAGE; /* cli_getopt_long said why */
        }
    }
    if (optind != argc)
        return cli_fail(CLI_USAGE, "unexpected argument '%s'", argv[optind]);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (kernel_build(&o, &k) < 0)
        return cli_fail(CLI_FAILED, "%s", err_msg());
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double seconds = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    int code = CLI_OK;
    if (output && file_copy(k.path, output) < 0)
        code = cli_fail(CLI_FAILED, "%s", err_msg());
    if (code == CLI_OK && json) {
        json_t *j = json_pack("{sssbsssssf}", "path", output ? output : k.path, "cached",
                              k.cached, "key", k.key, "release", k.release, "seconds", seconds);
        char *text = json_dumps(j, 0);
        puts(text);
        free(text);
        json_decref(j);
    } else if (code == CLI_OK) {
        fprintf(stderr, "kernel build: %s in %.3f s: Linux %s\n", k.cached ? "cached" : "built",
                seconds, k.release);
        puts(output ? output : k.path);
    }
    kernel_build_release(&k);
    return code;
}

int cli_kernel(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "build") == 0) {
        cli_set_verb("kernel build");
        optind = 1;
        return build(argc - 1, argv + 1);
    }
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        fputs(build_help, stdout);
        return CLI_OK;
    }
    return cli_fail(CLI_USAGE, "the only kernel verb is 'build' (try 'smolvm kernel build --help')");
}
