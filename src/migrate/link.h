/* Where a migration goes: "tcp:HOST:PORT" (HOST a name, an IPv4 address
 * or [IPv6]) or "unix:PATH". The destination listens, the source
 * connects. */
#ifndef SMOLVM_MIGRATE_LINK_H
#define SMOLVM_MIGRATE_LINK_H

/* Checks an address's form without touching the network: 0, or -EINVAL
 * with the message naming it (a usage error). */
int migrate_address_check(const char *address) __attribute__((warn_unused_result));
/* A connected socket (CLOEXEC), or a negative errno with the message set. */
int migrate_connect(const char *address) __attribute__((warn_unused_result));
/* A listening socket; a unix path already there is refused, not removed. */
int migrate_listen(const char *address) __attribute__((warn_unused_result));
/* The first connection on a listening socket. */
int migrate_accept(int listener) __attribute__((warn_unused_result));

#endif
