/*
 * ae-bench-glib: the workloads of docs/benchmarks.md written directly
 * against GLib's main loop, the way a GLib user would.
 *
 * GLib's idiom: every workload has its own GMainContext; a watcher is a
 * GSource the caller keeps a reference to (g_unix_fd_source_new,
 * g_timeout_source_new, g_unix_signal_source_new, g_idle_source_new), made
 * with g_source_new and attached, and ended with g_source_destroy and
 * g_source_unref. For pipechain, whose setup changes every watcher's
 * interest, a source per fd whose unix fd tag is changed in place with
 * g_source_modify_unix_fd, GLib's own way to change an interest without a
 * new source. Timers with microsecond deadlines (timers fire and repeat,
 * as the spec's delays are in microseconds) are sources with a ready time
 * (g_source_set_ready_time), which is also GLib's way to re-arm one in
 * place (timers rearm); 0 s timers are g_timeout_source_new(0). The async
 * workload's wake-up is g_source_set_ready_time(source, 0) from the other
 * thread (thread-safe, wakes the context). "until" in the spec is
 * g_main_context_iteration(ctx, TRUE) in a loop checking a counter.
 * Lifecycle child is unsupported: GLib's child watch reaps its pid, so a
 * second watch of the same pid finds nothing.
 */
#include <errno.h>
#include <glib-unix.h>
#include <glib.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench.h"

const char *const bench_impl = "glib";

static void need_positive(const char *what, long v)
{
    if (v <= 0)
        bench_fail("%s must be > 0", what);
}

/* Something is always ready or in flight until the target: never blocks
 * for nothing. */
static void run_until(GMainContext *ctx, const long *count, long target)
{
    while (*count < target)
        g_main_context_iteration(ctx, TRUE);
}

/* ---- pipechain (libevent's test/bench.c) ---- */

static struct {
    int (*sv)[2]; /* [i][0] watched, [i][1] written */
    long n;
    long writes_left;
    long count; /* bytes read */
} pc;

typedef struct pc_source {
    GSource source;
    gpointer tag;
    long i;
} pc_source;

static gboolean pc_dispatch(GSource *source, GSourceFunc callback, gpointer data)
{
    (void)callback;
    (void)data;
    pc_source *s = (pc_source *)source;
    if (!(g_source_query_unix_fd(source, s->tag) & G_IO_IN))
        return G_SOURCE_CONTINUE;
    long i = s->i;
    unsigned char ch;
    ssize_t r = recv(pc.sv[i][0], &ch, 1, MSG_DONTWAIT);
    if (r != 1) {
        if (r < 0 && (errno == EAGAIN || errno == EINTR))
            return G_SOURCE_CONTINUE;
        bench_fail("recv: %s", r < 0 ? strerror(errno) : "end of file");
    }
    pc.count++;
    if (pc.writes_left > 0) {
        pc.writes_left--;
        long j = i + 1 == pc.n ? 0 : i + 1;
        if (send(pc.sv[j][1], "e", 1, 0) != 1)
            bench_fail("send: %s", strerror(errno));
    }
    return G_SOURCE_CONTINUE;
}

static GSourceFuncs pc_funcs = {.dispatch = pc_dispatch};

