/* Where smolvm keeps things per user: caches (rebuildable: unpacked
 * kernels, unpacked bundle memory), data (instances) and runtime files
 * (control sockets, logs of detached VMs). */
#ifndef SMOLVM_UTIL_PATHS_H
#define SMOLVM_UTIL_PATHS_H

#include <stdbool.h>

/* $XDG_CACHE_HOME/smolvm/SUB (default ~/.cache/smolvm/SUB), malloc'd and
 * created; NULL when neither variable names a folder. When that cannot be
 * written (a read-only home), RUNTIME/cache/SUB in the first usable
 * runtime folder instead, said once on stderr. */
char *paths_cache_dir(const char *sub);
/* $XDG_DATA_HOME/smolvm/SUB (default ~/.local/share/smolvm/SUB); falls
 * back to RUNTIME/data/SUB the same way (one line on stderr for both). */
char *paths_data_dir(const char *sub);
/* paths_data_dir("instances"): the folder of every instance, a VM's own
 * files in NAME/ below it (machine/instance.h: instance_dir(); the store's
 * instances are there too). */
char *paths_instances_dir(void);
/* Decides the cache and data folders now, fallback and all, for this
 * process and the processes it forks: after it, paths_cache_dir() and
 * paths_data_dir() give SUB below them and never look again. A jailed
 * VMM (cli/jail.c) sees only its own folders, read-only around them: the
 * runtime folder a read-only home fell back to, looked for again there,
 * could not be written and the home would be taken instead. */
void paths_decide(void);
/* Whether a folder that failed with err is worth replacing by the fallback. */
bool paths_needs_fallback(int err);

/* The per-user runtime folders, best first: $XDG_RUNTIME_DIR/smolvm,
 * /run/user/UID/smolvm, ${TMPDIR:-/tmp}/smolvm-UID (a relative or empty
 * variable skipped, duplicates left out). Malloc'd; returns the count. */
#define PATHS_RUNTIME_MAX 3
int paths_runtime_candidates(const char *xdg_runtime, const char *tmpdir, unsigned uid,
                             char *out[PATHS_RUNTIME_MAX]);
/* The same from this process's environment and uid. */
int paths_runtime_dirs(char *out[PATHS_RUNTIME_MAX]);
void paths_free(char **list, int n);
/* Creates dir (0700, not its parents) if missing; 0 when it is a folder of
 * this user that nobody else may enter, else an error (err.h). */
int paths_private_dir(const char *dir) __attribute__((warn_unused_result));

/* mkdir -p with mode 0700; 0 or -errno. */
int paths_mkdirs(const char *dir);

#endif
