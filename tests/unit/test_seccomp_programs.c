/* The seccomp programs made at build time (confine/seccomp_gen.c): with a
 * pid put in, each is byte for byte what libseccomp builds at run time
 * from the same rules for that pid (libseccomp is the oracle), for every
 * kind and mode; a program whose sentinel is not exactly where the rules
 * name the pid is refused; the calls' names are libseccomp's; every call
 * is judged in a few steps (a tree). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/audit.h>
#include <linux/filter.h>

#include "confine/seccomp_prebuilt.h"

static const enum confine_seccomp modes[] = {CONFINE_SECCOMP_ON, CONFINE_SECCOMP_LOG};

/* loaded (the build-time program) is built (libseccomp's); both freed. */
static void expect_same_program(struct sock_fprog *built, struct sock_fprog *loaded,
                                const char *what)
{
    if (built->len != loaded->len ||
        memcmp(built->filter, loaded->filter, built->len * sizeof(*built->filter)))
        fail_msg("%s: the build-time program (%u instructions) is not libseccomp's (%u)", what,
                 loaded->len, built->len);
    free(built->filter);
    free(loaded->filter);
}

static void expect_same_as_libseccomp(enum confine_thread kind, enum confine_seccomp mode,
                                      pid_t pid)
{
    struct seccomp_values v = {.self = pid, .relay_cgroup_folder = -1};
    struct sock_fprog built, loaded;
    char what[64];

    assert_int_equal(seccomp_rules_program(kind, mode, &v, &built), 0);
    assert_int_equal(seccomp_prebuilt_program(kind, mode, pid, &loaded), 0);
    snprintf(what, sizeof(what), "kind %d, mode %d, pid %d", kind, mode, pid);
    expect_same_program(&built, &loaded, what);
}

/* For a few pids, and for every value the program compares with that
 * could be a pid (where libseccomp lays a program out otherwise: a jailed
 * VMM is pid 1, the vsock thread's socket() compares with AF_UNIX, 1). */
static void every_kind_and_mode_is_libseccomps_program(void **state)
{
    const pid_t pids[] = {1, 2, 3, 99, 300, 4242, 32767, 32768, 65536, SECCOMP_PID_MAX, getpid()};
    (void)state;
    for (int kind = 0; kind < CONFINE_THREAD_KINDS; kind++) {
        if (kind == CONFINE_RELAY)
            continue;
        for (size_t m = 0; m < sizeof(modes) / sizeof(modes[0]); m++) {
            const struct seccomp_prebuilt *p = &seccomp_prebuilt[kind][m];
            for (size_t i = 0; i < sizeof(pids) / sizeof(pids[0]); i++)
                expect_same_as_libseccomp((enum confine_thread)kind, modes[m], pids[i]);
            for (unsigned i = 0; i < p->len; i++)
                if (p->insns[i].k >= 1 && p->insns[i].k <= SECCOMP_PID_MAX)
                    expect_same_as_libseccomp((enum confine_thread)kind, modes[m],
                                              (pid_t)p->insns[i].k);
        }
    }
}

/* The relay's program for its folders in their slots, its own pid self and
 * its VMM's vmm: libseccomp's byte for byte, or -ENOENT where a pid is a
 * value the program compares with elsewhere (built at run time then). */
static void expect_relay_same_as_libseccomp(enum confine_seccomp mode, pid_t self, pid_t vmm)
{
    struct seccomp_values v;
    struct sock_fprog built, loaded;
    char what[80];
    int r = seccomp_relay_prebuilt_program(mode, self, vmm, &loaded);

    if (r == -ENOENT) {
        const struct seccomp_prebuilt *p = &seccomp_relay_prebuilt[mode == CONFINE_SECCOMP_LOG][self > vmm];
        assert_true(seccomp_program_holds(p->insns, p->len, (uint32_t)self) ||
                    seccomp_program_holds(p->insns, p->len, (uint32_t)vmm));
        assert_null(loaded.filter);
        return;
    }
    assert_int_equal(r, 0);
    seccomp_relay_slot_values(&v, self, vmm);
    assert_true(seccomp_relay_in_slots(&v));
    assert_int_equal(seccomp_rules_program(CONFINE_RELAY, mode, &v, &built), 0);
    snprintf(what, sizeof(what), "relay, mode %d, pids %d (own) and %d (VMM)", mode, self, vmm);
    expect_same_program(&built, &loaded, what);
}