static void pipechain(const bench_args *a)
{
    long n = a->n, active = a->active, writes = a->writes, iters = a->iterations;
    need_positive("--n", n);
    need_positive("--active", active);
    need_positive("--iterations", iters);
    if (active > n)
        bench_fail("--active %ld > --n %ld", active, n);
    if (writes < 0)
        bench_fail("--writes must be >= 0");

    bench_need_fds(2 * n);
    pc.n = n;
    pc.sv = malloc((size_t)n * sizeof *pc.sv);
    pc_source **src = malloc((size_t)n * sizeof *src);
    double *setup = malloc((size_t)iters * sizeof *setup);
    double *run = malloc((size_t)iters * sizeof *run);
    double *allocs = malloc((size_t)iters * sizeof *allocs);
    if (!pc.sv || !src || !setup || !run || !allocs)
        bench_fail("out of memory");
    for (long i = 0; i < n; i++)
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, pc.sv[i]) < 0)
            bench_fail("socketpair: %s", strerror(errno));

    GMainContext *ctx = g_main_context_new();
    for (long i = 0; i < n; i++) {
        src[i] = (pc_source *)g_source_new(&pc_funcs, sizeof(pc_source));
        src[i]->i = i;
        src[i]->tag = g_source_add_unix_fd(&src[i]->source, pc.sv[i][0], G_IO_IN);
        g_source_attach(&src[i]->source, ctx);
    }
    long space = n / active;
    for (long it = 0; it < iters; it++) {
        /* As the spec names them: every watcher stopped and started again,
         * in place. */
        double t0 = bench_now();
        for (long i = 0; i < n; i++) {
            g_source_modify_unix_fd(&src[i]->source, src[i]->tag, 0);
            g_source_modify_unix_fd(&src[i]->source, src[i]->tag, G_IO_IN);
        }
        double t1 = bench_now();

        long al0 = bench_allocs();
        double t2 = bench_now();
        pc.count = 0;
        pc.writes_left = writes;
        for (long i = 0; i < active; i++)
            if (send(pc.sv[i * space][1], "e", 1, 0) != 1)
                bench_fail("send: %s", strerror(errno));
        run_until(ctx, &pc.count, active + writes);
        double t3 = bench_now();
        long al1 = bench_allocs();

        setup[it] = (t1 - t0) * 1e6;
        run[it] = (t3 - t2) * 1e6;
        allocs[it] = (double)(al1 - al0);
    }

    for (long i = 0; i < n; i++) {
        g_source_destroy(&src[i]->source);
        g_source_unref(&src[i]->source);
        close(pc.sv[i][0]);
        close(pc.sv[i][1]);
    }
    g_main_context_unref(ctx);
    free(src);
    free(pc.sv);

    bench_metric("setup_us", bench_median(setup, iters));
    bench_metric("run_us", bench_median(run, iters));
    bench_metric("allocs_run", bench_median(allocs, iters));
    free(setup);
    free(run);
    free(allocs);
}

/* ---- pingpong ---- */

static struct {
    int fd[2]; /* [0] end A, [1] end B */
    long size, count;
    long rts;
    long a_got, b_got;
    char *msg, *a_buf, *b_buf;
} pp;

static void write_all(int fd, const char *buf, long size)
{
    long done = 0;
    while (done < size) {
        ssize_t r = send(fd, buf + done, (size_t)(size - done), 0);
        if (r > 0)
            done += r;
        else if (r < 0 && errno == EINTR)
            continue;
        else
            bench_fail("send: %s", r < 0 ? strerror(errno) : "wrote nothing");
    }
}

/* Read what is there towards a whole message; true once it is complete. */
static bool read_message(int fd, char *buf, long *got)
{
    while (*got < pp.size) {
        ssize_t r = recv(fd, buf + *got, (size_t)(pp.size - *got), 0);
        if (r > 0)
            *got += r;
        else if (r < 0 && errno == EINTR)
            continue;
        else if (r < 0 && errno == EAGAIN)
            return false;
        else
            bench_fail("recv: %s", r < 0 ? strerror(errno) : "end of file");
    }
    *got = 0;
    return true;
}

static gboolean pp_b_cb(gint fd, GIOCondition cond, gpointer data)
{
    (void)fd;
    (void)cond;
    (void)data;
    if (read_message(pp.fd[1], pp.b_buf, &pp.b_got))
        write_all(pp.fd[1], pp.b_buf, pp.size);
    return G_SOURCE_CONTINUE;
}

