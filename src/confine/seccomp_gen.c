/* Run at build time: writes seccomp_programs.c (seccomp_prebuilt.h), the
 * BPF program of each kind of thread in each mode as libseccomp exports it
 * for the rules of seccomp_rules.c, the own pid a sentinel that loading
 * replaces (and the relay's, its folders in their slots: its VMM's pid a
 * second sentinel), and the names of this architecture's calls. Built in the same
 * build as the smolvm it belongs to (so CONFINE_SANITIZED agrees, checked
 * when the output is compiled).
 *
 * It checks each program against libseccomp before writing it: the
 * sentinel sits only where the rules name the pid, and the program with a
 * pid put in is byte for byte what libseccomp builds for that pid -- for a
 * few pids, and for every pid the program compares with elsewhere (where
 * libseccomp may share blocks between the two comparisons). A pid whose
 * program differs so is written out whole for that pid; any other
 * difference fails the build, not a VM.
 *
 * Usage: seccomp-gen OUTPUT.c */
#include <errno.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "confine/seccomp_prebuilt.h"

#define MAX_PID_PROGRAMS 16

static const char *const mode_names[2] = {"on", "log"};
static const enum confine_seccomp modes[2] = {CONFINE_SECCOMP_ON, CONFINE_SECCOMP_LOG};

/* The pids one program was written out for. */
struct pid_programs {
    pid_t pids[MAX_PID_PROGRAMS];
    unsigned count;
};

static int export_for(enum confine_thread kind, int m, pid_t self, struct sock_fprog *out)
{
    struct seccomp_values v = {.self = self, .relay_cgroup_folder = -1};
    return seccomp_rules_program(kind, modes[m], &v, out);
}

static void write_insns(FILE *out, const char *name, const struct sock_fprog *p)
{
    fprintf(out, "static const struct sock_filter %s[%u] = {\n", name, p->len);
    for (unsigned i = 0; i < p->len; i++)
        fprintf(out, "    {0x%04x, %u, %u, 0x%08x},\n", p->filter[i].code, p->filter[i].jt,
                p->filter[i].jf, p->filter[i].k);
    fprintf(out, "};\n");
}

/* Whether pid is a value the sentinel's program compares with elsewhere. */
static bool compared_with(const struct sock_fprog *sentinel, pid_t pid)
{
    return seccomp_program_holds(sentinel->filter, sentinel->len, (uint32_t)pid);
}

/* A value put in for a sentinel, where the rules name it (count times). */
struct put_in {
    uint32_t sentinel, value;
    unsigned count;
};

/* Whether the sentinel program with each of puts put in differs from
 * want (libseccomp's for those values): 1 or 0, or seccomp_patch()'s
 * error (a sentinel not only where the rules name it). */
static int differs_once_put_in(const struct sock_fprog *sentinel, const struct sock_fprog *want,
                               const struct put_in *puts, unsigned n)
{
    size_t size = sentinel->len * sizeof(*sentinel->filter);
    struct sock_fprog got = {sentinel->len, malloc(size)};
    int r = got.filter ? 0 : -ENOMEM;

    if (r == 0)
        memcpy(got.filter, sentinel->filter, size);
    for (unsigned i = 0; i < n && r == 0; i++)
        r = seccomp_patch(got.filter, got.len, puts[i].sentinel, puts[i].value, puts[i].count);
    if (r == 0)
        r = want->len != got.len || memcmp(want->filter, got.filter, size) != 0;
    free(got.filter);
    return r;
}

/* The sentinel program with pid put in is libseccomp's program for pid;
 * or pid is compared with elsewhere and libseccomp's goes into out. */
static int check_pid(FILE *out, const char *name, enum confine_thread kind, int m,
                     const struct sock_fprog *sentinel, pid_t pid, struct pid_programs *written)
{
    const struct put_in self = {SECCOMP_SENTINEL_SELF, (uint32_t)pid, SECCOMP_RULES_NAMING_SELF};
    struct sock_fprog want;
    int r = export_for(kind, m, pid, &want);

    if (r < 0)
        return r;
    r = differs_once_put_in(sentinel, &want, &self, 1);
    if (r == 1 && compared_with(sentinel, pid) && written->count < MAX_PID_PROGRAMS) {
        char pid_name[64];
        snprintf(pid_name, sizeof(pid_name), "%s_pid%d", name, pid);
        write_insns(out, pid_name, &want);
        written->pids[written->count++] = pid;
        r = 0;
    } else if (r == 1) {
        fprintf(stderr, "seccomp-gen: %s: the program differs from libseccomp's once "
                        "pid %d is put in\n", name, pid);
        r = -EDOM;
    }
    free(want.filter);
    return r;
}

/* Every pid to check: a few, and each value the program compares with
 * that could be a pid, once. */
