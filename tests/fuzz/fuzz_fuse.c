/* libFuzzer target: FUSE requests from a hostile guest, served by the
 * passthrough file system over a scratch folder. The input is a series of
 * requests, each as long as its header's len says (the rest of the input
 * when that is past the end); an INIT comes first so the requests reach
 * the file system. Any crash, sanitizer report or hang is a bug, and so is
 * a file appearing next to the share (checked at the end of each input). */
#include <dirent.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "fs/fuse.h"
#include "fs/passthrough.h"

#define MAX_REQUESTS 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct pt_fs *fs;
static struct fuse_server *srv;
static uint8_t out[FUSE_SERVER_OUT_MAX];
static char top[64], share[96];

static void setup_once(void)
{
    struct pt_limits limits = {.max_inodes = 256, .max_handles = 32};

    snprintf(top, sizeof(top), "/tmp/fuzz-fuse.XXXXXX");
    if (!mkdtemp(top))
        abort();
    snprintf(share, sizeof(share), "%s/share", top);
    if (mkdir(share, 0755) < 0)
        abort();
    if (pt_new(share, false, &limits, &fs) < 0)
        abort();
    srv = fuse_server_new(fs);
    if (!srv)
        abort();
}

/* Only "share" may be in the folder around the share. */
static void check_neighbours(void)
{
    DIR *d = opendir(top);
    struct dirent *e;

    if (!d)
        abort();
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strcmp(e->d_name, "share"))
            abort();
    closedir(d);
}

/* no_open: as Linux, which offers FUSE_NO_OPEN_SUPPORT (then READ, WRITE
 * and the like name the node's own file with fh 0). */
static void init_session(bool no_open)
{
    struct {
        struct fuse_in_header h;
        struct fuse_init_in i;
    } init = {{.len = sizeof(init), .opcode = FUSE_INIT, .unique = 1},
              {.major = 7, .minor = 38,
               .flags = FUSE_DO_READDIRPLUS | (no_open ? FUSE_NO_OPEN_SUPPORT : 0)}};

    fuse_serve(srv, (const uint8_t *)&init, sizeof(init), out, sizeof(out));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!srv)
        setup_once();
    fuse_server_reset(srv);
    init_session(size > 0 && (data[0] & 0x80));
    for (int i = 0; i < MAX_REQUESTS && size > 0; i++) {
        uint32_t len = (uint32_t)size;
        size_t n;
        if (size >= 4)
            memcpy(&len, data, 4);
        n = len >= 1 && len <= size ? len : size;
        /* The reply buffer's size varies too: drivers choose it. Every
         * third request goes as a READ into the guest's buffers (any other
         * request must be refused there). */
        if (i % 3 == 2) {
            struct iovec dest[2] = {{out, 100 + (data[0] & 0x7f)}, {out + 300, sizeof(out) - 300}};
            fuse_serve_read(srv, data, n, dest, 2, out + 240, 16);
        } else {
            fuse_serve(srv, data, n, out, i & 1 ? sizeof(out) : 64 + (data[0] & 0x7f));
        }
        data += n;
        size -= n;
    }
    check_neighbours();
    return 0;
}
