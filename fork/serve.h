/* The process side of anyevent/fork.h (serve.c): what ae-fork-server, and a
 * template made by ae_fork_self(), run. Compiled into libanyevent and into
 * the helper. */
#ifndef AE_FORK_SERVE_H
#define AE_FORK_SERVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AE_RPC_REPLY_MAGIC 0x61657270u /* "aerp" */

/* One reply being written by a handler: buf starts with room for the
 * reply header (wire.h). */
struct ae_rpc_reply {
    uint32_t magic;
    unsigned char *buf;
    size_t len, cap;
};

/* Serve the protocol on sock until told to run something, or the parent
 * goes away; never returns. quick_exit: fflush(NULL) and _exit() instead of
 * exit() (a copy of the user's program must not run its atexit handlers). */
_Noreturn void ae__fork_serve(int sock, bool quick_exit);

/* Close every fd >= lowfd (close_range, closefrom, or the open ones in /dev/fd). */
void ae__close_from(int lowfd);

/* Threads of this process (/proc/self/task); -1 if unknown. */
int ae__thread_count(void);

#endif
