/* What every verb shares: its messages ("smolvm: VERB: ..."), JSON errors
 * under --json, and option parsing without getopt's prefix guessing. */
#include <getopt.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/control.h"
#include "cli/cli.h"

static const char *current_verb;
static bool json_errors;

void cli_set_verb(const char *verb)
{
    current_verb = verb;
}

const char *cli_verb(void)
{
    return current_verb;
}

void cli_set_json(bool on)
{
    json_errors = on;
}

bool cli_json(void)
{
    return json_errors;
}

/* Messages written the older way, already starting "VERB: ", keep one. */
static const char *without_verb(const char *message)
{
    size_t n = current_verb ? strlen(current_verb) : 0;
    if (n && strncmp(message, current_verb, n) == 0 && strncmp(message + n, ": ", 2) == 0)
        return message + n + 2;
    return message;
}

int cli_fail(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = cli_vfail(code, fmt, ap);
    va_end(ap);
    return r;
}

int cli_vfail(int code, const char *fmt, va_list ap)
{
    char *text = NULL;

    if (vasprintf(&text, fmt, ap) < 0)
        text = NULL;
    const char *message = text ? without_verb(text) : "out of memory";
    if (current_verb)
        fprintf(stderr, "smolvm: %s: %s\n", current_verb, message);
    else
        fprintf(stderr, "smolvm: %s\n", message);
    if (json_errors) {
        json_t *j = json_pack("{s:s,s:s?,s:i}", "error", message, "verb", current_verb,
                              "exit_code", code);
        if (j) {
            json_dumpf(j, stdout, JSON_COMPACT);
            putchar('\n');
            fflush(stdout);
        }
        json_decref(j);
    }
    free(text);
    return code;
}

int cli_check_name(const char *name)
{
    if (control_name_ok(name))
        return CLI_OK;
    return cli_fail(CLI_USAGE, "'%s' is not a valid name (1-64 letters, digits, '.', '_', '-')",
                    name);
}

/* "--memory, --name, ..." for the message about an option not taken. */
static void list_options(const struct option *longopts, char *out, size_t size)
{
    size_t used = 0;
    out[0] = 0;
    for (const struct option *o = longopts; o && o->name && used < size; o++) {
        int n = snprintf(out + used, size - used, "%s--%s", used ? ", " : "", o->name);
        if (n < 0)
            break;
        used += (size_t)n;
    }
}

static int refuse(const char *what, const char *option, const struct option *longopts)
{
    char list[1024];
    list_options(longopts, list, sizeof(list));
    exit(cli_fail(CLI_USAGE, "%s '%s' (options: %s; 'smolvm %s --help' says more)", what, option,
                  list[0] ? list : "none", current_verb ? current_verb : ""));
}

/* The element of argv that getopt took a long option from: the one
 * before its separate value, if it had one. */
static const char *long_option_text(char *const argv[], const struct option *o)
{
    if (o->has_arg != no_argument && optarg && optind >= 2 && optarg == argv[optind - 1])
        return argv[optind - 2];
    return argv[optind - 1];
}

static bool exact(const char *text, const char *name)
{
    size_t n = strlen(name);
    return strncmp(text, "--", 2) == 0 && strncmp(text + 2, name, n) == 0 &&
           (text[2 + n] == 0 || text[2 + n] == '=');
}

/* Whether the option getopt just refused was a long one: unknown (optopt
 * 0), or known but missing its value or given one it does not take. */
static bool was_long(char *const argv[], const struct option *longopts)
{
    const char *text = optind >= 1 ? argv[optind - 1] : "";
    if (optopt == 0)
        return true;
    for (const struct option *o = longopts; o && o->name; o++)
        if (!o->flag && o->val == optopt && exact(text, o->name))
            return true;
    return false;
}

int cli_getopt_long(int argc, char *const argv[], const char *optstring,
                    const struct option *longopts, int *longindex)
{
    char spec[256];
    int index = -1, c;

    /* A leading ':' makes getopt tell a missing value from an unknown option. */
    size_t mode = optstring[0] == '+' || optstring[0] == '-';
    snprintf(spec, sizeof(spec), "%.*s:%s", (int)mode, optstring,
             optstring + mode + (optstring[mode] == ':'));
    opterr = 0;
    c = getopt_long(argc, argv, spec, longopts, &index);
    if (c == ':' || c == '?') {
        char shortname[3] = {'-', (char)optopt, 0};
        const char *option = was_long(argv, longopts) ? argv[optind - 1] : shortname;
        if (c == ':')
            exit(cli_fail(CLI_USAGE, "option '%s' needs a value", option));
        refuse("unknown option", option, longopts);
    }
    if (c != -1 && index >= 0) {
        const char *text = long_option_text(argv, &longopts[index]);
        if (!exact(text, longopts[index].name))
            refuse("unknown option", text, longopts); /* getopt took a prefix for it */
        if (strcmp(longopts[index].name, "json") == 0)
            json_errors = true;
    }
    if (longindex)
        *longindex = index;
    return c;
}