static gboolean pp_a_cb(gint fd, GIOCondition cond, gpointer data)
{
    (void)fd;
    (void)cond;
    (void)data;
    if (read_message(pp.fd[0], pp.a_buf, &pp.a_got) && ++pp.rts < pp.count)
        write_all(pp.fd[0], pp.msg, pp.size);
    return G_SOURCE_CONTINUE;
}

static GSource *fd_watch(GMainContext *ctx, int fd, GUnixFDSourceFunc cb)
{
    GSource *s = g_unix_fd_source_new(fd, G_IO_IN);
    g_source_set_callback(s, (GSourceFunc)(void (*)(void))cb, NULL, NULL);
    g_source_attach(s, ctx);
    return s;
}

static void pingpong(const bench_args *a)
{
    pp.size = a->size;
    pp.count = a->count;
    need_positive("--size", pp.size);
    need_positive("--count", pp.count);
    pp.msg = malloc((size_t)pp.size);
    pp.a_buf = malloc((size_t)pp.size);
    pp.b_buf = malloc((size_t)pp.size);
    if (!pp.msg || !pp.a_buf || !pp.b_buf)
        bench_fail("out of memory");
    memset(pp.msg, 'x', (size_t)pp.size);
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, pp.fd) < 0)
        bench_fail("socketpair: %s", strerror(errno));

    GMainContext *ctx = g_main_context_new();
    GSource *sa = fd_watch(ctx, pp.fd[0], pp_a_cb);
    GSource *sb = fd_watch(ctx, pp.fd[1], pp_b_cb);

    pp.rts = 0;
    long al0 = bench_allocs();
    double t0 = bench_now();
    write_all(pp.fd[0], pp.msg, pp.size);
    run_until(ctx, &pp.rts, pp.count);
    double t1 = bench_now();
    long al1 = bench_allocs();

    g_source_destroy(sa);
    g_source_unref(sa);
    g_source_destroy(sb);
    g_source_unref(sb);
    g_main_context_unref(ctx);
    close(pp.fd[0]);
    close(pp.fd[1]);
    free(pp.msg);
    free(pp.a_buf);
    free(pp.b_buf);

    bench_metric("rt_per_s", (double)pp.count / (t1 - t0));
    bench_metric("allocs_rt", (double)(al1 - al0) / (double)pp.count);
}

/* ---- lifecycle ---- */

static long called; /* callbacks run (io, idle: distinct watchers called) */

typedef struct lc_watch {
    GSource *source;
    bool seen;
} lc_watch;

static gboolean lc_io_cb(gint fd, GIOCondition cond, gpointer data)
{
    (void)fd;
    (void)cond;
    lc_watch *w = data;
    /* Always writable, so called again on every iteration until all have
     * run: count each watcher once. */
    if (!w->seen) {
        w->seen = true;
        called++;
    }
    return G_SOURCE_CONTINUE;
}

static gboolean lc_once_cb(gpointer data)
{
    (void)data;
    called++;
    return G_SOURCE_REMOVE; /* a one-shot timer */
}

static gboolean lc_signal_cb(gpointer data)
{
    (void)data;
    called++;
    return G_SOURCE_CONTINUE;
}

static gboolean lc_idle_cb(gpointer data)
{
    lc_watch *w = data;
    if (!w->seen) {
        w->seen = true;
        called++;
    }
    return G_SOURCE_CONTINUE;
}

