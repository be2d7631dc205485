/* The tree ext2_tree.c builds and ext2_write.c lays out. */
#ifndef SMOLVM_IMAGE_EXT2_INTERNAL_H
#define SMOLVM_IMAGE_EXT2_INTERNAL_H

#include "image/ext2.h"

struct ext2_node {
    char *name;
    struct ext2_attr attr;
    struct ext2_node *parent, *children, *next;
    char *host_path; /* regular file read from the host */
    uint8_t *data;   /* regular file from memory, or a symlink's target */
    size_t len;
    dev_t rdev;
    uint32_t ino;
};

struct ext2 {
    unsigned block_size;
    uint32_t timestamp;
    struct ext2_node *root;
};

#endif
