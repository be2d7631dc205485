/* smolvm disk: qemu-img's verbs over the disk library, one file per group
 * of verbs, and what they share (main.c): the verb table, exact option
 * parsing, --help, --json, and one error format for every verb. */
#ifndef SMOLVM_CLI_DISK_DISK_CLI_H
#define SMOLVM_CLI_DISK_DISK_CLI_H

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>

#include "cli/cli.h"
#include "disk/copy.h"
#include "disk/disk.h"

struct json_t;

/* qemu-img check's exit status for a format it cannot check. */
#define DISK_CHECK_UNSUPPORTED 63

/* Values of long options that have no short one (above any char). */
enum {
    DISK_OPT_JSON = 0x100,
    DISK_OPT_OUTPUT,
    DISK_OPT_SHRINK,
    DISK_OPT_BACKING_CHAIN,
    DISK_OPT_FLUSH_INTERVAL,
    DISK_OPT_SIZE,
};

struct disk_verb {
    const char *name, *summary;
    const char *usage;   /* after "smolvm disk " */
    int (*main)(int argc, char **argv);
    const char *shorts;  /* getopt's optstring */
    const struct option *longs; /* or NULL; --json/--output are added when json */
    bool json;           /* takes --json and --output=json */
    const char *options; /* for --help: one line per option */
    const char *json_keys; /* for --help: what --json prints */
};

/* The verb running, and whether it reports as JSON (errors too). */
extern const struct disk_verb *disk_verb;
extern bool disk_json;

/* The one option parser of the disk verbs: the next option (getopt_long's
 * value), -1 at the end, or '?' after a bad one was reported (the verb
 * returns CLI_USAGE). What every verb takes is handled here: -f FORMAT
 * (into *format: the image's format, never probed when given), --json and
 * --output. */
int disk_option(int argc, char **argv, const char **format);

/* "smolvm: disk VERB: message" on stderr, and under --json also
 * {"error", "verb", "exit_code"} on stdout (cli_fail's convention); returns code. */
int disk_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A usage error: the message, exit 2. */
#define disk_usage(...) disk_fail(CLI_USAGE, __VA_ARGS__)
/* The library's message (err_msg()) about path, naming path once; exit 1. */
extern int disk_failure_code;
int disk_failed(const char *path);
/* The same for an operation on two images (convert, compare), when the
 * message does not say which one. */
int disk_failed_pair(const char *a, const char *b);
/* 0 when the operands after the options number min to max; else -1 after
 * a one-line usage error naming the verb's usage. */
int disk_operands(int argc, int min, int max);

/* Prints j (indented, as qemu-img) and frees it; returns CLI_OK. */
int disk_print_json(struct json_t *j);

/* -o cluster_size=64k,refcount_bits=16,... (qemu-img's create options);
 * a bad one is reported: returns CLI_USAGE, or 0. */
int disk_parse_create_options(char *text, struct disk_create_options *o);
/* on/off (or true/false) into *out; false for anything else. */
bool disk_parse_on_off(const char *value, bool *out);
/* A size operand: bytes, K/M/G/T suffixes; a usage error otherwise. */
int disk_parse_size(const char *text, uint64_t *out);
/* -p's progress bar. */
void disk_progress(void *opaque, uint64_t done, uint64_t total);

/* qemu-img info's object for an opened image (info.c): shown_name is the
 * name it goes by ("filename"). */
struct json_t *disk_describe(struct disk *d, const char *shown_name);
/* The image at path described after a change (create, convert, resize...),
 * printed under --json. */
int disk_report_image(const char *path, const char *format);

int disk_verb_create(int argc, char **argv);
int disk_verb_info(int argc, char **argv);
int disk_verb_check(int argc, char **argv);
int disk_verb_convert(int argc, char **argv);
int disk_verb_compare(int argc, char **argv);
int disk_verb_snapshot(int argc, char **argv);
int disk_verb_resize(int argc, char **argv);
int disk_verb_commit(int argc, char **argv);
int disk_verb_rebase(int argc, char **argv);
int disk_verb_bench(int argc, char **argv);
int disk_verb_map(int argc, char **argv);
int disk_verb_measure(int argc, char **argv);
int disk_verb_amend(int argc, char **argv);

#endif
