#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arch/x86/boot.h"
#include "arch/x86/bzimage.h"
#include "arch/x86/cpu_state.h"
#include "arch/x86/kernel_file.h"
#include "arch/x86/layout.h"
#include "util/err.h"
#include "util/file.h"

#define SETUP_SECTS 7
#define IMAGE_LEN (((SETUP_SECTS + 1) * 512) + 8192)

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) { put16(p, (uint16_t)v); put16(p + 2, (uint16_t)(v >> 16)); }
static uint32_t get32(const uint8_t *p) { return (uint32_t)(p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24); }

static uint8_t *fake_bzimage(void)
{
    uint8_t *img = calloc(1, IMAGE_LEN);
    img[0x1f1] = SETUP_SECTS;
    put16(img + 0x1fe, 0xaa55);
    img[0x200] = 0xeb;
    img[0x201] = 0x66;
    memcpy(img + 0x202, "HdrS", 4);
    put16(img + 0x206, 0x020f);
    put32(img + 0x22c, 0x7fffffff);
    put16(img + 0x236, 0x1); /* XLF_KERNEL_64 */
    put32(img + 0x238, 2047);
    put32(img + 0x258, 0x1000000);
    put32(img + 0x260, 0x200000);
    memset(img + (SETUP_SECTS + 1) * 512, 0xcc, 8192);
    return img;
}

static struct guest_memory make_memory(uint64_t size)
{
    struct guest_region r[2];
    struct guest_memory mem;
    unsigned n = x86_ram_layout(size, r);
    assert_int_equal(guest_memory_alloc(&mem, r, n), 0);
    return mem;
}

static void parses_header(void **state)
{
    uint8_t *img = fake_bzimage();
    struct bzimage_header h;
    (void)state;

    assert_int_equal(bzimage_parse(img, IMAGE_LEN, &h), 0);
    assert_int_equal(h.version, 0x020f);
    assert_int_equal(h.setup_len, (SETUP_SECTS + 1) * 512);
    assert_int_equal(h.header_end, 0x268);
    assert_int_equal(h.cmdline_size, 2047);
    free(img);
}

static void rejects_malformed_headers(void **state)
{
    struct bzimage_header h;
    uint8_t *img = fake_bzimage();
    (void)state;

    assert_int_equal(bzimage_parse(img, 0x263, &h), -ENOEXEC); /* truncated header */
    assert_int_equal(bzimage_parse(img, (SETUP_SECTS + 1) * 512, &h), -ENOEXEC); /* no kernel */
    img[0x1f1] = 255;
    assert_int_equal(bzimage_parse(img, IMAGE_LEN, &h), -ENOEXEC); /* setup beyond file */
    img[0x1f1] = SETUP_SECTS;
    put16(img + 0x236, 0);
    assert_int_equal(bzimage_parse(img, IMAGE_LEN, &h), -ENOEXEC); /* no 64-bit entry */
    put16(img + 0x236, 1);
    put16(img + 0x206, 0x0204);
    assert_int_equal(bzimage_parse(img, IMAGE_LEN, &h), -ENOEXEC); /* protocol too old */
    put16(img + 0x206, 0x020f);
    put16(img + 0x1fe, 0x1234);
    assert_int_equal(bzimage_parse(img, IMAGE_LEN, &h), -ENOEXEC);
    put16(img + 0x1fe, 0xaa55);
    img[0x201] = 0xff; /* header claims to run past the setup area? no: 0x301 < 4096 ok */
    assert_int_equal(bzimage_parse(img, IMAGE_LEN, &h), 0);
    memcpy(img + 0x202, "HdrX", 4);
    assert_int_equal(x86_kernel_check(img, IMAGE_LEN), -ENOEXEC);
    free(img);
}