/* Both orders of the two pids (libseccomp orders kill's comparisons by
 * value), and every value a program compares with that could be a pid,
 * as either. */
static void the_relays_program_is_libseccomps(void **state)
{
    const pid_t pids[] = {1, 2, 3, 48, 99, 300, 512, 4242, 32768, 65536, SECCOMP_PID_MAX,
                          getpid()};
    const size_t n = sizeof(pids) / sizeof(pids[0]);
    (void)state;
    for (size_t m = 0; m < sizeof(modes) / sizeof(modes[0]); m++) {
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < n; j++)
                if (pids[i] != pids[j])
                    expect_relay_same_as_libseccomp(modes[m], pids[i], pids[j]);
        for (int above = 0; above < 2; above++) {
            const struct seccomp_prebuilt *p = &seccomp_relay_prebuilt[m][above];
            assert_int_equal(p->self_count, SECCOMP_RELAY_NAMING_SELF);
            for (unsigned i = 0; i < p->len; i++)
                if (p->insns[i].k >= 2 && p->insns[i].k <= SECCOMP_PID_MAX) {
                    expect_relay_same_as_libseccomp(modes[m], (pid_t)p->insns[i].k, 4242);
                    expect_relay_same_as_libseccomp(modes[m], 4242, (pid_t)p->insns[i].k);
                }
        }
    }
}

/* Only a relay with its folders in their slots (in order, none but
 * them) and no cgroup or arrival fits the build-time program; no pid of
 * its own or its VMM's that is not one. */
static void only_a_relay_in_its_slots_is_prebuilt(void **state)
{
    struct seccomp_values v;
    struct sock_fprog p;
    const int two[] = {SECCOMP_RELAY_FD_BASE, SECCOMP_RELAY_FD_BASE + 1};
    const int swapped[] = {SECCOMP_RELAY_FD_BASE + 1, SECCOMP_RELAY_FD_BASE};
    const int elsewhere[] = {SECCOMP_RELAY_FD_BASE, 7};
    (void)state;

    seccomp_relay_slot_values(&v, 100, 200);
    assert_true(seccomp_relay_in_slots(&v));
    v.relay_leftover_dirs = two, v.relay_leftover_count = 2;
    assert_true(seccomp_relay_in_slots(&v));
    v.relay_leftover_count = 0;
    assert_true(seccomp_relay_in_slots(&v));
    v.relay_leftover_dirs = swapped, v.relay_leftover_count = 2;
    assert_false(seccomp_relay_in_slots(&v));
    v.relay_leftover_dirs = elsewhere;
    assert_false(seccomp_relay_in_slots(&v));
    v.relay_leftover_dirs = two;
    v.relay_leftover_count = SECCOMP_RELAY_SLOTS + 1;
    assert_false(seccomp_relay_in_slots(&v));
    v.relay_leftover_count = 2;
    v.relay_cgroup_folder = 7;
    assert_false(seccomp_relay_in_slots(&v));
    v.relay_cgroup_folder = -1, v.relay_arrival_pipe = 7;
    assert_false(seccomp_relay_in_slots(&v));
    v.relay_arrival_pipe = -1, v.relay_arrival_dir = SECCOMP_RELAY_FD_BASE;
    assert_false(seccomp_relay_in_slots(&v));
    v.relay_arrival_dir = -1, v.relay_vmm = 0;
    assert_false(seccomp_relay_in_slots(&v));
    assert_int_equal(seccomp_relay_prebuilt_program(CONFINE_SECCOMP_ON, 100, 100, &p), -EINVAL);
    assert_int_equal(seccomp_relay_prebuilt_program(CONFINE_SECCOMP_ON, 0, 100, &p), -EINVAL);
    assert_int_equal(seccomp_relay_prebuilt_program(CONFINE_SECCOMP_ON, 100, -1, &p), -EINVAL);
    assert_int_equal(seccomp_relay_prebuilt_program(CONFINE_SECCOMP_OFF, 100, 200, &p), -EINVAL);
    assert_null(p.filter);
}

