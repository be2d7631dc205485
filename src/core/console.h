/* The host side of the guest's console: guest output to stdout (watched for
 * the first byte and the --trace-until marker), stdin to whichever device
 * owns the console, raw mode on a terminal with Ctrl-A x to quit. */
#ifndef SMOLVM_CORE_CONSOLE_H
#define SMOLVM_CORE_CONSOLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct console;

typedef void (*console_input_fn)(void *opaque, const uint8_t *buf, size_t len);

int console_open(struct console **out, bool interactive, const char *marker)
    __attribute__((warn_unused_result));
/* Restores the terminal. */
void console_close(struct console *con);

/* Thread-safe. */
void console_output(struct console *con, const uint8_t *buf, size_t len);
void console_set_input(struct console *con, console_input_fn fn, void *opaque);

struct loop;
/* Forwards stdin to the input device from the loop; the user typing
 * Ctrl-A x ends the loop and makes console_quit_requested() true. */
int console_attach(struct console *con, struct loop *l) __attribute__((warn_unused_result));
bool console_quit_requested(const struct console *con);

#endif