static void lifecycle(const bench_args *a)
{
    const char *k = a->kind ? a->kind : "";
    enum { LC_IO, LC_TIMER, LC_SIGNAL, LC_IDLE } kind;
    if (!strcmp(k, "io"))
        kind = LC_IO;
    else if (!strcmp(k, "timer"))
        kind = LC_TIMER;
    else if (!strcmp(k, "signal"))
        kind = LC_SIGNAL;
    else if (!strcmp(k, "idle"))
        kind = LC_IDLE;
    else if (!strcmp(k, "child"))
        bench_unsupported("GLib's child watch reaps its pid: one watch per child, not N");
    else
        bench_fail("--kind must be io, timer, signal, child or idle, not '%s'", k);
    long n = a->n;
    need_positive("--n", n);

    int p[2] = {-1, -1};
    int *fds = NULL;
    if (kind == LC_IO) {
        bench_need_fds(n + 2);
        if (pipe(p) < 0)
            bench_fail("pipe: %s", strerror(errno));
        fds = malloc((size_t)n * sizeof *fds);
        if (!fds)
            bench_fail("out of memory");
        for (long i = 0; i < n; i++)
            if ((fds[i] = dup(p[1])) < 0)
                bench_fail("dup: %s", strerror(errno));
    }
    GMainContext *ctx = g_main_context_new();
    lc_watch *ws = malloc((size_t)n * sizeof *ws);
    if (!ws)
        bench_fail("out of memory");
    called = 0;

    /* create: create and start N watchers */
    long rss0 = bench_rss_kb();
    double t0 = bench_now();
    for (long i = 0; i < n; i++) {
        GSource *s;
        ws[i].seen = false;
        switch (kind) {
        case LC_IO:
            s = g_unix_fd_source_new(fds[i], G_IO_OUT);
            g_source_set_callback(s, (GSourceFunc)(void (*)(void))lc_io_cb, &ws[i], NULL);
            break;
        case LC_TIMER:
            s = g_timeout_source_new(0);
            g_source_set_callback(s, lc_once_cb, &ws[i], NULL);
            break;
        case LC_SIGNAL:
            s = g_unix_signal_source_new(SIGUSR1);
            g_source_set_callback(s, lc_signal_cb, &ws[i], NULL);
            break;
        default:
            s = g_idle_source_new();
            g_source_set_callback(s, lc_idle_cb, &ws[i], NULL);
            break;
        }
        g_source_attach(s, ctx);
        ws[i].source = s;
    }
    double t1 = bench_now();
    long rss1 = bench_rss_kb();

    /* invoke: make all N ready, run one iteration at a time until every
     * callback has run once */
    long allocs0 = bench_allocs();
    double t2 = bench_now();
    if (kind == LC_SIGNAL)
        raise(SIGUSR1);
    run_until(ctx, &called, n);
    double t3 = bench_now();
    long allocs1 = bench_allocs();
    if (called != n)
        bench_fail("%ld callbacks for %ld watchers", called, n);

    /* destroy: stop N watchers and free them, newest first (as the other
     * twins) */
    double t4 = bench_now();
    for (long i = n; i-- > 0;) {
        g_source_destroy(ws[i].source);
        g_source_unref(ws[i].source);
    }
    free(ws);
    double t5 = bench_now();

    if (kind == LC_IO) {
        for (long i = 0; i < n; i++)
            close(fds[i]);
        free(fds);
        close(p[0]);
        close(p[1]);
    }
    g_main_context_unref(ctx);

    bench_metric("create_ns", (t1 - t0) * 1e9 / (double)n);
    bench_metric("invoke_ns", (t3 - t2) * 1e9 / (double)n);
    bench_metric("destroy_ns", (t5 - t4) * 1e9 / (double)n);
    bench_metric("mem_bytes", (double)(rss1 - rss0) * 1024.0 / (double)n);
    bench_metric("allocs_invoke", (double)(allocs1 - allocs0) / (double)n);
}

/* ---- timers ---- */

/* A timer with a deadline in microseconds: a source with a ready time. */
static gboolean ready_dispatch(GSource *source, GSourceFunc callback, gpointer data)
{
    (void)source;
    return callback(data);
}

static GSourceFuncs ready_funcs = {.dispatch = ready_dispatch};

static GSource *ready_timer(GMainContext *ctx, gint64 after_us, GSourceFunc cb, gpointer data)
{
    GSource *s = g_source_new(&ready_funcs, sizeof(GSource));
    g_source_set_callback(s, cb, data, NULL);
    g_source_set_ready_time(s, g_get_monotonic_time() + after_us);
    g_source_attach(s, ctx);
    return s;
}

