/* One-line error reporting.
 *
 * A failing function records a message with err_set() and returns its
 * negative errno; callers up the stack either add nothing (the first message
 * is usually the most precise) or wrap it with err_prefix(). The CLI prints
 * err_msg() once, as one line, and picks the exit code. */
#ifndef SMOLVM_UTIL_ERR_H
#define SMOLVM_UTIL_ERR_H

#include <errno.h>

/* Records "fmt...: strerror(errnum)" (or just "fmt..." when errnum is 0) and
 * returns -errnum (or -EINVAL when errnum is 0). */
int err_set(int errnum, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Like err_set() without the strerror suffix; returns -errnum. */
int err_plain(int errnum, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Puts "fmt...: " in front of the recorded message. */
void err_prefix(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The last message of this thread, or "" if none. */
const char *err_msg(void);

void err_clear(void);

#endif
