/*
 * ae-bench-anyevent: the workloads of docs/benchmarks.md on anyevent, on the
 * backend named by --backend (anyevent's own choice without it). One function
 * per workload; each times only what the spec says is timed and reports
 * exactly the metrics it lists.
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include <anyevent.h>

#include "bench.h"

const char *const bench_impl = "anyevent";

/* ---- helpers ------------------------------------------------------------ */

/* An anyevent call failed. A backend limit (select's FD_SETSIZE) means this
 * size cannot run on this backend at all, which the driver should show as
 * such rather than as a crash; anything else is a failure. */
static _Noreturn void ae_failed(const char *what)
{
    if (ae_last_error_code() == AE_ELIMIT) {
        char why[256];
        snprintf(why, sizeof why, "%s: %s", what, ae_last_error());
        bench_unsupported(why);
    }
    bench_fail("%s: %s", what, ae_last_error());
}

static ae_watcher *check_w(ae_watcher *w, const char *what)
{
    if (!w)
        ae_failed(what);
    return w;
}

static void check_rc(int rc, const char *what)
{
    if (rc < 0)
        ae_failed(what);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        bench_fail("out of memory (%zu bytes)", n);
    return p;
}

/* Every per-item metric divides by it. */
static long positive(long v, const char *opt)
{
    if (v < 1)
        bench_fail("%s must be at least 1", opt);
    return v;
}

/* Run one-iteration calls until *done reaches target. ae_run_once(loop, 0)
 * waits only while something is still due to happen; a loop left with no
 * active watcher before the target would mean callbacks were lost: fail
 * rather than spin. */