static long fired;

static gboolean tm_once_cb(gpointer data)
{
    (void)data;
    fired++;
    return G_SOURCE_REMOVE;
}

static gboolean tm_never_cb(gpointer data)
{
    (void)data;
    bench_fail("a timer fired that should not have");
}

static long repeat_left;
static GSource *repeat_source;

static gboolean tm_repeat_cb(gpointer data)
{
    (void)data;
    if (--repeat_left == 0)
        return G_SOURCE_REMOVE;
    g_source_set_ready_time(repeat_source, g_source_get_time(repeat_source) + 1);
    return G_SOURCE_CONTINUE;
}

static void timers(const bench_args *a)
{
    const char *k = a->kind ? a->kind : "";
    GMainContext *ctx = g_main_context_new();
    if (!strcmp(k, "fire")) {
        long n = a->n;
        need_positive("--n", n);
        GSource **t = malloc((size_t)n * sizeof *t);
        if (!t)
            bench_fail("out of memory");
        fired = 0;
        double t0 = bench_now();
        for (long i = 0; i < n; i++)
            t[i] = ready_timer(ctx, (gint64)bench_random(1000), tm_once_cb, NULL);
        double t1 = bench_now();
        double t2 = bench_now();
        run_until(ctx, &fired, n);
        double t3 = bench_now();
        for (long i = 0; i < n; i++)
            g_source_unref(t[i]);
        free(t);
        bench_metric("create_ns", (t1 - t0) * 1e9 / (double)n);
        bench_metric("fire_ns", (t3 - t2) * 1e9 / (double)n);
    } else if (!strcmp(k, "cancel")) {
        long n = a->n;
        need_positive("--n", n);
        GSource **t = malloc((size_t)n * sizeof *t);
        if (!t)
            bench_fail("out of memory");
        double t0 = bench_now();
        for (long i = 0; i < n; i++)
            t[i] = ready_timer(ctx, (gint64)(1 + bench_random(1000)) * 1000000, tm_never_cb, NULL);
        double t1 = bench_now();
        for (long i = 0; i < n; i++) {
            g_source_destroy(t[i]);
            g_source_unref(t[i]);
        }
        free(t);
        double t2 = bench_now();
        bench_metric("create_ns", (t1 - t0) * 1e9 / (double)n);
        bench_metric("cancel_ns", (t2 - t1) * 1e9 / (double)n);
    } else if (!strcmp(k, "rearm")) {
        long c = a->count;
        need_positive("--count", c);
        GSource *t = ready_timer(ctx, 1000000, tm_never_cb, NULL);
        double t0 = bench_now();
        for (long i = 0; i < c; i++)
            g_source_set_ready_time(t, g_get_monotonic_time() + 1000000);
        double t1 = bench_now();
        g_source_destroy(t);
        g_source_unref(t);
        bench_metric("rearm_ns", (t1 - t0) * 1e9 / (double)c);
    } else if (!strcmp(k, "repeat")) {
        long c = a->count;
        need_positive("--count", c);
        repeat_left = c;
        double t0 = bench_now();
        repeat_source = ready_timer(ctx, 1, tm_repeat_cb, NULL);
        while (repeat_left > 0)
            g_main_context_iteration(ctx, TRUE);
        double t1 = bench_now();
        g_source_unref(repeat_source);
        bench_metric("fire_ns", (t1 - t0) * 1e9 / (double)c);
    } else {
        bench_fail("--kind must be fire, cancel, rearm or repeat, not '%s'", k);
    }
    g_main_context_unref(ctx);
}

/* ---- condvar ---- */

static long cv_pending; /* jobs begun and not yet ended */

static gboolean cv_job_cb(gpointer data)
{
    (void)data;
    cv_pending--;
    return G_SOURCE_REMOVE;
}

