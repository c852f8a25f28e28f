/* The shared part of every ae-bench worker: arguments, timing, the result
 * line, the allocation counter. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

/* ---- allocation counting: the executable's malloc wins over libc's for
 * every library in the process. */

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);

static atomic_long allocs;

void *malloc(size_t n)
{
    atomic_fetch_add_explicit(&allocs, 1, memory_order_relaxed);
    return __libc_malloc(n);
}

void *calloc(size_t n, size_t m)
{
    atomic_fetch_add_explicit(&allocs, 1, memory_order_relaxed);
    return __libc_calloc(n, m);
}

void *realloc(void *p, size_t n)
{
    atomic_fetch_add_explicit(&allocs, 1, memory_order_relaxed);
    return __libc_realloc(p, n);
}

void free(void *p) { __libc_free(p); }

long bench_allocs(void) { return atomic_load(&allocs); }

/* ---- results ---- */

#define MAX_METRICS 32
typedef struct metric {
    const char *key;
    double value;
} metric;
static metric metrics[MAX_METRICS];
static int n_metrics;
static bench_args args;

void bench_metric(const char *key, double value)
{
    if (n_metrics < MAX_METRICS)
        metrics[n_metrics++] = (metric){key, value};
}

_Noreturn void bench_unsupported(const char *why)
{
    printf("unsupported %s\n", why);
    exit(0);
}

_Noreturn void bench_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "ae-bench-%s: %s: ", bench_impl, args.workload ? args.workload : "?");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

long bench_rss_kb(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, resident = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

void bench_need_fds(long n)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        bench_fail("getrlimit: %s", strerror(errno));
    rlim_t want = (rlim_t)n + 64;
    if (rl.rlim_cur >= want)
        return;
    if (rl.rlim_max < want)
        rl.rlim_max = want; /* allowed as root */
    rl.rlim_cur = want;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
        char why[128];
        snprintf(why, sizeof why, "needs %ld open fds; RLIMIT_NOFILE cannot be raised: %s", n, strerror(errno));
        bench_unsupported(why);
    }
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

double bench_median(double *v, long n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

unsigned long bench_random(unsigned long bound)
{
    static unsigned long long x = 0x9E3779B97F4A7C15ull;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return bound ? (unsigned long)(x % bound) : 0;
}

/* ---- main ---- */

static long number(const char *opt, const char *s)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < 0)
        bench_fail("%s: not a count: %s", opt, s);
    return v;
}

int main(int argc, char **argv)
{
    args = (bench_args){.n = 1000, .active = 100, .writes = 100, .iterations = 25, .size = 1, .count = 100000};
    if (argc < 2) {
        fprintf(stderr, "usage: %s WORKLOAD [--backend NAME] [--kind KIND] [--n N] [--active A] [--writes W]\n"
                        "       [--iterations I] [--size BYTES] [--count C]\n", argv[0]);
        return 2;
    }
    args.workload = argv[1];
    for (int i = 2; i < argc; i++) {
        const char *opt = argv[i];
        if (i + 1 >= argc)
            bench_fail("%s needs a value", opt);
        const char *val = argv[++i];
        if (!strcmp(opt, "--backend"))
            args.backend = val;
        else if (!strcmp(opt, "--kind"))
            args.kind = val;
        else if (!strcmp(opt, "--n"))
            args.n = number(opt, val);
        else if (!strcmp(opt, "--active"))
            args.active = number(opt, val);
        else if (!strcmp(opt, "--writes"))
            args.writes = number(opt, val);
        else if (!strcmp(opt, "--iterations"))
            args.iterations = number(opt, val);
        else if (!strcmp(opt, "--size"))
            args.size = number(opt, val);
        else if (!strcmp(opt, "--count"))
            args.count = number(opt, val);
        else
            bench_fail("unknown option %s", opt);
    }
    bench_run(&args);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("ok workload=%s impl=%s", args.workload, bench_impl);
    if (args.kind)
        printf(" kind=%s", args.kind);
    for (int i = 0; i < n_metrics; i++)
        printf(" %s=%.6g", metrics[i].key, metrics[i].value);
    printf(" peak_rss_kb=%ld\n", ru.ru_maxrss);
    return 0;
}

/* ---- the async workload's sending thread ---- */

struct bench_async {
    void (*send)(void *ctx);
    void *ctx;
    long rounds, count;
    double *sent_at, *lat;
    atomic_long round_sent; /* latency rounds sent (sent_at written first) */
    atomic_long round_seen; /* latency rounds the loop's callback saw */
    atomic_int done;        /* the last send of all is made */
    long callbacks;
    double t0, t1;
    long allocs0, allocs1;
    pthread_t thread;
};

static void *async_sender(void *arg)
{
    bench_async *b = arg;
    /* Latency: one send at a time, the next once the callback saw it. */
    for (long i = 0; i < b->rounds; i++) {
        b->sent_at[i] = bench_now();
        atomic_store_explicit(&b->round_sent, i + 1, memory_order_release);
        b->send(b->ctx);
        while (atomic_load_explicit(&b->round_seen, memory_order_acquire) <= i)
            sched_yield();
    }
    /* Throughput: back to back; they coalesce. */
    b->allocs0 = bench_allocs();
    b->t0 = bench_now();
    for (long i = 0; i < b->count; i++)
        b->send(b->ctx);
    b->t1 = bench_now();
    b->allocs1 = bench_allocs();
    atomic_store_explicit(&b->done, 1, memory_order_release);
    b->send(b->ctx);
    return NULL;
}

bench_async *bench_async_start(void (*send)(void *ctx), void *ctx, long rounds, long count)
{
    if (rounds < 1 || count < 1)
        bench_fail("async: --n and --count must be at least 1");
    bench_async *b = calloc(1, sizeof *b);
    if (!b || !(b->sent_at = calloc((size_t)rounds, sizeof(double))) ||
        !(b->lat = calloc((size_t)rounds, sizeof(double))))
        bench_fail("out of memory");
    b->send = send;
    b->ctx = ctx;
    b->rounds = rounds;
    b->count = count;
    if (pthread_create(&b->thread, NULL, async_sender, b) != 0)
        bench_fail("pthread_create failed");
    return b;
}

int bench_async_seen(bench_async *b)
{
    b->callbacks++;
    long sent = atomic_load_explicit(&b->round_sent, memory_order_acquire);
    long seen = atomic_load_explicit(&b->round_seen, memory_order_relaxed);
    if (sent > seen) {
        b->lat[sent - 1] = bench_now() - b->sent_at[sent - 1];
        atomic_store_explicit(&b->round_seen, sent, memory_order_release);
    }
    return atomic_load_explicit(&b->done, memory_order_acquire);
}

void bench_async_finish(bench_async *b)
{
    pthread_join(b->thread, NULL);
    long n = b->rounds;
    double p99 = 0;
    bench_median(b->lat, n); /* sorts */
    p99 = b->lat[(long)((double)(n - 1) * 0.99)];
    bench_metric("lat_med_ns", b->lat[(n - 1) / 2] * 1e9);
    bench_metric("lat_p99_ns", p99 * 1e9);
    bench_metric("sends_per_s", (double)b->count / (b->t1 - b->t0));
    bench_metric("allocs_send", (double)(b->allocs1 - b->allocs0) / (double)b->count);
    free(b->sent_at);
    free(b->lat);
    free(b);
}