static void run_until(ae_loop *loop, const long *done, long target)
{
    while (*done < target) {
        int rc = ae_run_once(loop, 0);
        if (rc < 0)
            ae_failed("ae_run_once");
        if (rc == 0 && *done < target)
            bench_fail("no active watcher left after %ld of %ld callbacks", *done, target);
    }
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* ---- lifecycle ---------------------------------------------------------- */

enum { LIFE_IO, LIFE_TIMER, LIFE_SIGNAL, LIFE_CHILD, LIFE_IDLE };

/* Watchers called at least once. An io watcher stays ready, and a backend
 * that reports a bounded number of fds per wait calls some again before it
 * has reached the others, so each watcher has its own flag (its arg) and the
 * count is of distinct watchers. */
static long life_called;

static void life_hit(void *arg)
{
    unsigned char *seen = arg;
    if (!*seen) {
        *seen = 1;
        life_called++;
    }
}

static void life_io_cb(ae_watcher *w, int revents, void *arg)
{
    (void)w;
    (void)revents;
    life_hit(arg);
}

static void life_timer_cb(ae_watcher *w, void *arg)
{
    (void)w;
    life_hit(arg);
}

static void life_idle_cb(ae_watcher *w, void *arg)
{
    (void)w;
    life_hit(arg);
}

static void life_signal_cb(ae_watcher *w, int signum, void *arg)
{
    (void)w;
    (void)signum;
    life_hit(arg);
}

static void life_child_cb(ae_watcher *w, pid_t pid, int status, void *arg)
{
    (void)w;
    (void)pid;
    (void)status;
    life_hit(arg);
}

static int life_kind(const char *kind)
{
    static const char *const names[] = {"io", "timer", "signal", "child", "idle"};
    for (int k = 0; k < (int)(sizeof names / sizeof *names); k++)
        if (kind && !strcmp(kind, names[k]))
            return k;
    bench_fail("unknown --kind %s (io, timer, signal, child, idle)", kind ? kind : "(none)");
}

/* A child that waits until the write end of its pipe is closed, then exits. */
static pid_t fork_waiting_child(int pfd[2])
{
    if (pipe(pfd) < 0)
        bench_fail("pipe: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0)
        bench_fail("fork: %s", strerror(errno));
    if (pid == 0) {
        char byte;
        close(pfd[1]);
        while (read(pfd[0], &byte, 1) < 0 && errno == EINTR)
            ;
        _exit(0);
    }
    close_fd(&pfd[0]);
    return pid;
}

static void run_lifecycle(ae_loop *loop, const bench_args *a)
{
    int kind = life_kind(a->kind);
    long n = positive(a->n, "--n");

    /* Touched now so that their pages are not counted as watcher memory. */
    ae_watcher **w = xmalloc((size_t)n * sizeof *w);
    unsigned char *seen = xmalloc((size_t)n);
    memset(w, 0, (size_t)n * sizeof *w);
    memset(seen, 0, (size_t)n);

    /* What the watchers will watch, made before anything is timed. */
    int pfd[2] = {-1, -1};
    int *fds = NULL;
    pid_t child = 0;
    if (kind == LIFE_IO) {
        bench_need_fds(n);
        if (pipe(pfd) < 0)
            bench_fail("pipe: %s", strerror(errno));
        fds = xmalloc((size_t)n * sizeof *fds);
        for (long i = 0; i < n; i++)
            if ((fds[i] = dup(pfd[1])) < 0)
                bench_fail("dup: %s", strerror(errno));
    } else if (kind == LIFE_CHILD) {
        child = fork_waiting_child(pfd);
    }

    long rss0 = bench_rss_kb();
    double t0 = bench_now();
    for (long i = 0; i < n; i++) {
        switch (kind) {
        case LIFE_IO:
            w[i] = check_w(ae_io(loop, fds[i], AE_WRITE, life_io_cb, &seen[i]), "ae_io");
            break;
        case LIFE_TIMER:
            w[i] = check_w(ae_timer(loop, 0, 0, life_timer_cb, &seen[i]), "ae_timer");
            break;
        case LIFE_SIGNAL:
            w[i] = check_w(ae_signal(loop, SIGUSR1, life_signal_cb, &seen[i]), "ae_signal");
            break;
        case LIFE_CHILD:
            w[i] = check_w(ae_child(loop, child, life_child_cb, &seen[i]), "ae_child");
            break;
        case LIFE_IDLE:
            w[i] = check_w(ae_idle(loop, life_idle_cb, &seen[i]), "ae_idle");
            break;
        }
    }
    double t1 = bench_now();
    long rss1 = bench_rss_kb();

    /* Make all N ready (io and idle already are, the 0 s timers are due),
     * then run until each has been called. */
    life_called = 0;
    long allocs0 = bench_allocs();
    double t2 = bench_now();
    if (kind == LIFE_SIGNAL && raise(SIGUSR1) != 0)
        bench_fail("raise: %s", strerror(errno));
    if (kind == LIFE_CHILD)
        close_fd(&pfd[1]); /* the child reads end of file and exits */
    run_until(loop, &life_called, n);
    double t3 = bench_now();
    long allocs1 = bench_allocs();

    double t4 = bench_now();
    for (long i = 0; i < n; i++)
        ae_watcher_free(w[i]);
    double t5 = bench_now();

    bench_metric("create_ns", (t1 - t0) * 1e9 / (double)n);
    bench_metric("invoke_ns", (t3 - t2) * 1e9 / (double)n);
    bench_metric("destroy_ns", (t5 - t4) * 1e9 / (double)n);
    bench_metric("mem_bytes", (double)(rss1 - rss0) * 1024 / (double)n);
    bench_metric("allocs_invoke", (double)(allocs1 - allocs0) / (double)n);

    /* The child watchers reaped the child. */
    if (fds)
        for (long i = 0; i < n; i++)
            close(fds[i]);
    close_fd(&pfd[0]);
    close_fd(&pfd[1]);
    free(fds);
    free(seen);
    free(w);
}

/* ---- pipechain ---------------------------------------------------------- */

/* libevent's test/bench.c: a byte travels from pipe to pipe. */
static struct {
    long n;
    int *rfd;         /* the watched end of each socket pair */
    int *wfd;         /* the end that is written to */
    long reads;       /* bytes read this iteration */
    long writes_left; /* chain writes still to make this iteration */
} chain;

static void chain_send(long i)
{
    if (send(chain.wfd[i], "e", 1, 0) != 1)
        bench_fail("send: %s", strerror(errno));
}

static void chain_read_cb(ae_watcher *w, int revents, void *arg)
{
    (void)w;
    (void)revents;
    long i = (long)(intptr_t)arg;
    unsigned char byte;
    ssize_t r = recv(chain.rfd[i], &byte, 1, 0);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return; /* level-triggered readiness is a snapshot; nothing after all */
    if (r != 1)
        bench_fail("recv: %s", r < 0 ? strerror(errno) : "end of file");
    chain.reads++;
    if (chain.writes_left > 0) {
        chain.writes_left--;
        chain_send((i + 1) % chain.n);
    }
}

static void run_pipechain(ae_loop *loop, const bench_args *a)
{
    long n = positive(a->n, "--n");
    long active = positive(a->active, "--active");
    long iters = positive(a->iterations, "--iterations");
    if (active > n)
        bench_fail("--active %ld is more than --n %ld", active, n);
    if (a->writes < 0)
        bench_fail("--writes must not be negative");

    bench_need_fds(2 * n);
    chain.n = n;
    chain.rfd = xmalloc((size_t)n * sizeof *chain.rfd);
    chain.wfd = xmalloc((size_t)n * sizeof *chain.wfd);
    ae_watcher **w = xmalloc((size_t)n * sizeof *w);
    double *setup_us = xmalloc((size_t)iters * sizeof *setup_us);
    double *run_us = xmalloc((size_t)iters * sizeof *run_us);
    double *allocs_run = xmalloc((size_t)iters * sizeof *allocs_run);

    /* Non-blocking, so that a stale readiness can never block a read. */
    for (long i = 0; i < n; i++) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) < 0)
            bench_fail("socketpair: %s", strerror(errno));
        chain.rfd[i] = sv[0];
        chain.wfd[i] = sv[1];
    }
    for (long i = 0; i < n; i++)
        w[i] = check_w(ae_io(loop, chain.rfd[i], AE_READ, chain_read_cb, (void *)(intptr_t)i), "ae_io");

    long space = n / active;
    for (long it = 0; it < iters; it++) {
        double t0 = bench_now();
        for (long i = 0; i < n; i++) {
            check_rc(ae_io_set(w[i], 0), "ae_io_set");
            check_rc(ae_io_set(w[i], AE_READ), "ae_io_set");
        }
        double t1 = bench_now();

        chain.reads = 0;
        chain.writes_left = a->writes;
        long allocs0 = bench_allocs();
        double t2 = bench_now();
        for (long i = 0; i < active; i++)
            chain_send(i * space);
        run_until(loop, &chain.reads, active + a->writes);
        double t3 = bench_now();
        long allocs1 = bench_allocs();

        setup_us[it] = (t1 - t0) * 1e6;
        run_us[it] = (t3 - t2) * 1e6;
        allocs_run[it] = (double)(allocs1 - allocs0);
    }

    bench_metric("setup_us", bench_median(setup_us, iters));
    bench_metric("run_us", bench_median(run_us, iters));
    bench_metric("allocs_run", bench_median(allocs_run, iters));

    for (long i = 0; i < n; i++) {
        ae_watcher_free(w[i]); /* before its fd is closed */
        close(chain.rfd[i]);
        close(chain.wfd[i]);
    }
    free(allocs_run);
    free(run_us);
    free(setup_us);
    free(w);
    free(chain.wfd);
    free(chain.rfd);
}

