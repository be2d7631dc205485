/* A kernel to boot, opened before the guest exists. An ELF vmlinux stays
 * an open file with only its headers and notes read (and checked): its
 * segments go from the file straight into guest memory when it is loaded.
 * A bzImage is read whole (its protected-mode part is copied as it is). */
#ifndef SMOLVM_ARCH_X86_KERNEL_FILE_H
#define SMOLVM_ARCH_X86_KERNEL_FILE_H

#include "arch/x86/boot.h"
#include "arch/x86/elf.h"
#include "util/file.h"

struct x86_kernel_file {
    struct mapped_file image; /* a bzImage's bytes */
    struct elf_source elf;    /* an ELF vmlinux: read from fd */
    int fd;                   /* -1: none open */
    char *path;
    const char *what;
};

/* Opens path (what names its role in messages: "kernel") and checks it is
 * a kernel smolvm boots; errors name the file. */
int x86_kernel_open(const char *path, const char *what, struct x86_kernel_file *out)
    __attribute__((warn_unused_result));
/* Points req's kernel fields at f (which must stay open until loaded). */
void x86_kernel_request(const struct x86_kernel_file *f, struct x86_boot_request *req);
bool x86_kernel_is_bzimage(const struct x86_kernel_file *f);
/* Idempotent; f may be zeroed with fd -1 (nothing open). */
void x86_kernel_close(struct x86_kernel_file *f);

#endif
