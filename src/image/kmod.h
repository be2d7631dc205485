/* Kernel modules as modprobe finds them: names (or aliases) resolved
 * through modules.dep, modules.softdep, modules.alias and modules.builtin
 * of one kernel's module directory into the files to load, in load order
 * (softdeps first, then dependencies deepest first), each once. */
#ifndef SMOLVM_IMAGE_KMOD_H
#define SMOLVM_IMAGE_KMOD_H

#include <stddef.h>
#include <stdint.h>

struct kmod_list {
    char **paths; /* absolute paths of the .ko files */
    size_t count;
};

/* moddir: /lib/modules/<release>. Built-in modules resolve to nothing;
 * an unknown name is an error naming it. */
int kmod_resolve(const char *moddir, const char *const *names, size_t count,
                 struct kmod_list *out) __attribute__((warn_unused_result));
void kmod_list_free(struct kmod_list *l);

/* A module file's bytes, decompressed if it is .ko.xz, .ko.zst or .ko.gz. */
int kmod_read(const char *path, uint8_t **data, size_t *len) __attribute__((warn_unused_result));

/* "kernel/fs/ext4/ext4.ko.xz" -> "ext4", '-' read as '_'. out has room for 64. */
void kmod_name(const char *path, char *out, size_t size);

#endif
