/* The host side of the guest's console: guest output to stdout (watched for
 * the first byte and the --trace-until marker), stdin to whichever device
 * owns the console, raw mode on a terminal with Ctrl-A x to quit.
 * Output never waits for the host: it is queued (256 KiB) and written by a
 * thread of its own; what finds the queue full is dropped and counted. */
#ifndef SMOLVM_CORE_CONSOLE_H
#define SMOLVM_CORE_CONSOLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct console;

typedef void (*console_input_fn)(void *opaque, const uint8_t *buf, size_t len);

int console_open(struct console **out, bool interactive, const char *marker)
    __attribute__((warn_unused_result));
/* The same with output to out_fd instead of stdout. */
int console_open_fd(struct console **out, bool interactive, const char *marker, int out_fd)
    __attribute__((warn_unused_result));
/* Writes out what is queued while the host takes it (giving up after 1 s
 * without progress), says on stderr how many bytes were dropped, if any,
 * and restores the terminal. */
void console_close(struct console *con);

/* Thread-safe; never blocks on the host's output. */
void console_output(struct console *con, const uint8_t *buf, size_t len);
/* Bytes of output dropped so far because the host did not take them. */
uint64_t console_dropped(struct console *con);
/* The output fd is the log file PATH: once it holds limit bytes it becomes
 * PATH.1 (replacing an older one) and a fresh PATH is started. Call before
 * the guest runs. */
void console_log_to(struct console *con, const char *path, uint64_t limit);
void console_set_input(struct console *con, console_input_fn fn, void *opaque);
/* fn(opaque) is called once, by the thread that outputs it, with the
 * guest's next output that is not the echo of input given to it (its
 * terminal echoing a typed line back is no answer yet: the first byte
 * that differs is; under the console's lock: fn must not block);
 * fn NULL cancels it, and no call is under way once that returns. */
typedef void (*console_output_fn)(void *opaque);
void console_on_next_output(struct console *con, console_output_fn fn, void *opaque);

struct loop;
/* Forwards stdin to the input device from the loop; the user typing
 * Ctrl-A x ends the loop and makes console_quit_requested() true. */
int console_attach(struct console *con, struct loop *l) __attribute__((warn_unused_result));
bool console_quit_requested(const struct console *con);

/* Input from outside the terminal (the VM's console socket: `smolvm attach`,
 * the web console): fd, a connected non-blocking socket, is read from the
 * loop of console_attach() (call after it, on the loop's thread) in chunks
 * of at most 256 bytes, handed to the input device as they are, and closed
 * when its peer hangs up or the console closes. The device keeps what the
 * guest has not read yet within its own bound and drops the rest, so a
 * client never blocks a vCPU. Takes fd in every case; refuses (-EBUSY) a
 * client beyond CONSOLE_INPUT_CLIENTS. */
#define CONSOLE_INPUT_CLIENTS 4
int console_add_input(struct console *con, int fd) __attribute__((warn_unused_result));

#endif
