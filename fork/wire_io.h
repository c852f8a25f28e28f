/* sendmsg() with an optional fd, for both ends (wire.c). */
#ifndef AE_FORK_WIRE_IO_H
#define AE_FORK_WIRE_IO_H

#include <sys/types.h>
#include <sys/uio.h>

/* One sendmsg() of iov (fd in SCM_RIGHTS if >= 0), MSG_NOSIGNAL added,
 * EINTR retried. Returns what sendmsg() returns. */
ssize_t ae__wire_sendmsg(int sock, struct iovec *iov, int n, int fd, int flags);

#endif
