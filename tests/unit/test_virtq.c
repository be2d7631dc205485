#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "devices/virtio/queue.h"

/* A fake guest: 1 MiB of RAM at 0 with a 16-entry queue in it. */
#define RAM (1u << 20)
#define QSIZE 16
#define DESC 0x1000
#define AVAIL 0x2000
#define USED 0x3000
#define DATA 0x10000

static struct guest_memory mem;
static struct virtq q;

static uint8_t *ram(uint64_t gpa) { return gpa_ptr(&mem, gpa, 1); }

static void set_desc(uint64_t table, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags,
                     uint16_t next)
{
    uint8_t *d = ram(table + 16ull * i);
    memcpy(d, &addr, 8);
    memcpy(d + 8, &len, 4);
    memcpy(d + 12, &flags, 2);
    memcpy(d + 14, &next, 2);
}

static void publish(uint16_t head)
{
    uint16_t *avail = (uint16_t *)ram(AVAIL);
    avail[2 + avail[1] % QSIZE] = head;
    avail[1]++;
}

static uint16_t used_idx(void) { return *(uint16_t *)ram(USED + 2); }

static int setup(void **state)
{
    struct guest_region r = {.gpa = 0, .size = RAM};
    (void)state;
    assert_int_equal(guest_memory_alloc(&mem, &r, 1), 0);
    q = (struct virtq){.mem = &mem, .size = QSIZE, .desc_gpa = DESC, .avail_gpa = AVAIL,
                       .used_gpa = USED, .ready = true};
    assert_int_equal(virtq_validate(&q), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    guest_memory_free(&mem);
    return 0;
}

static void pops_a_chain_and_pushes_it_back(void **state)
{
    struct virtq_chain c;
    (void)state;

    memcpy(ram(DATA), "header..", 8);
    set_desc(DESC, 0, DATA, 8, VIRTQ_DESC_F_NEXT, 3);
    set_desc(DESC, 3, DATA + 0x100, 512, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 5);
    set_desc(DESC, 5, DATA + 0x400, 1, VIRTQ_DESC_F_WRITE, 0);
    assert_int_equal(virtq_pop(&q, &c), 0); /* nothing published yet */
    publish(0);
    assert_int_equal(virtq_pop(&q, &c), 1);
    assert_int_equal(c.head, 0);
    assert_int_equal(c.count, 3);
    assert_int_equal(c.readable, 1);
    assert_int_equal(c.readable_bytes, 8);
    assert_int_equal(c.writable_bytes, 513);
    char hdr[8];
    assert_int_equal(virtq_chain_read(&c, 0, hdr, 8), 8);
    assert_memory_equal(hdr, "header..", 8);
    assert_int_equal(virtq_chain_write(&c, 510, "xyz", 3), 3); /* spans two buffers */
    assert_memory_equal(ram(DATA + 0x100 + 510), "xy", 2);
    assert_int_equal(*ram(DATA + 0x400), 'z');
    assert_int_equal(virtq_push(&q, c.head, 513), 0);
    assert_int_equal(used_idx(), 1);
    assert_int_equal(*(uint32_t *)ram(USED + 4), 0);
    assert_int_equal(*(uint32_t *)ram(USED + 8), 513);
    assert_int_equal(virtq_pop(&q, &c), 0);
}

static void follows_indirect_tables(void **state)
{
    struct virtq_chain c;
    uint64_t table = 0x8000;
    (void)state;

    set_desc(table, 0, DATA, 16, VIRTQ_DESC_F_NEXT, 1);
    set_desc(table, 1, DATA + 16, 64, VIRTQ_DESC_F_WRITE, 0);
    set_desc(DESC, 2, table, 32, VIRTQ_DESC_F_INDIRECT, 0);
    publish(2);
    assert_int_equal(virtq_pop(&q, &c), 1);
    assert_int_equal(c.head, 2);
    assert_int_equal(c.count, 2);
    assert_int_equal(c.writable_bytes, 64);
}

static void expect_malformed(int want)
{
    struct virtq_chain c;
    publish(0);
    assert_int_equal(virtq_pop(&q, &c), want);
}

static void refuses_a_loop(void **state)
{
    (void)state;
    set_desc(DESC, 0, DATA, 8, VIRTQ_DESC_F_NEXT, 1);
    set_desc(DESC, 1, DATA, 8, VIRTQ_DESC_F_NEXT, 0);
    expect_malformed(-ELOOP);
}

static void refuses_a_self_loop_in_an_indirect_table(void **state)
{
    (void)state;
    set_desc(0x8000, 0, DATA, 8, VIRTQ_DESC_F_NEXT, 0);
    set_desc(DESC, 0, 0x8000, 16, VIRTQ_DESC_F_INDIRECT, 0);
    expect_malformed(-ELOOP);
}

static void refuses_an_index_out_of_range(void **state)
{
    (void)state;
    set_desc(DESC, 0, DATA, 8, VIRTQ_DESC_F_NEXT, QSIZE);
    expect_malformed(-EINVAL);
}

static void refuses_a_head_out_of_range(void **state)
{
    struct virtq_chain c;
    (void)state;
    publish(QSIZE + 3);
    assert_int_equal(virtq_pop(&q, &c), -EINVAL);
}

static void refuses_buffers_outside_ram(void **state)
{
    (void)state;
    set_desc(DESC, 0, RAM - 4, 8, 0, 0);
    expect_malformed(-EFAULT);
}

static void refuses_length_overflow(void **state)
{
    (void)state;
    set_desc(DESC, 0, UINT64_MAX - 2, 16, 0, 0);
    expect_malformed(-EFAULT);
}

static void refuses_readable_after_writable(void **state)
{
    (void)state;
    set_desc(DESC, 0, DATA, 8, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
    set_desc(DESC, 1, DATA, 8, 0, 0);
    expect_malformed(-EINVAL);
}

static void refuses_nested_indirect(void **state)
{
    (void)state;
    set_desc(0x8000, 0, 0x9000, 16, VIRTQ_DESC_F_INDIRECT, 0);
    set_desc(DESC, 0, 0x8000, 16, VIRTQ_DESC_F_INDIRECT, 0);
    expect_malformed(-EINVAL);
}

static void refuses_bad_indirect_sizes(void **state)
{
    (void)state;
    set_desc(DESC, 0, 0x8000, 15, VIRTQ_DESC_F_INDIRECT, 0);
    expect_malformed(-EINVAL);
}

static void refuses_over_long_chains(void **state)
{
    uint64_t table = 0x20000;
    (void)state;
    for (uint16_t i = 0; i < VIRTQ_MAX_CHAIN + 10; i++)
        set_desc(table, i, DATA, 4, VIRTQ_DESC_F_NEXT, (uint16_t)(i + 1));
    set_desc(DESC, 0, table, 16 * (VIRTQ_MAX_CHAIN + 10), VIRTQ_DESC_F_INDIRECT, 0);
    expect_malformed(-E2BIG);
}

static void refuses_an_avail_index_jump(void **state)
{
    struct virtq_chain c;
    (void)state;
    *(uint16_t *)ram(AVAIL + 2) = QSIZE + 1;
    assert_int_equal(virtq_pop(&q, &c), -EINVAL);
}

static void refuses_rings_outside_ram(void **state)
{
    struct virtq bad = q;
    (void)state;
    bad.used_gpa = RAM - 8;
    assert_int_not_equal(virtq_validate(&bad), 0);
    bad = q;
    bad.size = 12;
    assert_int_not_equal(virtq_validate(&bad), 0);
    bad.size = 0;
    assert_int_not_equal(virtq_validate(&bad), 0);
    bad = q;
    bad.desc_gpa = DESC + 8;
    assert_int_not_equal(virtq_validate(&bad), 0);
}

/* A used ring laid over the avail ring (each push would move the avail
 * index: one kick served forever) or over the descriptors is refused;
 * rings side by side are fine. */
static void refuses_overlapping_rings(void **state)
{
    struct virtq bad = q;
    (void)state;
    bad.used_gpa = AVAIL;
    assert_int_equal(virtq_validate(&bad), -EINVAL);
    bad.used_gpa = AVAIL + 4 + 2 * QSIZE; /* over avail's used_event */
    assert_int_equal(virtq_validate(&bad), -EINVAL);
    bad.used_gpa = DESC + 16 * (QSIZE - 1);
    assert_int_equal(virtq_validate(&bad), -EINVAL);
    bad.used_gpa = DESC + 16 * QSIZE; /* right after the descriptors */
    assert_int_equal(virtq_validate(&bad), 0);
}

static void interrupt_suppression(void **state)
{
    uint16_t *avail = (uint16_t *)ram(AVAIL);
    (void)state;

    assert_true(virtq_needs_interrupt(&q));
    avail[0] = VIRTQ_AVAIL_F_NO_INTERRUPT;
    assert_false(virtq_needs_interrupt(&q));
    avail[0] = 0;

    /* Event index: notify only when used_idx passes used_event. */
    q.event_idx = true;
    q.signalled_valid = false;
    avail[2 + QSIZE] = 2; /* used_event */
    q.used_idx = 1;
    assert_true(virtq_needs_interrupt(&q)); /* first time: always */
    q.used_idx = 2;
    assert_false(virtq_needs_interrupt(&q)); /* 2 is not past event 2 */
    q.used_idx = 3;
    assert_true(virtq_needs_interrupt(&q)); /* crossed it */
    q.used_idx = 4;
    assert_false(virtq_needs_interrupt(&q));
}

/* Kicks off while a device drains: the avail_event (or the used flags)
 * stops asking; on asks again and reports chains added meanwhile. */
static void kick_suppression(void **state)
{
    uint16_t *avail_event = (uint16_t *)ram(USED + 4 + 8 * QSIZE), *used_flags =
                                                                   (uint16_t *)ram(USED);
    struct virtq_chain c;
    (void)state;

    q.event_idx = true;
    set_desc(DESC, 0, DATA, 8, 0, 0);
    set_desc(DESC, 1, DATA, 8, 0, 0);
    virtq_notify_off(&q);
    publish(0);
    assert_int_equal(virtq_pop(&q, &c), 1);
    assert_int_equal(*avail_event, 0); /* not moved: no kick asked */
    publish(1);                        /* added while draining */
    assert_true(virtq_notify_on(&q));  /* seen */
    assert_int_equal(*avail_event, 1);
    assert_int_equal(virtq_pop(&q, &c), 1);
    assert_int_equal(*avail_event, 2); /* on again: each pop asks */
    assert_false(virtq_notify_on(&q));
    /* Without event index: VRING_USED_F_NO_NOTIFY. */
    q.event_idx = false;
    virtq_notify_off(&q);
    assert_int_equal(*used_flags, 1);
    assert_false(virtq_notify_on(&q));
    assert_int_equal(*used_flags, 0);
}

static bool page_marked(const _Atomic(uint64_t) *bits, uint64_t gpa)
{
    return bits[gpa / 4096 / 64] >> (gpa / 4096 % 64) & 1;
}

/* During a live migration the pages the device writes are marked dirty
 * (KVM's log sees only the guest's): the writable buffers of a chain it
 * takes and the used ring it returns it on; the readable ones are not. */
static void marks_what_the_device_writes(void **state)
{
    static _Atomic(uint64_t) bits[RAM / 4096 / 64];
    struct virtq_chain c;
    (void)state;

    mem.regions[0].vmm_dirty = bits;
    set_desc(DESC, 0, DATA, 8, VIRTQ_DESC_F_NEXT, 1);
    set_desc(DESC, 1, DATA + 0x3000, 0x2000, VIRTQ_DESC_F_WRITE, 0);
    publish(0);
    assert_int_equal(virtq_pop(&q, &c), 1);
    assert_false(page_marked(bits, DATA));
    assert_true(page_marked(bits, DATA + 0x3000) && page_marked(bits, DATA + 0x4000));
    assert_false(page_marked(bits, DATA + 0x5000));
    assert_false(page_marked(bits, USED));
    assert_int_equal(virtq_push(&q, c.head, 16), 0);
    assert_true(page_marked(bits, USED));
    mem.regions[0].vmm_dirty = NULL;
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(pops_a_chain_and_pushes_it_back), T(follows_indirect_tables), T(refuses_a_loop),
        T(marks_what_the_device_writes),
        T(refuses_a_self_loop_in_an_indirect_table), T(refuses_an_index_out_of_range),
        T(refuses_a_head_out_of_range), T(refuses_buffers_outside_ram), T(refuses_length_overflow),
        T(refuses_readable_after_writable), T(refuses_nested_indirect),
        T(refuses_bad_indirect_sizes), T(refuses_over_long_chains),
        T(refuses_an_avail_index_jump), T(refuses_rings_outside_ram), T(refuses_overlapping_rings),
        T(interrupt_suppression), T(kick_suppression),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
