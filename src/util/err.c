#include "util/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char message[512];

static void record(int errnum, int with_strerror, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

static void record(int errnum, int with_strerror, const char *fmt, va_list ap)
{
    int n = vsnprintf(message, sizeof(message), fmt, ap);
    if (with_strerror && errnum && n >= 0 && (size_t)n < sizeof(message))
        snprintf(message + n, sizeof(message) - (size_t)n, ": %s", strerror(errnum));
}

int err_set(int errnum, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    record(errnum, 1, fmt, ap);
    va_end(ap);
    return errnum ? -errnum : -EINVAL;
}

int err_plain(int errnum, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    record(errnum, 0, fmt, ap);
    va_end(ap);
    return errnum ? -errnum : -EINVAL;
}

void err_prefix(const char *fmt, ...)
{
    char old[sizeof(message)];
    va_list ap;
    int n;

    memcpy(old, message, sizeof(old));
    va_start(ap, fmt);
    n = vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof(message))
        snprintf(message + n, sizeof(message) - (size_t)n, ": %s", old);
}

const char *err_msg(void)
{
    return message;
}

void err_clear(void)
{
    message[0] = '\0';
}