static void loads_with_boot_protocol(void **state)
{
    struct guest_memory mem = make_memory(64ull << 20);
    uint8_t *img = fake_bzimage(), *zp, initrd[10000];
    struct x86_cpu_state bsp;
    struct x86_boot_request req = {
        .kernel = img, .kernel_len = IMAGE_LEN, .initrd = initrd, .initrd_len = sizeof(initrd),
        .cmdline = "console=ttyS0 quiet", .rsdp_gpa = X86_ACPI_ADDR,
    };
    uint32_t initrd_addr;
    (void)state;

    memset(initrd, 0x5a, sizeof(initrd));
    assert_int_equal(x86_boot_load(&mem, &req, &bsp), 0);
    zp = gpa_ptr(&mem, X86_ZERO_PAGE_ADDR, 4096);
    assert_memory_equal(zp + 0x202, "HdrS", 4);
    assert_int_equal(zp[0x210], 0xff);                      /* type_of_loader */
    assert_int_equal(get32(zp + 0x228), X86_CMDLINE_ADDR);  /* cmd_line_ptr */
    assert_string_equal((char *)gpa_ptr(&mem, X86_CMDLINE_ADDR, 1), "console=ttyS0 quiet");
    initrd_addr = get32(zp + 0x218);
    assert_int_equal(get32(zp + 0x21c), sizeof(initrd));
    assert_int_equal(initrd_addr % 4096, 0);
    assert_true(initrd_addr >= 0x1000000 + 0x200000);       /* clear of the decompressor */
    assert_true(initrd_addr + sizeof(initrd) <= (64u << 20));
    assert_memory_equal(gpa_ptr(&mem, initrd_addr, sizeof(initrd)), initrd, sizeof(initrd));
    assert_int_equal(get32(zp + 0x70), X86_ACPI_ADDR);       /* acpi_rsdp_addr */
    assert_int_equal(zp[0x1e8], 3);                          /* e820 entries */
    assert_int_equal(*(uint8_t *)gpa_ptr(&mem, X86_HIGH_MEMORY, 1), 0xcc);
    assert_int_equal(bsp.rip, X86_HIGH_MEMORY + 0x200);
    assert_int_equal(bsp.rsi, X86_ZERO_PAGE_ADDR);
    assert_true(bsp.efer & X86_EFER_LMA);
    assert_true(bsp.cr0 & X86_CR0_PG);
    assert_int_equal(bsp.cs.l, 1);
    assert_int_equal(bsp.cs.selector, 0x10);
    free(img);
    guest_memory_free(&mem);
}

static void initrd_that_does_not_fit_is_an_error(void **state)
{
    struct guest_memory mem = make_memory(32ull << 20);
    uint8_t *img = fake_bzimage();
    size_t big = 20u << 20;
    uint8_t *initrd = calloc(1, big);
    struct x86_cpu_state bsp;
    struct x86_boot_request req = {
        .kernel = img, .kernel_len = IMAGE_LEN, .initrd = initrd, .initrd_len = big,
    };
    (void)state;

    assert_int_equal(x86_boot_load(&mem, &req, &bsp), -ENOMEM);
    free(initrd);
    free(img);
    guest_memory_free(&mem);
}

static void command_line_longer_than_kernel_allows(void **state)
{
    struct guest_memory mem = make_memory(32ull << 20);
    uint8_t *img = fake_bzimage();
    char *cmdline = malloc(3000);
    struct x86_cpu_state bsp;
    struct x86_boot_request req = {.kernel = img, .kernel_len = IMAGE_LEN, .cmdline = cmdline};
    (void)state;

    memset(cmdline, 'a', 2999);
    cmdline[2999] = 0;
    assert_int_equal(x86_boot_load(&mem, &req, &bsp), -E2BIG);
    free(cmdline);
    free(img);
    guest_memory_free(&mem);
}

/* Random corruption of the header must give an error or a clean load,
 * never a read outside the image (ASan watches). */
