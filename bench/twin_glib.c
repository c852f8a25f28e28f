/*
 * ae-bench-glib: the pingpong and pipechain workloads of docs/benchmarks.md
 * written directly against GLib's main loop, the way a GLib user would.
 * The other workloads are not written for GLib yet: they report
 * "unsupported".
 *
 * GLib's idiom: every workload has its own GMainContext; an fd is watched by
 * a GSource (g_unix_fd_add_full's source for pingpong; for pipechain, whose
 * setup changes every watcher's interest, a source per fd whose unix fd tag
 * is changed in place with g_source_modify_unix_fd, GLib's own way to change
 * an interest without a new source). "until" in the spec is
 * g_main_context_iteration(ctx, TRUE) in a loop checking a counter.
 */
#include <errno.h>
#include <glib-unix.h>
#include <glib.h>
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
    ssize_t r = read(pc.sv[i][0], &ch, 1);
    if (r != 1) {
        if (r < 0 && (errno == EAGAIN || errno == EINTR))
            return G_SOURCE_CONTINUE;
        bench_fail("read: %s", r < 0 ? strerror(errno) : "end of file");
    }
    pc.count++;
    if (pc.writes_left > 0) {
        pc.writes_left--;
        long j = i + 1 == pc.n ? 0 : i + 1;
        if (write(pc.sv[j][1], "e", 1) != 1)
            bench_fail("write: %s", strerror(errno));
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
            if (write(pc.sv[i * space][1], "e", 1) != 1)
                bench_fail("write: %s", strerror(errno));
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
        ssize_t r = write(fd, buf + done, (size_t)(size - done));
        if (r > 0)
            done += r;
        else if (r < 0 && errno == EINTR)
            continue;
        else
            bench_fail("write: %s", r < 0 ? strerror(errno) : "wrote nothing");
    }
}

/* Read what is there towards a whole message; true once it is complete. */
static bool read_message(int fd, char *buf, long *got)
{
    while (*got < pp.size) {
        ssize_t r = read(fd, buf + *got, (size_t)(pp.size - *got));
        if (r > 0)
            *got += r;
        else if (r < 0 && errno == EINTR)
            continue;
        else if (r < 0 && errno == EAGAIN)
            return false;
        else
            bench_fail("read: %s", r < 0 ? strerror(errno) : "end of file");
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

/* ---- entry ---- */

void bench_run(const bench_args *a)
{
    if (!strcmp(a->workload, "pipechain"))
        pipechain(a);
    else if (!strcmp(a->workload, "pingpong"))
        pingpong(a);
    else if (!strcmp(a->workload, "lifecycle") || !strcmp(a->workload, "timers") ||
             !strcmp(a->workload, "condvar") || !strcmp(a->workload, "idle"))
        bench_unsupported("not written for GLib yet (the GLib twin has pingpong and pipechain)");
    else
        bench_fail("unknown workload %s", a->workload);
}
