/* Where smolvm keeps things per user: caches (rebuildable: unpacked
 * kernels, unpacked bundle memory) and data (instances). */
#ifndef SMOLVM_UTIL_PATHS_H
#define SMOLVM_UTIL_PATHS_H

/* $XDG_CACHE_HOME/smolvm/SUB (default ~/.cache/smolvm/SUB), malloc'd; NULL
 * when neither variable names a folder. Not created. */
char *paths_cache_dir(const char *sub);
/* $XDG_DATA_HOME/smolvm/SUB (default ~/.local/share/smolvm/SUB). */
char *paths_data_dir(const char *sub);
/* mkdir -p with mode 0700; 0 or -errno. */
int paths_mkdirs(const char *dir);

#endif
