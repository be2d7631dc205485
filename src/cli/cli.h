/* The smolvm command line: one file per verb, each a main() of its own. */
#ifndef SMOLVM_CLI_CLI_H
#define SMOLVM_CLI_CLI_H

#include <stdarg.h>
#include <stdbool.h>

enum cli_exit {
    CLI_OK = 0,
    CLI_FAILED = 1, /* the work failed: bad input file, no KVM, guest crash */
    CLI_USAGE = 2,  /* the command line itself is wrong */
};

struct cli_verb {
    const char *name;
    const char *summary;
    int (*main)(int argc, char **argv);
};

int cli_run(int argc, char **argv);
int cli_start(int argc, char **argv);
int cli_save(int argc, char **argv);
int cli_ps(int argc, char **argv);
int cli_pause(int argc, char **argv);
int cli_resume(int argc, char **argv);
int cli_stop(int argc, char **argv);
int cli_logs(int argc, char **argv);
int cli_attach(int argc, char **argv);
int cli_disk(int argc, char **argv);
int cli_image(int argc, char **argv);
int cli_kernel(int argc, char **argv);
int cli_create(int argc, char **argv);
int cli_reset(int argc, char **argv);
int cli_commit(int argc, char **argv);
int cli_rm(int argc, char **argv);
int cli_pack(int argc, char **argv);
int cli_ls(int argc, char **argv);
int cli_layers(int argc, char **argv);
int cli_gc(int argc, char **argv);
int cli_keygen(int argc, char **argv);
int cli_bsd_user(int argc, char **argv);
int cli_serve(int argc, char **argv);
int cli_migrate(int argc, char **argv);
int cli_receive(int argc, char **argv);

int cli_exec(int argc, char **argv);
int cli_cp(int argc, char **argv);
int cli_shell(int argc, char **argv);
/* The host end of VM NAME's vsock device: RUNTIME/NAME.vsock (malloc'd;
 * NULL without a runtime folder) (exec.c). */
char *cli_vsock_path(const char *name);

/* The conventions every verb follows (options.c; README "Command line"):
 * - exit CLI_OK, CLI_FAILED for a runtime failure, CLI_USAGE for a wrong
 *   command line (a bad size or name included), and nothing built before
 *   the command line is known to be right;
 * - an error is one line on stderr, "smolvm: VERB: message" naming the
 *   file, never followed by the usage text (--help prints that, to stdout);
 * - under --json a verb prints its result as one JSON object (snake_case
 *   keys, listed in its --help) and an error also as {"error": "message",
 *   "verb": "VERB", "exit_code": N} on stdout. */

/* The verb messages are prefixed with: main() sets it, a verb with verbs
 * of its own ("image build") may refine it. */
void cli_set_verb(const char *verb);
const char *cli_verb(void);
/* --json was given: set by main() for the whole command line (so errors
 * before the option is reached are JSON too) and by cli_getopt_long(). */
void cli_set_json(bool on);
bool cli_json(void);

/* Prints "smolvm: VERB: <message>" on one line to stderr (and the JSON
 * error under --json) and returns code. A message that already begins
 * with "VERB: " is not prefixed twice. */
int cli_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int cli_vfail(int code, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

/* A VM or instance name (letters, digits, '.', '_', '-'): CLI_OK, or
 * CLI_USAGE with the message printed. */
int cli_check_name(const char *name);

struct option;
/* getopt_long() taking exact long option names only ("--mem" is not
 * "--memory"). An unknown or abbreviated option, or one missing its value,
 * is refused here: one line naming the options the verb takes, and exit
 * CLI_USAGE. So it never returns '?' or ':'. */
int cli_getopt_long(int argc, char *const argv[], const char *optstring,
                    const struct option *longopts, int *longindex);

#endif