/* ---- timers ------------------------------------------------------------- */

static void count_timer_cb(ae_watcher *w, void *arg)
{
    (void)w;
    ++*(long *)arg;
}

/* N timers with the given deadlines, created (timed) into w. */
static double create_timers(ae_loop *loop, ae_watcher **w, const double *after, long n, long *fired)
{
    double t0 = bench_now();
    for (long i = 0; i < n; i++)
        w[i] = check_w(ae_timer(loop, after[i], 0, count_timer_cb, fired), "ae_timer");
    return bench_now() - t0;
}

/* fire and cancel: many one-shot timers. The deadlines are drawn before
 * timing starts so that only the library is timed. */
static void run_timer_heap(ae_loop *loop, const bench_args *a, int cancel)
{
    long n = positive(a->n, "--n");
    ae_watcher **w = xmalloc((size_t)n * sizeof *w);
    double *after = xmalloc((size_t)n * sizeof *after);
    for (long i = 0; i < n; i++)
        after[i] = cancel ? 1.0 + (double)bench_random(1000) : (double)bench_random(1000) / 1e6;

    long fired = 0;
    bench_metric("create_ns", create_timers(loop, w, after, n, &fired) * 1e9 / (double)n);
    if (cancel) {
        double t0 = bench_now();
        for (long i = 0; i < n; i++)
            ae_watcher_free(w[i]);
        bench_metric("cancel_ns", (bench_now() - t0) * 1e9 / (double)n);
    } else {
        double t0 = bench_now();
        run_until(loop, &fired, n);
        bench_metric("fire_ns", (bench_now() - t0) * 1e9 / (double)n);
        for (long i = 0; i < n; i++)
            ae_watcher_free(w[i]);
    }
    free(after);
    free(w);
}

/* One armed timer pushed back to 1 s from now, again and again, the way
 * c-ares and libcurl move their timeouts. */