static void condvar(const bench_args *a)
{
    long n = a->n;
    need_positive("--n", n);
    GMainContext *ctx = g_main_context_new();
    GSource **t = malloc((size_t)n * sizeof *t);
    if (!t)
        bench_fail("out of memory");
    cv_pending = 0;
    double t0 = bench_now();
    for (long i = 0; i < n; i++) {
        cv_pending++;
        t[i] = g_timeout_source_new(0);
        g_source_set_callback(t[i], cv_job_cb, NULL, NULL);
        g_source_attach(t[i], ctx);
    }
    while (cv_pending > 0)
        g_main_context_iteration(ctx, TRUE);
    double t1 = bench_now();
    for (long i = 0; i < n; i++)
        g_source_unref(t[i]);
    free(t);
    g_main_context_unref(ctx);
    bench_metric("item_ns", (t1 - t0) * 1e9 / (double)n);
}

/* ---- idle ---- */

static long idle_left;

static gboolean idle_cb(gpointer data)
{
    (void)data;
    return --idle_left == 0 ? G_SOURCE_REMOVE : G_SOURCE_CONTINUE;
}

static void idle(const bench_args *a)
{
    long c = a->count;
    need_positive("--count", c);
    GMainContext *ctx = g_main_context_new();
    idle_left = c;
    long allocs0 = bench_allocs();
    double t0 = bench_now();
    GSource *s = g_idle_source_new();
    g_source_set_callback(s, idle_cb, NULL, NULL);
    g_source_attach(s, ctx);
    while (idle_left > 0)
        g_main_context_iteration(ctx, TRUE);
    double t1 = bench_now();
    long allocs1 = bench_allocs();
    g_source_unref(s);
    g_main_context_unref(ctx);
    bench_metric("call_ns", (t1 - t0) * 1e9 / (double)c);
    bench_metric("allocs_call", (double)(allocs1 - allocs0) / (double)c);
}

/* ---- async ---- */

static struct {
    GSource *source;
    bench_async *b;
    bool done;
} as;

static void async_send(void *ctx)
{
    g_source_set_ready_time(ctx, 0); /* thread-safe; wakes the context */
}

static gboolean async_dispatch(GSource *source, GSourceFunc callback, gpointer data)
{
    (void)callback;
    (void)data;
    /* Taken before the callback: a send after this makes it ready again. */
    g_source_set_ready_time(source, -1);
    if (bench_async_seen(as.b))
        as.done = true;
    return G_SOURCE_CONTINUE;
}

static GSourceFuncs async_funcs = {.dispatch = async_dispatch};

static void async_workload(const bench_args *a)
{
    need_positive("--n", a->n);
    need_positive("--count", a->count);
    GMainContext *ctx = g_main_context_new();
    as.source = g_source_new(&async_funcs, sizeof(GSource));
    g_source_attach(as.source, ctx);
    as.done = false;
    as.b = bench_async_start(async_send, as.source, a->n, a->count);
    while (!as.done)
        g_main_context_iteration(ctx, TRUE);
    bench_async_finish(as.b);
    g_source_destroy(as.source);
    g_source_unref(as.source);
    g_main_context_unref(ctx);
}

/* ---- entry ---- */

void bench_run(const bench_args *a)
{
    if (!strcmp(a->workload, "pipechain"))
        pipechain(a);
    else if (!strcmp(a->workload, "pingpong"))
        pingpong(a);
    else if (!strcmp(a->workload, "lifecycle"))
        lifecycle(a);
    else if (!strcmp(a->workload, "timers"))
        timers(a);
    else if (!strcmp(a->workload, "condvar"))
        condvar(a);
    else if (!strcmp(a->workload, "idle"))
        idle(a);
    else if (!strcmp(a->workload, "async"))
        async_workload(a);
    else
        bench_fail("unknown workload %s", a->workload);
}
