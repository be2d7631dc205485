/* A spare VMM: `smolvm serve` keeps one `smolvm start --spare-fd FD
 * --detach [--jail]` process ready before any request (exec'd, its
 * checks made, the parts of its jail that do not depend on the machine
 * planned: cli/jail.h), waiting on a socketpair of its own (FD) for the
 * name of the machine to start; told it, it goes on exactly as
 * `smolvm start NAME --detach [--jail]` would, its output and exit status
 * the daemon's to read as before.
 *
 * The words on the pair: the daemon writes "NAME\n"; the spare answers
 * one byte, SPARE_TAKEN, once it has read a name it will start (anything
 * else: it says why on stderr and exits 2, as start would); the daemon,
 * having read it, writes SPARE_GO, and only then does the spare make
 * anything of the machine's. A daemon that sees no answer in time (the
 * spare died, or is slow) closes the pair and kills it: a spare that
 * answered late is still waiting for SPARE_GO and has made nothing (no
 * NAME.sock left half made), and the machine starts the normal way. The
 * daemon closing its end without a name, or without SPARE_GO, ends the
 * spare (exit 0, nothing made). */
#ifndef SMOLVM_API_SPARE_H
#define SMOLVM_API_SPARE_H

#include <stddef.h>
#include <sys/types.h>

#define SPARE_TAKEN 'k'
#define SPARE_GO 'g'
/* How long the daemon waits for SPARE_TAKEN: the spare is blocked in
 * read() once ready, so it answers at once; one still making its plan on
 * a busy host is given time, not a race. */
#define SPARE_ANSWER_MS 10000

/* The spare's side: the name read from fd into name (size bytes at
 * least 2), checked (control_name_ok()); SPARE_TAKEN sent back, and
 * SPARE_GO awaited. 0; -ECONNRESET when fd closed before a whole name or
 * SPARE_GO (the daemon ends us); -EINVAL (message set, err.h) for what is
 * not a machine name; -errno. */
int spare_take_name(int fd, char *name, size_t size);

/* The daemon's side: name sent on fd, SPARE_TAKEN waited for (up to
 * timeout_ms), SPARE_GO sent. 0 when the spare took it; -errno when it
 * did not (it died, or did not answer in time: start the machine another
 * way, the spare killed -- it has made nothing). */
int spare_give_name(int fd, const char *name, int timeout_ms);

/* The folder a jailed spare's root is built on ahead (confine/jail.h's
 * jail_template_make()): RUNTIME/spare-PID.root, PID the spare's. The
 * relay of the VM it starts removes it once the VM has ended; the daemon
 * when the spare ends unused, or its start fails. NULL (message set)
 * without a runtime folder. */
char *spare_root_dir(pid_t spare);

/* The folders spares of this user left in the runtime folder (one killed
 * -9, or whose VM's relay was) removed: those of processes no longer
 * there. A live one's (another daemon's spare) stays; a folder that is
 * not empty stays (rmdir). The daemon does it before its first spare. */
void spare_roots_sweep(void);

#endif