static int check_pids(FILE *out, const char *name, enum confine_thread kind, int m,
                      const struct sock_fprog *p, struct pid_programs *written)
{
    static const pid_t pids[] = {2, 4242, 65535, 65536, SECCOMP_PID_MAX};
    int r = 0;

    for (size_t i = 0; r == 0 && i < sizeof(pids) / sizeof(pids[0]); i++)
        if (!compared_with(p, pids[i]))
            r = check_pid(out, name, kind, m, p, pids[i], written);
    for (unsigned i = 0; r == 0 && i < p->len; i++) {
        uint32_t k = p->filter[i].k;
        bool seen = false;
        for (unsigned j = 0; j < i && !seen; j++)
            seen = p->filter[j].k == k;
        if (!seen && k >= 1 && k <= SECCOMP_PID_MAX)
            r = check_pid(out, name, kind, m, p, (pid_t)k, written);
    }
    return r;
}

static int write_program(FILE *out, enum confine_thread kind, int m, struct pid_programs *written)
{
    char name[32];
    struct sock_fprog p;
    int r = export_for(kind, m, (pid_t)SECCOMP_SENTINEL_SELF, &p);

    snprintf(name, sizeof(name), "kind%d_%s", kind, mode_names[m]);
    if (r < 0) {
        fprintf(stderr, "seccomp-gen: %s: %s\n", name, strerror(-r));
        return r;
    }
    write_insns(out, name, &p);
    r = check_pids(out, name, kind, m, &p, written);
    if (r == -EINVAL)
        fprintf(stderr, "seccomp-gen: %s: the sentinel pid is not (only) where the rules "
                        "name the pid\n", name);
    if (r == 0 && written->count) {
        fprintf(out, "static const struct seccomp_pid_program %s_pids[] = {\n", name);
        for (unsigned i = 0; i < written->count; i++)
            fprintf(out, "    {%d, %s_pid%d, sizeof(%s_pid%d) / sizeof(%s_pid%d[0])},\n",
                    written->pids[i], name, written->pids[i], name, written->pids[i], name,
                    written->pids[i]);
        fprintf(out, "};\n");
    }
    free(p.filter);
    return r;
}

/* The relay's program for its folders in their slots (seccomp_rules.h),
 * its own pid self and its VMM's vmm. */
static int export_relay(int m, pid_t self, pid_t vmm, struct sock_fprog *out)
{
    struct seccomp_values v;

    seccomp_relay_slot_values(&v, self, vmm);
    return seccomp_rules_program(CONFINE_RELAY, modes[m], &v, out);
}

/* The relay's sentinel program with self and vmm put in is libseccomp's
 * for them (pids it compares with elsewhere are built at run time). */
static int check_relay_pids(const struct sock_fprog *sentinel, int m, uint32_t vmm_sentinel,
                            pid_t self, pid_t vmm)
{
    const struct put_in puts[] = {
        {SECCOMP_SENTINEL_SELF, (uint32_t)self, SECCOMP_RELAY_NAMING_SELF},
        {vmm_sentinel, (uint32_t)vmm, SECCOMP_RELAY_NAMING_VMM},
    };
    struct sock_fprog want;
    int r = export_relay(m, self, vmm, &want);

    if (r < 0)
        return r;
    r = differs_once_put_in(sentinel, &want, puts, 2);
    if (r == 1) {
        fprintf(stderr, "seccomp-gen: the relay's program differs from libseccomp's once "
                        "pids %d (own) and %d (VMM) are put in\n", self, vmm);
        r = -EDOM;
    }
    free(want.filter);
    return r;
}

/* The relay's program in mode m for an own pid above its VMM's or not. */
static int write_relay_program(FILE *out, int m, bool self_above)
{
    static const pid_t pairs[][2] = {{1000, 1001}, {4242, 65536}, {32767, 32768},
                                     {65535, SECCOMP_PID_MAX}};
    uint32_t vmm_sentinel = self_above ? SECCOMP_SENTINEL_VMM_BELOW : SECCOMP_SENTINEL_VMM_ABOVE;
    struct sock_fprog p;
    char name[32];
    int r = export_relay(m, (pid_t)SECCOMP_SENTINEL_SELF, (pid_t)vmm_sentinel, &p);

    snprintf(name, sizeof(name), "relay_%s_%s", mode_names[m], self_above ? "above" : "below");
    if (r < 0) {
        fprintf(stderr, "seccomp-gen: %s: %s\n", name, strerror(-r));
        return r;
    }
    write_insns(out, name, &p);
    for (size_t i = 0; r == 0 && i < sizeof(pairs) / sizeof(pairs[0]); i++) {
        pid_t self = pairs[i][self_above], vmm = pairs[i][!self_above];
        if (!compared_with(&p, self) && !compared_with(&p, vmm))
            r = check_relay_pids(&p, m, vmm_sentinel, self, vmm);
    }
    if (r == -EINVAL)
        fprintf(stderr, "seccomp-gen: %s: a sentinel pid is not (only) where the rules name "
                        "the pid\n", name);
    free(p.filter);
    return r;
}

