/* hiredis's own adapter for one native event library (hiredis/adapters/),
 * one small file per library (native_libev.c, ...), each linked into its own
 * benchmark executable with that library's host loop (tests/adopt/host.h). */
#ifndef AE_BENCH_HIREDIS_NATIVE_H
#define AE_BENCH_HIREDIS_NATIVE_H

#include <hiredis/async.h>

/* Attach ac to the native loop with hiredis's own adapter: REDIS_OK or
 * REDIS_ERR, as the adapter returns. */
int native_attach(redisAsyncContext *ac, void *native);

#endif
