/* kqueue/kevent, to be answered on epoll: none yet (the table is empty, so
 * both return ENOSYS and --strace names them). */
#include "bsduser/internal.h"

const struct bsd_handler bsd_kqueue_calls[] = {{"", NULL}};
const size_t bsd_kqueue_call_count = 0;