static void run_timer_rearm(ae_loop *loop, const bench_args *a)
{
    long count = positive(a->count, "--count");
    long fired = 0;
    ae_watcher *w = check_w(ae_timer(loop, 1.0, 0, count_timer_cb, &fired), "ae_timer");
    double t0 = bench_now();
    for (long i = 0; i < count; i++)
        check_rc(ae_timer_set(w, 1.0, 0), "ae_timer_set");
    bench_metric("rearm_ns", (bench_now() - t0) * 1e9 / (double)count);
    ae_watcher_free(w);
}

/* A 1 us repeating timer: nearly every iteration fires it once. */
static void run_timer_repeat(ae_loop *loop, const bench_args *a)
{
    long count = positive(a->count, "--count");
    long fired = 0;
    ae_watcher *w = check_w(ae_timer(loop, 1e-6, 1e-6, count_timer_cb, &fired), "ae_timer");
    double t0 = bench_now();
    run_until(loop, &fired, count);
    bench_metric("fire_ns", (bench_now() - t0) * 1e9 / (double)count);
    ae_watcher_free(w);
}

static void run_timers(ae_loop *loop, const bench_args *a)
{
    const char *kind = a->kind ? a->kind : "(none)";
    if (!strcmp(kind, "fire"))
        run_timer_heap(loop, a, 0);
    else if (!strcmp(kind, "cancel"))
        run_timer_heap(loop, a, 1);
    else if (!strcmp(kind, "rearm"))
        run_timer_rearm(loop, a);
    else if (!strcmp(kind, "repeat"))
        run_timer_repeat(loop, a);
    else
        bench_fail("unknown --kind %s (fire, cancel, rearm, repeat)", kind);
}

/* ---- pingpong ----------------------------------------------------------- */

typedef struct pingpong {
    int fd[2]; /* end A, end B */
    char *buf;
    long size;
    long count; /* round trips wanted */
    long done;  /* round trips completed */
    ae_watcher *w[2];
} pingpong;

/* The sockets are blocking: a callback reads the whole message, however it
 * arrives, without spinning. Written as the native twins' read_all and
 * write_all are, with recv and send as every twin uses (read and write on a
 * socket cost the kernel more here: libevent's twin used send and recv
 * alone), so that the callbacks cost the same and a ratio measures the loops
 * alone. */
static void read_whole(int fd, char *buf, long size)
{
    while (size > 0) {
        ssize_t r = recv(fd, buf, (size_t)size, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            bench_fail("recv: %s", strerror(errno));
        }
        if (r == 0)
            bench_fail("recv: unexpected end of file");
        buf += r;
        size -= r;
    }
}

static void write_whole(int fd, const char *buf, long size)
{
    while (size > 0) {
        ssize_t r = send(fd, buf, (size_t)size, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            bench_fail("send: %s", strerror(errno));
        }
        buf += r;
        size -= r;
    }
}

/* B echoes. */
static void pong_cb(ae_watcher *w, int revents, void *arg)
{
    (void)w;
    (void)revents;
    pingpong *p = arg;
    read_whole(p->fd[1], p->buf, p->size);
    write_whole(p->fd[1], p->buf, p->size);
}

/* A takes the echo and sends the next message. */
static void ping_cb(ae_watcher *w, int revents, void *arg)
{
    (void)w;
    (void)revents;
    pingpong *p = arg;
    read_whole(p->fd[0], p->buf, p->size);
    if (++p->done < p->count) {
        write_whole(p->fd[0], p->buf, p->size);
    } else {
        /* As the native twins do: stop both, and ae_run() returns. */
        ae_io_set(p->w[0], 0);
        ae_io_set(p->w[1], 0);
    }
}

static void run_pingpong(ae_loop *loop, const bench_args *a)
{
    pingpong p = {.size = positive(a->size, "--size"), .count = positive(a->count, "--count")};
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, p.fd) < 0)
        bench_fail("socketpair: %s", strerror(errno));
    p.buf = xmalloc((size_t)p.size);
    memset(p.buf, 'x', (size_t)p.size);
    ae_watcher *wa = check_w(ae_io(loop, p.fd[0], AE_READ, ping_cb, &p), "ae_io");
    ae_watcher *wb = check_w(ae_io(loop, p.fd[1], AE_READ, pong_cb, &p), "ae_io");
    p.w[0] = wa;
    p.w[1] = wb;

    long allocs0 = bench_allocs();
    double t0 = bench_now();
    write_whole(p.fd[0], p.buf, p.size);
    /* ae_run() as the twins run their loop (ev_run(loop, 0), uv_run DEFAULT):
     * ping_cb stops both watchers after the last round trip. */
    if (ae_run(loop) < 0)
        ae_failed("ae_run");
    if (p.done != p.count)
        bench_fail("ae_run returned after %ld of %ld round trips", p.done, p.count);
    double t1 = bench_now();
    long allocs1 = bench_allocs();

    bench_metric("rt_per_s", (double)p.count / (t1 - t0));
    bench_metric("allocs_rt", (double)(allocs1 - allocs0) / (double)p.count);

    ae_watcher_free(wa);
    ae_watcher_free(wb);
    close(p.fd[0]);
    close(p.fd[1]);
    free(p.buf);
}