static void write_relay_table(FILE *out)
{
    fprintf(out, "const struct seccomp_prebuilt seccomp_relay_prebuilt[2][2] = {\n");
    for (int m = 0; m < 2; m++) {
        fprintf(out, "    {\n");
        for (int above = 0; above < 2; above++)
            fprintf(out, "        {relay_%s_%s, sizeof(relay_%s_%s) / sizeof(relay_%s_%s[0]), %d, "
                         "NULL, 0},\n",
                    mode_names[m], above ? "above" : "below", mode_names[m],
                    above ? "above" : "below", mode_names[m], above ? "above" : "below",
                    SECCOMP_RELAY_NAMING_SELF);
        fprintf(out, "    },\n");
    }
    fprintf(out, "};\n\n");
}

static void write_table(FILE *out, struct pid_programs written[CONFINE_THREAD_KINDS][2])
{
    fprintf(out, "const struct seccomp_prebuilt seccomp_prebuilt[CONFINE_THREAD_KINDS][2] = {\n");
    for (int kind = 0; kind < CONFINE_THREAD_KINDS; kind++) {
        if (!seccomp_rules_prebuildable((enum confine_thread)kind))
            continue;
        fprintf(out, "    [%d] = {\n", kind);
        for (int m = 0; m < 2; m++) {
            char name[32];
            snprintf(name, sizeof(name), "kind%d_%s", kind, mode_names[m]);
            fprintf(out, "        {%s, sizeof(%s) / sizeof(%s[0]), %d, ", name, name, name,
                    SECCOMP_RULES_NAMING_SELF);
            if (written[kind][m].count)
                fprintf(out, "%s_pids, %u},\n", name, written[kind][m].count);
            else
                fprintf(out, "NULL, 0},\n");
        }
        fprintf(out, "    },\n");
    }
    fprintf(out, "};\n\n");
}

/* In place (no pointers: nothing for the loader to relocate at start). */
static int write_syscall_names(FILE *out)
{
    int r = 0;
    fprintf(out, "const char seccomp_syscall_names[SECCOMP_SYSCALL_NAMES][SECCOMP_SYSCALL_NAME_MAX] = {\n");
    for (int nr = 0; nr < SECCOMP_SYSCALL_NAMES; nr++) {
        char *name = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
        if (name && strlen(name) >= SECCOMP_SYSCALL_NAME_MAX) {
            fprintf(stderr, "seccomp-gen: call %d's name '%s' is too long\n", nr, name);
            r = -ENAMETOOLONG;
        } else if (name) {
            fprintf(out, "    [%d] = \"%s\",\n", nr, name);
        }
        free(name);
    }
    fprintf(out, "};\n");
    return r;
}

int main(int argc, char **argv)
{
    static struct pid_programs written[CONFINE_THREAD_KINDS][2];
    FILE *out = argc == 2 ? fopen(argv[1], "w") : NULL;
    int r = 0;

    if (!out) {
        fprintf(stderr, "seccomp-gen: usage: seccomp-gen OUTPUT.c\n");
        return 2;
    }
    fprintf(out, "/* Made by src/confine/seccomp_gen.c at build time: do not edit. */\n"
                 "#include <stddef.h>\n\n"
                 "#include \"confine/seccomp_prebuilt.h\"\n\n"
                 "/* The programs allow the sanitizer runtimes' calls only in the builds\n"
                 " * that have them (seccomp_rules.c). */\n"
                 "#if defined(CONFINE_SANITIZED) != %d\n"
                 "#error \"seccomp programs generated for another kind of build\"\n"
                 "#endif\n\n",
#ifdef CONFINE_SANITIZED
            1
#else
            0
#endif
    );
    for (int kind = 0; kind < CONFINE_THREAD_KINDS && r == 0; kind++)
        for (int m = 0; m < 2 && r == 0; m++)
            if (seccomp_rules_prebuildable((enum confine_thread)kind))
                r = write_program(out, (enum confine_thread)kind, m, &written[kind][m]);
    for (int m = 0; m < 2 && r == 0; m++)
        for (int above = 0; above < 2 && r == 0; above++)
            r = write_relay_program(out, m, above);
    if (r == 0) {
        fprintf(out, "\n");
        write_table(out, written);
        write_relay_table(out);
        r = write_syscall_names(out);
    }
    if (fclose(out) != 0 || r < 0) {
        if (r == 0)
            perror("seccomp-gen: writing the programs");
        remove(argv[1]);
        return 1;
    }
    return 0;
}
