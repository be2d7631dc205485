/* The options of a VM that run, pack, start and create share: one table
 * (vm_option_table in vm_options.c), one entry per option, which gives its
 * names, the verbs that take it, its --help text and the function that
 * parses its value. The verbs' getopt tables, their --help option lists
 * and the "options: ..." of an unknown option all come from it.
 *
 * Adding an option (--net, -p/--publish, --mac, --share HOSTDIR[:TAG][,ro],
 * --vsock, ...) is one entry and one parse function:
 * 1. where its value goes: a field of struct vm_config (o->vm) when the VM
 *    is made of it, else of struct vm_options;
 * 2. in vm_options.c, a parse function
 *        static int parse_publish(struct vm_options *o, char *value)
 *    that stores the value (a repeatable option appends; value is argv's,
 *    it may be split in place and lives until exit) and returns 0, or -1
 *    after err_plain() says what is wrong: the verb prints
 *    "smolvm: VERB: --publish: <message>" and exits 2;
 * 3. its entry in vm_option_table, where --help lists it (in table order):
 *        {"publish", 'p', "HOST:GUEST", VM_OPT_BOOTS, 0,
 *         "forward host port HOST to the guest's GUEST (repeatable)", parse_publish},
 *    name, short name (or 0), the value's name in --help (NULL: a flag),
 *    the verbs that take it, the verbs that take it without listing it, the
 *    help text ('\n' starts a further line, indented by the generator),
 *    and the parse function (a flag's gets value NULL). An option that only
 *    keeps its value, or a flag that only sets a bool, needs none: NULL,
 *    then VM_OPTION_KEEP(field) or VM_OPTION_SET(field, true|false), e.g.
 *        {"kernel", 'k', "PATH", ..., NULL, VM_OPTION_KEEP(vm.kernel_path)},
 *        {"no-rng", 0, NULL, ..., NULL, VM_OPTION_SET(vm.rng, false)}. */
#ifndef SMOLVM_CLI_VM_OPTIONS_H
#define SMOLVM_CLI_VM_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cli/serve.h"
#include "core/config.h"
#include "machine/machine.h"

/* The verbs, as masks of vm_option.verbs. */
enum {
    VM_OPT_RUN = 1u << 0,
    VM_OPT_PACK = 1u << 1,
    VM_OPT_START = 1u << 2,
    VM_OPT_CREATE = 1u << 3,
    /* What a VM is built from: the verbs that make one from options. */
    VM_OPT_BOOTS = VM_OPT_RUN | VM_OPT_PACK,
};

/* Everything the four verbs' options set. */
struct vm_options {
    struct vm_config vm;        /* run, pack; create: kernel, initrd, cmdline, cpus, mem */
    struct serve_options serve; /* run, start: the trace, --json */
    const char *name;           /* run, start: the VM's name */
    bool detach;
    const char *appliance;      /* run, pack: an appliance folder */
    const char *output;         /* pack: the bundle to write */
    const char *sign_key;       /* pack: a private key file */
    const char *trusted_key;    /* start, create: --verify's public key file */
    const char *from;           /* create: what the instance starts from */
    enum machine_memory memory; /* start: how saved RAM comes back */
    bool jail;                  /* run, start: confine the VMM (cli/jail.h) */
    int spare_fd;               /* start: a spare's pair with smolvm serve (api/spare.h); 0: none */
    uint64_t cpu_quota_milli;   /* run, start: CPU time, thousandths of a CPU; 0: no limit */
    uint64_t mem_limit;         /* run, start: the VMM's memory in bytes; 0: no limit */
    bool cpus_given, mem_given, cmdline_given, discovery_given, net_given;
};

struct vm_option {
    const char *name;
    char short_name;    /* 0: none */
    const char *arg;    /* the value's name in --help; NULL: a flag */
    unsigned verbs;     /* VM_OPT_* that take it */
    unsigned unlisted;  /* of those, the ones whose --help leaves it out */
    const char *help;
    int (*parse)(struct vm_options *o, char *value);
    /* An option that only keeps its value, or a flag that only sets a
     * bool: parse NULL, and VM_OPTION_KEEP(field) (a const char * field
     * of struct vm_options) or VM_OPTION_SET(field, true or false). */
    size_t value_at;
    enum { VM_OPTION_STRING, VM_OPTION_FALSE, VM_OPTION_TRUE } sets;
};
#define VM_OPTION_KEEP(field) offsetof(struct vm_options, field), VM_OPTION_STRING
#define VM_OPTION_SET(field, value) \
    offsetof(struct vm_options, field), (value) ? VM_OPTION_TRUE : VM_OPTION_FALSE

/* What --help prints around the option list: usage and what the verb does
 * (before), exit status (after). */
struct vm_options_help {
    const char *head, *tail;
};

/* The network a VM gets when no --net was given (run and pack decide it
 * here, so a bundle's config keeps what it was made with: one saved
 * without a NIC never gains one at start). An appliance is a service, as
 * a docker container is: user-mode NAT; a bare --kernel: no NIC. */
void vm_options_default_net(struct vm_options *o);

/* vm_options_parse() printed --help: the verb exits CLI_OK. */
#define VM_OPTIONS_HELP (-1)

/* Parses the options of verb (one VM_OPT_*) from argv into o, whose
 * defaults the caller has set; optind is then the first operand. Returns
 * CLI_OK, CLI_USAGE (the message printed), or VM_OPTIONS_HELP. */
int vm_options_parse(unsigned verb, const struct vm_options_help *help, int argc, char **argv,
                     struct vm_options *o);

#endif
