#include "image/kernel.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "arch/x86/boot.h"
#include "util/cache.h"
#include "util/err.h"
#include "util/file.h"

/* Bumped whenever how a kernel is built changes (the make targets, what is
 * kept): old cache entries are then not reused. */
#define RECIPE_VERSION 1
#define FRAGMENT_MAX (1u << 20)
#define NICENESS 10             /* a kernel build must not starve the machine */
#define PROGRESS_EVERY_S 15
#define LINE_MAX_BYTES 1024

/* ---- the pure parts ---- */

void kernel_cache_key(const char *source_identity, const char *fragment, size_t len,
                      char key[HASH_HEX])
{
    struct hash_state h;
    uint8_t digest[HASH_BYTES];
    char head[64];
    int n = snprintf(head, sizeof(head), "smolvm kernel recipe %d\n", RECIPE_VERSION);

    hash_begin(&h);
    hash_add(&h, head, (size_t)n);
    hash_add(&h, source_identity, strlen(source_identity));
    hash_add(&h, "\n", 1);
    hash_add(&h, fragment, len);
    hash_end(&h, digest);
    hash_to_hex(digest, key);
}

/* The option a fragment line sets, and the line .config must hold for it:
 * "CONFIG_X=v" stays itself, "# CONFIG_X is not set" too. 0 for comments
 * and blank lines. */
static size_t option_line(const char *line, size_t len)
{
    while (len && (line[len - 1] == ' ' || line[len - 1] == '\t' || line[len - 1] == '\r'))
        len--;
    if (len > 7 && strncmp(line, "CONFIG_", 7) == 0 && memchr(line, '=', len))
        return len;
    if (len > 9 && strncmp(line, "# CONFIG_", 9) == 0 && len > 11 &&
        memcmp(line + len - 11, " is not set", 11) == 0)
        return len;
    return 0;
}

/* Whether a line of text is line (exact: prefix false) or starts with it. */
static bool has_line(const char *text, const char *line, size_t len, bool prefix)
{
    for (const char *p = text; p && *p;) {
        const char *end = strchr(p, '\n');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if ((n == len || (prefix && n > len)) && memcmp(p, line, len) == 0)
            return true;
        p = end ? end + 1 : NULL;
    }
    return false;
}

/* "# CONFIG_X is not set" is also satisfied by no line about X at all. */
static bool option_present(const char *dotconfig, const char *line, size_t len)
{
    if (has_line(dotconfig, line, len, false))
        return true;
    if (line[0] != '#')
        return false;
    char name[256];
    size_t n = len - 2 - 11; /* "# " ... " is not set" */
    if (n + 2 >= sizeof(name))
        return false;
    memcpy(name, line + 2, n);
    name[n] = '=';
    return !has_line(dotconfig, name, n + 1, true);
}

int kernel_config_missing(const char *fragment, const char *dotconfig, char *missing,
                          size_t size)
{
    for (const char *p = fragment; p && *p;) {
        const char *end = strchr(p, '\n');
        size_t n = option_line(p, end ? (size_t)(end - p) : strlen(p));
        if (n && !option_present(dotconfig, p, n)) {
            snprintf(missing, size, "%.*s", (int)n, p);
            return 1;
        }
        p = end ? end + 1 : NULL;
    }
    return 0;
}

bool kernel_make_step(const char *line)
{
    /* kbuild's quiet lines: two spaces, a tag in capitals, spaces, what. */
    if (line[0] != ' ' || line[1] != ' ')
        return false;
    const char *p = line + 2;
    size_t tag = 0;
    while ((p[tag] >= 'A' && p[tag] <= 'Z') || (p[tag] >= '0' && p[tag] <= '9') ||
           p[tag] == '_' || p[tag] == '-')
        tag++;
    return tag > 0 && p[tag] == ' ' && p[strspn(p + tag, " ") + tag] != 0;
}

/* ---- inputs ---- */

