/* Caches keyed by a content hash (unpacked RAM, disks, layers, kernels)
 * are reused without hashing them again, so what guards them is who can
 * write them.
 *
 * Threat model: another local user must not be able to plant or change a
 * file that a later start of ours uses (its bytes would become a guest's
 * disk, RAM or kernel). The same user is out of scope: they can change
 * anything of theirs, the bundle included, and ptrace smolvm. So every
 * folder from smolvm's cache root down must be the user's own and 0700
 * (made so when it is the user's, refused when it is another's), and a
 * cache file is used only when it is a regular file of the user's that
 * nobody else can write; any other file in its place is removed and the
 * entry rebuilt (each is verified as it is built, written under a
 * temporary name, synced, then renamed). */
#ifndef SMOLVM_UTIL_CACHE_H
#define SMOLVM_UTIL_CACHE_H

#include <stdbool.h>

/* paths_cache_dir(sub), created, with it and smolvm's cache root checked
 * as above. *out malloc'd. 0, or <0 with the message set. */
int cache_dir_prepare(const char *sub, char **out) __attribute__((warn_unused_result));

/* Whether fd (a cache file just opened) may be used. */
bool cache_fd_trusted(int fd);

/* Whether the cache file at path is there and may be used; one that is
 * there but may not is removed (so the caller rebuilds it). */
bool cache_file_usable(const char *path);

#endif