/* The relay's filter naming a cgroup or an arrival is built when it starts. */
static void only_the_relay_is_built_at_run_time(void **state)
{
    struct sock_fprog p;
    const int dirs[] = {5, 9};
    struct seccomp_values v = {.self = 1, .relay_vmm = 2, .relay_cgroup_folder = 7,
                               .relay_leftover_dirs = dirs, .relay_leftover_count = 2,
                               .relay_arrival_pipe = -1, .relay_arrival_dir = -1};
    (void)state;
    for (int kind = 0; kind < CONFINE_THREAD_KINDS; kind++)
        assert_int_equal(seccomp_rules_prebuildable((enum confine_thread)kind),
                         kind != CONFINE_RELAY);
    assert_int_equal(seccomp_prebuilt_program(CONFINE_RELAY, CONFINE_SECCOMP_ON, 1, &p), -ENOENT);
    assert_null(p.filter);
    assert_int_equal(seccomp_rules_program(CONFINE_RELAY, CONFINE_SECCOMP_ON, &v, &p), 0);
    assert_true(p.len > 0);
    free(p.filter);
    /* No pid of this process's own (0: the caller's process group). */
    assert_int_equal(seccomp_prebuilt_program(CONFINE_VCPU, CONFINE_SECCOMP_ON, 0, &p), -EINVAL);
    assert_int_equal(seccomp_prebuilt_program(CONFINE_VCPU, CONFINE_SECCOMP_OFF, 1, &p), -EINVAL);
}

/* A copy of the vCPU's build-time program, its sentinel still in. */
static struct sock_filter *sentinel_program(unsigned short *len, size_t *at)
{
    const struct seccomp_prebuilt *p = &seccomp_prebuilt[CONFINE_VCPU][0];
    struct sock_filter *insns = malloc(p->len * sizeof(*insns));
    assert_non_null(insns);
    memcpy(insns, p->insns, p->len * sizeof(*insns));
    *len = p->len;
    for (*at = 0; *at < *len && insns[*at].k != SECCOMP_SENTINEL_SELF; (*at)++)
        ;
    assert_true(*at < *len);
    assert_int_equal(p->self_count, SECCOMP_RULES_NAMING_SELF);
    return insns;
}

static void patch_expect(int want, struct sock_filter *insns, unsigned short len,
                         unsigned expected)
{
    struct sock_filter before[BPF_MAXINSNS];
    memcpy(before, insns, len * sizeof(*insns));
    assert_int_equal(seccomp_patch(insns, len, SECCOMP_SENTINEL_SELF, 1234, expected), want);
    if (want < 0) /* refused: nothing half put in */
        assert_memory_equal(before, insns, len * sizeof(*insns));
}

static void a_sentinel_left_or_missing_is_refused(void **state)
{
    unsigned short len;
    size_t at;
    (void)state;

    /* As built: the one place, patched. */
    struct sock_filter *insns = sentinel_program(&len, &at);
    patch_expect(0, insns, len, SECCOMP_RULES_NAMING_SELF);
    assert_int_equal(insns[at].k, 1234);
    /* Patched already (no sentinel): refused. */
    patch_expect(-EINVAL, insns, len, SECCOMP_RULES_NAMING_SELF);
    free(insns);

    /* A second comparison with the sentinel: one would be left unknown. */
    insns = sentinel_program(&len, &at);
    for (size_t i = 0; i < len; i++)
        if (i != at && insns[i].code == (BPF_JMP | BPF_JEQ | BPF_K)) {
            insns[i].k = SECCOMP_SENTINEL_SELF;
            break;
        }
    patch_expect(-EINVAL, insns, len, SECCOMP_RULES_NAMING_SELF);
    free(insns);

    /* The sentinel in another kind of instruction (a load), as many times
     * as expected: the comparison's moved there. */
    insns = sentinel_program(&len, &at);
    insns[at].k = 4242;
    insns[0].k = SECCOMP_SENTINEL_SELF;
    patch_expect(-EINVAL, insns, len, SECCOMP_RULES_NAMING_SELF);
    free(insns);

    /* A count the program does not match. */
    insns = sentinel_program(&len, &at);
    patch_expect(-EINVAL, insns, len, SECCOMP_RULES_NAMING_SELF + 1);
    patch_expect(-EINVAL, insns, len, 0);
    free(insns);
}