/* ---- condvar ------------------------------------------------------------ */

/* A job is done: its one-shot timer is of no further use, so it is freed, as
 * a program would, then the job is ended. */
static void job_done_cb(ae_watcher *w, void *arg)
{
    ae_watcher_free(w);
    check_rc(ae_cv_end(arg), "ae_cv_end");
}

static void run_condvar(ae_loop *loop, const bench_args *a)
{
    long n = positive(a->n, "--n");
    ae_cv *cv = ae_cv_new(loop);
    if (!cv)
        ae_failed("ae_cv_new");

    double t0 = bench_now();
    for (long i = 0; i < n; i++) {
        check_rc(ae_cv_begin(cv), "ae_cv_begin");
        check_w(ae_timer(loop, 0, 0, job_done_cb, cv), "ae_timer");
    }
    check_rc(ae_cv_recv(cv, NULL), "ae_cv_recv");
    bench_metric("item_ns", (bench_now() - t0) * 1e9 / (double)n);
    ae_cv_free(cv);
}

/* ---- idle --------------------------------------------------------------- */

typedef struct idle_calls {
    long calls, count;
} idle_calls;

static void idle_cb(ae_watcher *w, void *arg)
{
    idle_calls *c = arg;
    if (++c->calls == c->count)
        ae_watcher_free(w); /* it stops itself at C */
}

static void run_idle(ae_loop *loop, const bench_args *a)
{
    idle_calls c = {0, positive(a->count, "--count")};
    check_w(ae_idle(loop, idle_cb, &c), "ae_idle");
    long allocs0 = bench_allocs();
    double t0 = bench_now();
    /* As the twins run theirs (ev_run(loop, 0), uv_run(UV_RUN_DEFAULT)):
     * one run until the watcher frees itself. */
    if (ae_run(loop) < 0)
        ae_failed("ae_run");
    double t1 = bench_now();
    long allocs1 = bench_allocs();
    if (c.calls != c.count)
        bench_fail("ae_run returned after %ld of %ld calls", c.calls, c.count);
    bench_metric("call_ns", (t1 - t0) * 1e9 / (double)c.count);
    bench_metric("allocs_call", (double)(allocs1 - allocs0) / (double)c.count);
}

/* ---- async ------------------------------------------------------------- */

static void async_send(void *ctx) { ae_async_send(ctx); }

static void async_cb(ae_watcher *w, void *arg)
{
    if (bench_async_seen(arg))
        ae_watcher_unref(w); /* ae_run() returns; freed after the join */
}

static void run_async(ae_loop *loop, const bench_args *a)
{
    ae_watcher *w = check_w(ae_async(loop, async_cb, NULL), "ae_async");
    bench_async *b = bench_async_start(async_send, w, positive(a->n, "--n"), positive(a->count, "--count"));
    ae_watcher_set_arg(w, b);
    check_rc(ae_run(loop), "ae_run");
    bench_async_finish(b);
    ae_watcher_free(w);
}

/* ---- main --------------------------------------------------------------- */

void bench_run(const bench_args *a)
{
    static const struct {
        const char *name;
        void (*run)(ae_loop *loop, const bench_args *a);
    } workloads[] = {
        {"lifecycle", run_lifecycle}, {"pipechain", run_pipechain}, {"timers", run_timers},
        {"pingpong", run_pingpong},   {"condvar", run_condvar},     {"idle", run_idle},
        {"async", run_async},
    };
    void (*run)(ae_loop *, const bench_args *) = NULL;
    for (size_t i = 0; i < sizeof workloads / sizeof *workloads; i++)
        if (!strcmp(a->workload, workloads[i].name))
            run = workloads[i].run;
    if (!run)
        bench_fail("unknown workload (lifecycle, pipechain, timers, pingpong, condvar, idle, async)");

    ae_loop *loop = ae_loop_new(a->backend);
    if (!loop)
        bench_fail("ae_loop_new(%s): %s", a->backend ? a->backend : "NULL", ae_last_error());
    run(loop, a);
    ae_loop_free(loop);
}
