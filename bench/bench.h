/*
 * What every ae-bench worker shares. A worker is one executable per event
 * library (ae-bench-anyevent, ae-bench-libev, ae-bench-libevent,
 * ae-bench-libuv: never two libraries in one program), runs one workload with
 * the parameters given on its command line, and prints one line:
 *
 *   ok workload=pipechain impl=libev n=1000 ... setup_us=12.3 run_us=456.7 peak_rss_kb=2345
 *
 * or "unsupported <why>" when the library has no such thing (libevent has no
 * idle watcher). The driver, ae-bench, runs workers, interleaves anyevent and
 * native runs, takes medians and prints the comparison. docs/benchmarks.md
 * defines every workload and metric; a twin must measure exactly the same.
 */
#ifndef AE_BENCH_H
#define AE_BENCH_H

#include <stdbool.h>
#include <stddef.h>

typedef struct bench_args {
    const char *workload; /* lifecycle, pipechain, timers, pingpong, condvar, idle, async */
    const char *backend;  /* ae-bench-anyevent: the anyevent backend */
    const char *kind;     /* lifecycle: io|timer|signal|child|idle; timers: fire|cancel|rearm|repeat */
    long n;               /* watchers, pipes, timers, items; async: latency rounds */
    long active;          /* pipechain: active pipes */
    long writes;          /* pipechain: writes per iteration */
    long iterations;      /* pipechain: iterations */
    long size;            /* pingpong: message bytes */
    long count;           /* pingpong: round trips; timers rearm/repeat, idle: calls; async: sends */
} bench_args;

/* Implemented by each worker: run a->workload, report with bench_metric(). */
void bench_run(const bench_args *a);

/* The name of this worker's implementation: "anyevent", "libev", ... */
extern const char *const bench_impl;

/* Monotonic seconds. */
double bench_now(void);

/* Record one result; printed as key=value by the final line. */
void bench_metric(const char *key, double value);

/* This workload or kind does not exist in the library: print
 * "unsupported <why>" and exit 0. */
_Noreturn void bench_unsupported(const char *why);

/* Something failed: print it on stderr and exit 1. */
_Noreturn void bench_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* malloc, calloc and realloc calls made so far in this process (an
 * interposer in common.c counts them, the libraries' included). */
long bench_allocs(void);

/* The resident set now, in KiB. */
long bench_rss_kb(void);

/* Make room for n more open fds (raising RLIMIT_NOFILE as far as allowed);
 * bench_unsupported() if that is impossible. */
void bench_need_fds(long n);

/* The median of v[0..n) (sorts v); n > 0. */
double bench_median(double *v, long n);

/* A pseudo-random sequence, the same in every worker: 0 <= r < bound. */
unsigned long bench_random(unsigned long bound);

/* The async workload's other thread, the same for every worker. The worker
 * creates its library's cross-thread wake-up (ae_async, ev_async, uv_async_t,
 * a libevent event made active), calls bench_async_start() with the function
 * that sends it, runs its loop, and calls bench_async_seen() from the
 * callback until it returns true; then bench_async_finish() joins the thread
 * and reports lat_med_ns, lat_p99_ns (send to callback, one send at a time,
 * n rounds), sends_per_s and allocs_send (count sends back to back). */
typedef struct bench_async bench_async;
bench_async *bench_async_start(void (*send)(void *ctx), void *ctx, long rounds, long count);
int bench_async_seen(bench_async *b); /* 1: all done, stop the loop */
void bench_async_finish(bench_async *b);

#endif