static void survives_random_corruption(void **state)
{
    struct guest_memory mem = make_memory(32ull << 20);
    struct x86_cpu_state bsp;
    (void)state;

    srand(1);
    for (int i = 0; i < 3000; i++) {
        uint8_t *img = fake_bzimage();
        size_t len = IMAGE_LEN - (size_t)(rand() % 2 ? rand() % IMAGE_LEN : 0);
        uint8_t *copy = malloc(len);
        for (int k = 0; k < 4; k++)
            img[0x1f0 + rand() % 0x80] = (uint8_t)rand();
        memcpy(copy, img, len);
        struct x86_boot_request req = {.kernel = copy, .kernel_len = len, .cmdline = "x"};
        int r = x86_boot_load(&mem, &req, &bsp);
        assert_true(r == 0 || r < 0);
        free(copy);
        free(img);
    }
    guest_memory_free(&mem);
}

/* The oracle: the host's real Debian kernel. */
static void parses_the_host_kernel(void **state)
{
    glob_t g;
    struct mapped_file f;
    struct bzimage_header h;
    (void)state;

    if (glob("/boot/vmlinuz-*", 0, NULL, &g) != 0 || g.gl_pathc == 0) {
        globfree(&g);
        skip();
    }
    assert_int_equal(file_map(g.gl_pathv[0], "kernel", &f), 0);
    assert_int_equal(bzimage_parse(f.data, f.len, &h), 0);
    assert_true(h.version >= 0x020c);
    assert_true(h.init_size > 0);
    file_unmap(&f);
    globfree(&g);
}

/* A bzImage opened as a kernel is read whole (its protected-mode part is
 * copied as it is) and loaded through the boot protocol; a file that is
 * neither a bzImage nor an ELF is refused with one line naming it. */
static void opened_bzimage_is_read_whole(void **state)
{
    char path[] = "/tmp/smolvm-test-bzimage.XXXXXX";
    struct guest_memory mem = make_memory(64ull << 20);
    uint8_t *img = fake_bzimage();
    struct x86_kernel_file kernel;
    struct x86_boot_request req = {.cmdline = "console=ttyS0"};
    struct x86_cpu_state bsp;
    int fd = mkstemp(path);
    (void)state;

    assert_true(fd >= 0);
    assert_int_equal(write(fd, img, IMAGE_LEN), IMAGE_LEN);
    close(fd);
    assert_int_equal(x86_kernel_open(path, "kernel", &kernel), 0);
    assert_true(x86_kernel_is_bzimage(&kernel));
    assert_int_equal(kernel.image.len, IMAGE_LEN);
    x86_kernel_request(&kernel, &req);
    assert_null(req.kernel_file);
    assert_int_equal(x86_boot_load(&mem, &req, &bsp), 0);
    assert_int_equal(*(uint8_t *)gpa_ptr(&mem, X86_HIGH_MEMORY, 1), 0xcc);
    x86_kernel_close(&kernel);

    memcpy(img + 0x202, "HdrX", 4);
    fd = open(path, O_WRONLY | O_TRUNC);
    assert_int_equal(write(fd, img, IMAGE_LEN), IMAGE_LEN);
    close(fd);
    assert_int_equal(x86_kernel_open(path, "kernel", &kernel), -ENOEXEC);
    assert_non_null(strstr(err_msg(), path));
    assert_non_null(strstr(err_msg(), "not a Linux kernel"));
    assert_null(strchr(err_msg(), '\n'));
    unlink(path);
    free(img);
    guest_memory_free(&mem);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parses_header),
        cmocka_unit_test(rejects_malformed_headers),
        cmocka_unit_test(loads_with_boot_protocol),
        cmocka_unit_test(initrd_that_does_not_fit_is_an_error),
        cmocka_unit_test(command_line_longer_than_kernel_allows),
        cmocka_unit_test(survives_random_corruption),
        cmocka_unit_test(parses_the_host_kernel),
        cmocka_unit_test(opened_bzimage_is_read_whole),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
