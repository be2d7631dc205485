#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "util/trace.h"

static const struct cli_verb verbs[] = {
    {"run", "boot a Linux kernel in a microVM", cli_run},
    {"start", "start a .smolmachine (resumes it if it holds state) or an instance", cli_start},
    {"save", "save a running VM into a .smolmachine", cli_save},
    {"pack", "write a .smolmachine that boots, from a kernel or an appliance", cli_pack},
    {"ps", "list running VMs", cli_ps},
    {"pause", "pause a running VM", cli_pause},
    {"resume", "resume a paused VM", cli_resume},
    {"stop", "stop a running VM", cli_stop},
    {"logs", "print the console of a detached VM", cli_logs},
    {"attach", "type on the console of a detached VM (Ctrl-P Ctrl-Q detaches)", cli_attach},
    {"exec", "run a command in a running VM (through its guest agent)", cli_exec},
    {"cp", "copy a file into or out of a running VM", cli_cp},
    {"shell", "a shell in a running VM on this terminal", cli_shell},
    {"disk", "create, inspect, check and convert disk images", cli_disk},
    {"image", "build a bootable appliance from the host's kernel and busybox", cli_image},
    {"kernel", "build a small kernel for smolvm's machine (once, cached)", cli_kernel},
    {"create", "create an instance on a layer (from an appliance, bundle or image)", cli_create},
    {"reset", "discard an instance's changes", cli_reset},
    {"commit", "freeze an instance's changes into a new layer", cli_commit},
    {"rm", "remove an instance", cli_rm},
    {"ls", "list instances", cli_ls},
    {"layers", "list the layers in the store", cli_layers},
    {"gc", "remove layers no instance uses", cli_gc},
    {"keygen", "make a key pair to sign and verify .smolmachine files", cli_keygen},
    {"migrate", "move a running VM to another smolvm (smolvm receive)", cli_migrate},
    {"receive", "take a VM another smolvm migrates here, and run it", cli_receive},
    {"serve", "serve the REST API that manages machines (docs/openapi.yaml)", cli_serve},
    {"bsd-user", "run a FreeBSD or NetBSD amd64 program on this Linux host", cli_bsd_user},
};

/* --json anywhere before "--": errors met before the parser reaches it are
 * JSON too. */
static bool wants_json(int argc, char **argv)
{
    for (int i = 2; i < argc && strcmp(argv[i], "--") != 0; i++)
        if (strcmp(argv[i], "--json") == 0)
            return true;
    return false;
}

static void usage(FILE *out)
{
    fputs("usage: smolvm <verb> [options]\n\nverbs:\n", out);
    for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
        fprintf(out, "  %-10s %s\n", verbs[i].name, verbs[i].summary);
    fputs("\n'smolvm <verb> --help' describes a verb's options.\n", out);
}

int main(int argc, char **argv)
{
    const char *self = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
    if (strcmp(self, "smol-bsd-user") == 0) { /* as a binfmt_misc interpreter */
        cli_set_verb("bsd-user");
        return cli_bsd_user(argc, argv);
    }
    trace_start();
    if (argc < 2) {
        usage(stderr);
        return CLI_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return CLI_OK;
    }
    if (strcmp(argv[1], "--version") == 0) {
        puts("smolvm " SMOLVM_VERSION);
        return CLI_OK;
    }
    for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
        if (strcmp(argv[1], verbs[i].name) == 0) {
            cli_set_verb(verbs[i].name);
            /* bsd-user's arguments after the program are the program's. */
            cli_set_json(verbs[i].main != cli_bsd_user && wants_json(argc, argv));
            return verbs[i].main(argc - 1, argv + 1);
        }
    return cli_fail(CLI_USAGE, "unknown verb '%s' (try 'smolvm --help')", argv[1]);
}
