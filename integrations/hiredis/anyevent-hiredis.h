/*
 * anyevent-hiredis: run hiredis's asynchronous API (redisAsyncContext) on an
 * anyevent loop, whatever its backend, also on a loop adopted from a host
 * program (ae_loop_adopt()). docs/integrations/hiredis.md is the long form.
 *
 *     redisAsyncContext *ac = redisAsyncConnectUnix("/run/redis.sock");
 *     if (ac->err) ...;                       // hiredis's own error
 *     if (ae_hiredis_attach(ac, loop) != 0) ...;
 *     redisAsyncCommand(ac, on_reply, NULL, "INCR %s", "counter");
 *     ae_run(loop);
 *
 * As with every hiredis adapter, the program should ignore SIGPIPE: hiredis
 * writes with write(2), and a server that went away would otherwise kill the
 * process.
 */
#ifndef ANYEVENT_HIREDIS_H
#define ANYEVENT_HIREDIS_H

#include <anyevent.h>
#include <hiredis/async.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Attach ac to loop: from now on hiredis's reads, writes (and, with hiredis
 * 1.0 or newer, its connect and command timeouts) are driven by loop. One
 * io watcher is made for the context's fd, paused, and switched between
 * read/write interest in place as hiredis asks; it is freed when hiredis
 * cleans up (redisAsyncFree(), redisAsyncDisconnect(), or a connection
 * error), which may happen from inside a reply callback.
 *
 * Returns 0 (REDIS_OK, so the call reads like hiredis's own adapters), or a
 * negative AE_E* code; ae_strerror() names it:
 *  - AE_EINVAL: ac or loop is NULL;
 *  - AE_ESTATE: ac is already attached to an event library (ac->ev.data set);
 *  - AE_EBADF: ac has no open fd (a failed connect: check ac->err first);
 *  - AE_ENOMEM: out of memory;
 *  - any code of ae_io() / ae_io_set() (e.g. AE_ELIMIT on the select backend
 *    for fd >= FD_SETSIZE), with ae_last_error() giving anyevent's message.
 * Only codes coming from anyevent's own calls set ae_last_error(); for the
 * first four the code alone says what was wrong. On failure ac is left as
 * it was (not attached), and is still the caller's to free. */
int ae_hiredis_attach(redisAsyncContext *ac, ae_loop *loop);

#ifdef __cplusplus
}
#endif

#endif /* ANYEVENT_HIREDIS_H */