/* The violation line names calls from the build-time table. */
static void call_names_are_libseccomps(void **state)
{
    (void)state;
    for (int nr = 0; nr < SECCOMP_SYSCALL_NAMES; nr++) {
        char *want = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
        assert_string_equal(want ? want : "", seccomp_syscall_names[nr]);
        free(want);
    }
    assert_string_equal(seccomp_syscall_names[59], "execve");
}

/* How many instructions the program runs to judge call nr (x86-64, its
 * arguments 0), or -1 on an instruction this walker does not know. */
static int steps_to_judge(const struct sock_filter *insns, unsigned len, uint32_t nr)
{
    uint32_t data[16] = {nr, AUDIT_ARCH_X86_64}, mem[BPF_MEMWORDS] = {0}, a = 0, x = 0;
    int steps = 0;

    for (unsigned pc = 0; pc < len; pc++, steps++) {
        const struct sock_filter *i = &insns[pc];
        switch (i->code) {
        case BPF_LD | BPF_W | BPF_ABS:
            if (i->k % 4 || i->k / 4 >= 16)
                return -1;
            a = data[i->k / 4];
            break;
        case BPF_LD | BPF_MEM:
            a = mem[i->k % BPF_MEMWORDS];
            break;
        case BPF_LDX | BPF_MEM:
            x = mem[i->k % BPF_MEMWORDS];
            break;
        case BPF_ST:
            mem[i->k % BPF_MEMWORDS] = a;
            break;
        case BPF_STX:
            mem[i->k % BPF_MEMWORDS] = x;
            break;
        case BPF_ALU | BPF_AND | BPF_K:
            a &= i->k;
            break;
        case BPF_MISC | BPF_TAX:
            x = a;
            break;
        case BPF_MISC | BPF_TXA:
            a = x;
            break;
        case BPF_JMP | BPF_JA:
            pc += i->k;
            break;
        case BPF_JMP | BPF_JEQ | BPF_K:
            pc += a == i->k ? i->jt : i->jf;
            break;
        case BPF_JMP | BPF_JGT | BPF_K:
            pc += a > i->k ? i->jt : i->jf;
            break;
        case BPF_JMP | BPF_JGE | BPF_K:
            pc += a >= i->k ? i->jt : i->jf;
            break;
        case BPF_JMP | BPF_JSET | BPF_K:
            pc += (a & i->k) ? i->jt : i->jf;
            break;
        case BPF_RET | BPF_K:
            return steps + 1;
        default:
            return -1;
        }
    }
    return -1;
}

/* The calls are a binary tree, not a chain (SCMP_FLTATR_CTL_OPTIMIZE 2):
 * every call number is judged in a few dozen instructions at most, where
 * a chain walked one comparison per rule (139 in the busiest thread's) --
 * on every call, and ~450 times per thread as the kernel loads it. */
static void every_call_is_judged_in_few_steps(void **state)
{
    (void)state;
    for (int kind = 0; kind < CONFINE_THREAD_KINDS; kind++) {
        for (size_t m = 0; m < sizeof(modes) / sizeof(modes[0]); m++) {
            struct sock_fprog program;
            /* The relay's, its folders in their slots. */
            assert_int_equal(kind == CONFINE_RELAY
                                 ? seccomp_relay_prebuilt_program(modes[m], 4242, 4343, &program)
                                 : seccomp_prebuilt_program((enum confine_thread)kind, modes[m],
                                                            4242, &program), 0);
            for (uint32_t nr = 0; nr < SECCOMP_SYSCALL_NAMES; nr++) {
                int steps = steps_to_judge(program.filter, program.len, nr);
                if (steps < 0 || steps > 40)
                    fail_msg("kind %d, mode %d: call %u judged in %d steps (of %u)", kind,
                             modes[m], nr, steps, program.len);
            }
            free(program.filter);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_kind_and_mode_is_libseccomps_program),
        cmocka_unit_test(only_the_relay_is_built_at_run_time),
        cmocka_unit_test(the_relays_program_is_libseccomps),
        cmocka_unit_test(only_a_relay_in_its_slots_is_prebuilt),
        cmocka_unit_test(a_sentinel_left_or_missing_is_refused),
        cmocka_unit_test(call_names_are_libseccomps),
        cmocka_unit_test(every_call_is_judged_in_few_steps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