static void say(const struct kernel_build_options *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void say(const struct kernel_build_options *o, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    if (!o->progress)
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    o->progress(o->opaque, line);
}

static int newest_source(char **out)
{
    *out = file_newest("/usr/src/linux-source-*.tar.xz");
    return *out ? 0 : err_plain(ENOENT, "no kernel source in /usr/src: install it (Debian: "
                                        "apt-get install linux-source-6.1)");
}

static int source_identity(const char *source, char *out, size_t size)
{
    struct stat st;
    const char *base = strrchr(source, '/') ? strrchr(source, '/') + 1 : source;
    if (stat(source, &st) < 0)
        return err_set(errno, "kernel source '%s'", source);
    if (!S_ISREG(st.st_mode))
        return err_plain(EINVAL, "kernel source '%s' is not a file", source);
    snprintf(out, size, "%s %llu %lld.%09ld", base, (unsigned long long)st.st_size,
             (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
    return 0;
}

/* The fragment's text (malloc'd): the built-in one, or a file's. */
static int load_fragment(const char *config, char **out)
{
    if (!config || strcmp(config, "micro") == 0)
        return (*out = strdup(kernel_micro_config)) ? 0 : -ENOMEM;
    struct mapped_file f;
    int r = file_map(config, "kernel configuration", &f);
    if (r < 0)
        return r;
    if (f.len > FRAGMENT_MAX || memchr(f.data, 0, f.len))
        r = err_plain(EINVAL, "kernel configuration '%s' is not a text file of at most %u KiB",
                      config, FRAGMENT_MAX >> 10);
    else if (!(*out = strndup((const char *)f.data, f.len)))
        r = -ENOMEM;
    file_unmap(&f);
    if (r == 0 && !strstr(*out, "CONFIG_")) {
        free(*out);
        *out = NULL;
        r = err_plain(EINVAL, "kernel configuration '%s' sets no CONFIG_ option", config);
    }
    return r;
}

static char *join(const char *dir, const char *name)
{
    char *p = NULL;
    return asprintf(&p, "%s/%s", dir, name) < 0 ? NULL : p;
}

/* An entry is there when its vmlinux is a usable cache file. */
static bool entry_ready(const char *entry, struct kernel_build_result *out)
{
    char *vmlinux = join(entry, "vmlinux"), *release = join(entry, "release");
    bool ok = vmlinux && release && cache_file_usable(vmlinux);
    FILE *f = ok ? fopen(release, "re") : NULL;

    out->release[0] = 0;
    if (f) {
        if (fgets(out->release, sizeof(out->release), f))
            out->release[strcspn(out->release, "\n")] = 0;
        fclose(f);
    }
    if (ok) {
        out->path = vmlinux;
        vmlinux = NULL;
    }
    free(vmlinux);
    free(release);
    return ok;
}

/* ---- running make ---- */

struct step_count {
    const struct kernel_build_options *o;
    const char *what;
    unsigned steps;
    time_t started, last_said;
};

static void count_line(struct step_count *c, const char *line)
{
    if (!kernel_make_step(line))
        return;
    c->steps++;
    time_t now = time(NULL);
    if (now - c->last_said >= PROGRESS_EVERY_S) {
        c->last_said = now;
        say(c->o, "%s: %u steps, %ld s (last: %.80s)", c->what, c->steps,
            (long)(now - c->started), line + strspn(line, " "));
    }
}

/* Runs argv niced, its output (both streams) appended to log and counted
 * line by line. 0 when it exits 0. */
static int run_logged(const char *const *argv, int log, struct step_count *c)
{
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) < 0)
        return err_set(errno, "pipe");
    pid_t pid = fork();
    if (pid < 0) {
        close(pipefd[0]);
        close(pipefd[1]);
        return err_set(errno, "fork");
    }
    if (pid == 0) {
        if (setpriority(PRIO_PROCESS, 0, NICENESS) < 0 || dup2(pipefd[1], 1) < 0 ||
            dup2(pipefd[1], 2) < 0)
            _exit(127);
        execvp(argv[0], (char *const *)argv);
        dprintf(2, "%s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(pipefd[1]);
    char line[LINE_MAX_BYTES], buf[4096];
    size_t fill = 0;
    ssize_t n;
    while ((n = read(pipefd[0], buf, sizeof(buf))) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            break;
        if (write(log, buf, (size_t)n) < 0) {
            /* the log is for the user: a full disk shows in make too */
        }
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] == '\n' || fill == sizeof(line) - 1) {
                line[fill] = 0;
                count_line(c, line);
                fill = 0;
            }
            if (buf[i] != '\n')
                line[fill++] = buf[i];
        }
    }
    close(pipefd[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return err_set(errno, "wait for %s", argv[0]);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    return err_plain(EIO, "'%s %s' failed (%s %d)", argv[0], argv[1],
                     WIFEXITED(status) ? "exit" : "signal",
                     WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
}

static char *read_text(const char *path)
{
    struct mapped_file f;
    if (file_map(path, "file", &f) < 0)
        return NULL;
    char *text = memchr(f.data, 0, f.len) ? NULL : strndup((const char *)f.data, f.len);
    file_unmap(&f);
    return text;
}

#define PATH_BYTES 4096

/* dir/name into out: 0, or an error when it does not fit. */
static int path_of(char out[PATH_BYTES], const char *dir, const char *name)
{
    int n = snprintf(out, PATH_BYTES, "%s/%s", dir, name);
    return n > 0 && n < PATH_BYTES ? 0 : err_plain(ENAMETOOLONG, "'%s/%s' is too long", dir, name);
}

/* Where a build works: tmp (fresh) holds the unpacked source (src), the
 * fragment, the log and what is kept (out: vmlinux, config, release). */
struct build_paths {
    char tmp[PATH_BYTES], src[PATH_BYTES], out[PATH_BYTES], fragment[PATH_BYTES];
    char dotconfig[PATH_BYTES], log[PATH_BYTES], allconfig[PATH_BYTES + 32];
};

static int build_paths_fill(struct build_paths *p)
{
    int r = path_of(p->src, p->tmp, "src");
    if (r == 0)
        r = path_of(p->out, p->tmp, "out");
    if (r == 0)
        r = path_of(p->fragment, p->tmp, "fragment.config");
    if (r == 0)
        r = path_of(p->dotconfig, p->src, ".config");
    if (r == 0)
        r = path_of(p->log, p->tmp, "build.log");
    if (r == 0 && snprintf(p->allconfig, sizeof(p->allconfig), "KCONFIG_ALLCONFIG=%s",
                           p->fragment) >= (int)sizeof(p->allconfig))
        r = err_plain(ENAMETOOLONG, "'%s' is too long", p->fragment);
    return r;
}

/* from/name moved to to/as, synced. */
static int keep(const char *from, const char *name, const char *to, const char *as)
{
    char a[PATH_BYTES], b[PATH_BYTES];
    int r = path_of(a, from, name);
    if (r == 0)
        r = path_of(b, to, as);
    if (r == 0 && (rename(a, b) < 0 || file_sync(b) < 0))
        r = err_set(errno, "keep '%s'", a);
    return r;
}

static int configure(const struct kernel_build_options *o, const struct build_paths *p,
                     const char *fragment, int log, struct step_count *c)
{
    char missing[256];
    const char *argv[] = {"make", "-C", p->src, p->allconfig, "allnoconfig", NULL};

    say(o, "configuring (allnoconfig + %s)", o->config ? o->config : "micro");
    c->what = "configuring";
    int r = run_logged(argv, log, c);
    char *config = r == 0 ? read_text(p->dotconfig) : NULL;
    if (r == 0 && !config)
        r = err_plain(EIO, "make allnoconfig wrote no '%s'", p->dotconfig);
    if (r == 0 && kernel_config_missing(fragment, config, missing, sizeof(missing)))
        r = err_plain(EINVAL, "the configuration asks for '%s', which the kernel's Kconfig "
                              "dropped (a dependency is not set: add it)", missing);
    free(config);
    return r;
}

/* What is kept: the vmlinux (booted by its PVH entry, checked for it), the
 * configuration it was built with, and its release. */
static int keep_results(const struct build_paths *p)
{
    char file[PATH_BYTES];
    struct mapped_file k;
    char *release = NULL;
    int r = path_of(file, p->src, "include/config/kernel.release");

    if (r == 0 && !(release = read_text(file)))
        r = err_plain(EIO, "the build wrote no kernel release");
    if (r == 0)
        r = path_of(file, p->src, "vmlinux");
    if (r == 0 && (r = file_map(file, "built kernel", &k)) == 0) {
        r = x86_kernel_check(k.data, k.len);
        file_unmap(&k);
    }
    if (r == 0)
        r = keep(p->src, "vmlinux", p->out, "vmlinux");
    if (r == 0)
        r = keep(p->src, ".config", p->out, "config");
    if (r == 0)
        r = path_of(file, p->out, "release");
    if (r == 0)
        r = file_write_new(file, release, strcspn(release, "\n"));
    free(release);
    return r;
}

/* The build proper, in p->tmp (a fresh folder), its output in log. */
static int build_in(const struct kernel_build_options *o, const struct build_paths *p,
                    const char *source, const char *fragment, int log)
{
    struct step_count c = {.o = o, .started = time(NULL), .last_said = time(NULL)};
    unsigned n = o->jobs ? o->jobs : (unsigned)sysconf(_SC_NPROCESSORS_ONLN);
    char jobs[32];
    int r = 0;

    snprintf(jobs, sizeof(jobs), "-j%u", n ? n : 1);
    if (mkdir(p->src, 0700) < 0 || mkdir(p->out, 0700) < 0)
        return err_set(errno, "'%s'", p->tmp);
    r = file_write_new(p->fragment, fragment, strlen(fragment));

    say(o, "unpacking %s", source);
    c.what = "unpacking";
    const char *untar[] = {"tar", "-xJf", source, "-C", p->src, "--strip-components=1", NULL};
    if (r == 0)
        r = run_logged(untar, log, &c);
    if (r == 0)
        r = configure(o, p, fragment, log, &c);
    if (r == 0)
        say(o, "compiling with make %s, niced (the first build takes a while)", jobs);
    c.what = "compiling";
    c.started = time(NULL);
    const char *make[] = {"make", "-C", p->src, jobs, "vmlinux", NULL};
    if (r == 0)
        r = run_logged(make, log, &c);
    if (r == 0)
        r = keep_results(p);
    return r;
}

/* ---- the cache ---- */

struct inputs {
    char *source, *fragment, *dir, *entry;
};

static void inputs_free(struct inputs *in)
{
    free(in->source);
    free(in->fragment);
    free(in->dir);
    free(in->entry);
}

static int inputs_get(const struct kernel_build_options *o, struct inputs *in, char key[HASH_HEX])
{
    char identity[512];
    int r = o->source ? ((in->source = strdup(o->source)) ? 0 : -ENOMEM) : newest_source(&in->source);

    if (r == 0)
        r = source_identity(in->source, identity, sizeof(identity));
    if (r == 0)
        r = load_fragment(o->config, &in->fragment);
    if (r == 0) {
        kernel_cache_key(identity, in->fragment, strlen(in->fragment), key);
        r = cache_dir_prepare("kernels", &in->dir);
    }
    if (r == 0 && !(in->entry = join(in->dir, key)))
        r = -ENOMEM;
    return r;
}

int kernel_build_lookup(const struct kernel_build_options *o, struct kernel_build_result *out)
{
    struct inputs in = {0};
    int r;

    memset(out, 0, sizeof(*out));
    r = inputs_get(o, &in, out->key);
    if (r == 0 && entry_ready(in.entry, out))
        out->cached = true;
    else if (r == 0)
        r = 1;
    inputs_free(&in);
    return r;
}

/* Under the lock on the cache folder: builds into a temporary folder and
 * renames its result into place as the entry. A failed build's log is
 * kept beside the entry (KEY.log) and named in the message. */
static int build_entry(const struct kernel_build_options *o, const struct inputs *in,
                       struct kernel_build_result *out)
{
    struct build_paths *p = calloc(1, sizeof(*p));
    char kept_log[PATH_BYTES], moved[PATH_BYTES], name[80];
    int log = -1, r = p ? 0 : -ENOMEM;

    snprintf(name, sizeof(name), ".build-%.16s-XXXXXX", out->key);
    if (r == 0)
        r = path_of(p->tmp, in->dir, name);
    snprintf(name, sizeof(name), "%.64s.log", out->key);
    if (r == 0)
        r = path_of(kept_log, in->dir, name);
    if (r == 0 && !mkdtemp(p->tmp))
        r = err_set(errno, "'%s'", p->tmp);
    else if (r == 0) {
        r = build_paths_fill(p);
        if (r == 0)
            r = log = file_create_exclusive(p->log, 0600);
        if (r >= 0)
            r = build_in(o, p, in->source, in->fragment, log);
        if (log >= 0)
            close(log);
        if (r == 0) {
            file_remove_tree(in->entry); /* a broken entry of before */
            r = path_of(moved, p->out, "build.log");
            if (r == 0 && (rename(p->log, moved) < 0 || rename(p->out, in->entry) < 0 ||
                           file_sync(in->dir) < 0))
                r = err_set(errno, "'%s'", in->entry);
        } else if (log >= 0 && rename(p->log, kept_log) == 0) {
            err_prefix("build failed (its log: %s)", kept_log);
        }
        file_remove_tree(p->tmp);
    }
    free(p);
    if (r == 0 && !entry_ready(in->entry, out))
        r = err_plain(EIO, "the built kernel is not in '%s'", in->entry);
    return r;
}

int kernel_build(const struct kernel_build_options *o, struct kernel_build_result *out)
{
    struct inputs in = {0};
    int lock = -1, r;

    memset(out, 0, sizeof(*out));
    r = inputs_get(o, &in, out->key);
    if (r == 0 && entry_ready(in.entry, out)) {
        out->cached = true;
        goto done;
    }
    if (r == 0 && (lock = open(in.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        r = err_set(errno, "'%s'", in.dir);
    if (r == 0 && flock(lock, LOCK_EX | LOCK_NB) < 0) {
        say(o, "another kernel build is running here: waiting for it");
        if (flock(lock, LOCK_EX) < 0)
            r = err_set(errno, "lock '%s'", in.dir);
    }
    if (r == 0 && entry_ready(in.entry, out)) { /* the other build made it */
        out->cached = true;
    } else if (r == 0) {
        say(o, "building kernel %.16s from %s (once: it is cached in %s)", out->key, in.source,
            in.dir);
        r = build_entry(o, &in, out);
    }
done:
    if (lock >= 0)
        close(lock);
    inputs_free(&in);
    if (r < 0)
        kernel_build_release(out);
    return r;
}

void kernel_build_release(struct kernel_build_result *r)
{
    free(r->path);
    r->path = NULL;
}
