/*
 * ae-bench-libev: the workloads of docs/benchmarks.md written directly
 * against libev, the way a libev user would: watcher structs in caller-owned
 * arrays allocated before timing, ev_loop_new() for everything (lifecycle
 * child: the default loop, the only one libev reaps children in), ev_run()
 * with EVRUN_ONCE until a counter says done, or ev_run(loop, 0) where every
 * watcher stops itself.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ev.h>

#include "bench.h"

const char *const bench_impl = "libev";

/* ---- helpers ---- */

/* Nothing here should ever wait for an event that does not come, but a bug
 * must not hang the driver: every phase that waits on the loop runs under an
 * alarm (armed and disarmed outside the timed regions) of two minutes plus a
 * generous worst case per unit of work, so that no legitimate run trips it. */
#define WATCHDOG_S 120
#define PER_UNIT 10e-6 /* about a hundred times the usual cost */

static void watchdog_fired(int sig)
{
    (void)sig;
    static const char msg[] = "ae-bench-libev: timed out waiting for the loop\n";
    ssize_t r = write(2, msg, sizeof msg - 1);
    (void)r;
    _exit(1);
}

/* Arm for units of work at per_unit seconds each; 0 units: disarm. */
static void watchdog(long units, double per_unit)
{
    double seconds = units > 0 ? WATCHDOG_S + (double)units * per_unit : 0;
    static bool installed;
    if (!installed) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = watchdog_fired;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGALRM, &sa, NULL);
        installed = true;
    }
    alarm(seconds > 1e6 ? 1000000u : (unsigned)seconds);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        bench_fail("out of memory (%zu bytes)", n);
    return p;
}

static struct ev_loop *new_loop(void)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    if (!loop)
        bench_fail("ev_loop_new failed");
    return loop;
}

static void write_all(int fd, const char *buf, long size)
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

/* The peer wrote the whole message before the loop ran: it is all there. */
static void read_all(int fd, char *buf, long size)
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

static void need_n(long n, const char *what)
{
    if (n <= 0)
        bench_fail("%s must be at least 1", what);
}

/* ---- lifecycle ---- */

static long called; /* callbacks run (io: distinct watchers called) */

static void lc_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    /* Always writable, so called again on every iteration until all have
     * run: count each watcher once. */
    if (!w->data) {
        w->data = w;
        called++;
    }
}

static void lc_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
    called++;
}

static void lc_signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
    called++;
}

static void lc_child_cb(struct ev_loop *loop, ev_child *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
    called++;
}

static void lc_idle_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
    called++;
}

enum lc_kind { LC_IO, LC_TIMER, LC_SIGNAL, LC_CHILD, LC_IDLE };

static void lifecycle(const bench_args *a)
{
    enum lc_kind kind;
    const char *k = a->kind ? a->kind : "";
    if (!strcmp(k, "io"))
        kind = LC_IO;
    else if (!strcmp(k, "timer"))
        kind = LC_TIMER;
    else if (!strcmp(k, "signal"))
        kind = LC_SIGNAL;
    else if (!strcmp(k, "child"))
        kind = LC_CHILD;
    else if (!strcmp(k, "idle"))
        kind = LC_IDLE;
    else
        bench_fail("--kind must be io, timer, signal, child or idle, not '%s'", k);
    long n = a->n;
    need_n(n, "--n");

    /* libev watches children in the default loop only. */
    struct ev_loop *loop = kind == LC_CHILD ? ev_default_loop(0) : new_loop();
    if (!loop)
        bench_fail("ev_default_loop failed");

    /* What the watchers watch, made before anything is timed. */
    int p[2] = {-1, -1};
    int *fds = NULL;
    pid_t pid = -1;
    if (kind == LC_IO) {
        bench_need_fds(n + 2); /* the dups and the pipe */
        if (pipe(p) < 0)
            bench_fail("pipe: %s", strerror(errno));
        fds = xmalloc((size_t)n * sizeof *fds);
        for (long i = 0; i < n; i++)
            if ((fds[i] = dup(p[1])) < 0)
                bench_fail("dup: %s", strerror(errno));
    } else if (kind == LC_CHILD) {
        if (pipe(p) < 0)
            bench_fail("pipe: %s", strerror(errno));
        pid = fork();
        if (pid < 0)
            bench_fail("fork: %s", strerror(errno));
        if (pid == 0) {
            /* The child: wait for the parent to close the pipe, then exit. */
            close(p[1]);
            char c;
            while (read(p[0], &c, 1) < 0 && errno == EINTR)
                ;
            _exit(0);
        }
        close(p[0]);
        p[0] = -1;
    }

    /* The watchers: one caller-owned array, allocated (not yet touched) before
     * timing, so that the resident growth below includes the structs. */
    size_t wsize = kind == LC_IO       ? sizeof(ev_io)
                   : kind == LC_TIMER  ? sizeof(ev_timer)
                   : kind == LC_SIGNAL ? sizeof(ev_signal)
                   : kind == LC_CHILD  ? sizeof(ev_child)
                                       : sizeof(ev_idle);
    void *ws = xmalloc((size_t)n * wsize);
    ev_io *ios = ws;
    ev_timer *timers = ws;
    ev_signal *sigs = ws;
    ev_child *childs = ws;
    ev_idle *idles = ws;
    called = 0;

    /* create: create and start N watchers */
    long rss0 = bench_rss_kb();
    double t0 = bench_now();
    switch (kind) {
    case LC_IO:
        for (long i = 0; i < n; i++) {
            ev_io_init(&ios[i], lc_io_cb, fds[i], EV_WRITE);
            ios[i].data = NULL;
            ev_io_start(loop, &ios[i]);
        }
        break;
    case LC_TIMER:
        for (long i = 0; i < n; i++) {
            ev_timer_init(&timers[i], lc_timer_cb, 0., 0.);
            ev_timer_start(loop, &timers[i]);
        }
        break;
    case LC_SIGNAL:
        for (long i = 0; i < n; i++) {
            ev_signal_init(&sigs[i], lc_signal_cb, SIGUSR1);
            ev_signal_start(loop, &sigs[i]);
        }
        break;
    case LC_CHILD:
        for (long i = 0; i < n; i++) {
            ev_child_init(&childs[i], lc_child_cb, pid, 0);
            ev_child_start(loop, &childs[i]);
        }
        break;
    case LC_IDLE:
        for (long i = 0; i < n; i++) {
            ev_idle_init(&idles[i], lc_idle_cb);
            ev_idle_start(loop, &idles[i]);
        }
        break;
    }
    double t1 = bench_now();
    long rss1 = bench_rss_kb();

    /* invoke: make all N ready, run one iteration at a time until every
     * callback has run once */
    watchdog(n, PER_UNIT);
    long allocs0 = bench_allocs();
    double t2 = bench_now();
    if (kind == LC_SIGNAL)
        raise(SIGUSR1);
    else if (kind == LC_CHILD)
        close(p[1]); /* the child reads end of file and exits */
    while (called < n)
        ev_run(loop, EVRUN_ONCE);
    double t3 = bench_now();
    long allocs1 = bench_allocs();
    watchdog(0, 0);
    if (kind == LC_CHILD)
        p[1] = -1;
    if (called != n)
        bench_fail("%ld callbacks for %ld watchers", called, n);

    /* destroy: stop N watchers and free them. In reverse order: libev keeps
     * the watchers of one fd, signal or pid in a singly-linked list that
     * start pushes onto, so stopping the newest first is O(1) each
     * (oldest first would be O(N) each for signal and child). */
    double t4 = bench_now();
    switch (kind) {
    case LC_IO:
        for (long i = n; i-- > 0;)
            ev_io_stop(loop, &ios[i]);
        break;
    case LC_TIMER:
        for (long i = n; i-- > 0;)
            ev_timer_stop(loop, &timers[i]);
        break;
    case LC_SIGNAL:
        for (long i = n; i-- > 0;)
            ev_signal_stop(loop, &sigs[i]);
        break;
    case LC_CHILD:
        for (long i = n; i-- > 0;)
            ev_child_stop(loop, &childs[i]);
        break;
    case LC_IDLE:
        for (long i = n; i-- > 0;)
            ev_idle_stop(loop, &idles[i]);
        break;
    }
    free(ws);
    double t5 = bench_now();

    if (kind == LC_IO) {
        for (long i = 0; i < n; i++)
            close(fds[i]);
        free(fds);
    }
    if (p[0] >= 0)
        close(p[0]);
    if (p[1] >= 0)
        close(p[1]);
    ev_loop_destroy(loop);

    bench_metric("create_ns", (t1 - t0) * 1e9 / (double)n);
    bench_metric("invoke_ns", (t3 - t2) * 1e9 / (double)n);
    bench_metric("destroy_ns", (t5 - t4) * 1e9 / (double)n);
    bench_metric("mem_bytes", (double)(rss1 - rss0) * 1024.0 / (double)n);
    bench_metric("allocs_invoke", (double)(allocs1 - allocs0) / (double)n);
}

/* ---- pipechain ---- */

static struct {
    int (*fds)[2]; /* [i][0]: watched for reading, [i][1]: written to */
    ev_io *ios;
    long n;
    long writes; /* left in this iteration */
    long count;  /* bytes read in this iteration */
} pc;

static void pc_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    long i = w - pc.ios;
    char ch;
    ssize_t r = recv(w->fd, &ch, 1, MSG_DONTWAIT); /* never block on a stale wakeup */
    if (r != 1) {
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return;
        bench_fail("recv: %s", r < 0 ? strerror(errno) : "end of file");
    }
    pc.count++;
    if (pc.writes > 0) {
        long next = i + 1 == pc.n ? 0 : i + 1;
        if (send(pc.fds[next][1], "e", 1, 0) != 1)
            bench_fail("send: %s", strerror(errno));
        pc.writes--;
    }
}

static void pipechain(const bench_args *a)
{
    long n = a->n, active = a->active, writes = a->writes, iters = a->iterations;
    need_n(n, "--n");
    need_n(active, "--active");
    need_n(iters, "--iterations");
    if (active > n)
        bench_fail("--active %ld exceeds --n %ld", active, n);
    bench_need_fds(2 * n);

    struct ev_loop *loop = new_loop();
    pc.n = n;
    pc.fds = xmalloc((size_t)n * sizeof *pc.fds);
    pc.ios = xmalloc((size_t)n * sizeof *pc.ios);
    for (long i = 0; i < n; i++) {
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, pc.fds[i]) < 0)
            bench_fail("socketpair: %s", strerror(errno));
        ev_io_init(&pc.ios[i], pc_read_cb, pc.fds[i][0], EV_READ);
        ev_io_start(loop, &pc.ios[i]);
    }
    double *setup = xmalloc((size_t)iters * sizeof *setup);
    double *run = xmalloc((size_t)iters * sizeof *run);
    double *allocs = xmalloc((size_t)iters * sizeof *allocs);
    long space = n / active;

    for (long it = 0; it < iters; it++) {
        watchdog(n + active + writes, PER_UNIT);
        /* setup: stop and start every watcher again */
        double t0 = bench_now();
        for (long i = 0; i < n; i++) {
            ev_io *w = &pc.ios[i];
            ev_io_stop(loop, w);
            ev_io_set(w, pc.fds[i][0], EV_READ);
            ev_io_start(loop, w);
        }
        double t1 = bench_now();

        /* run: A bytes in, W more forwarded down the chain, all read */
        long allocs0 = bench_allocs();
        double t2 = bench_now();
        pc.count = 0;
        pc.writes = writes;
        for (long i = 0; i < active; i++)
            if (send(pc.fds[i * space][1], "e", 1, 0) != 1)
                bench_fail("send: %s", strerror(errno));
        while (pc.count < active + writes)
            ev_run(loop, EVRUN_ONCE);
        double t3 = bench_now();
        long allocs1 = bench_allocs();

        setup[it] = (t1 - t0) * 1e6;
        run[it] = (t3 - t2) * 1e6;
        allocs[it] = (double)(allocs1 - allocs0);
    }
    watchdog(0, 0);

    for (long i = 0; i < n; i++) {
        ev_io_stop(loop, &pc.ios[i]);
        close(pc.fds[i][0]);
        close(pc.fds[i][1]);
    }
    ev_loop_destroy(loop);
    free(pc.ios);
    free(pc.fds);

    bench_metric("setup_us", bench_median(setup, iters));
    bench_metric("run_us", bench_median(run, iters));
    bench_metric("allocs_run", bench_median(allocs, iters));
    free(setup);
    free(run);
    free(allocs);
}

/* ---- timers ---- */

static long fired;

static void tm_once_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
    fired++;
}

static void tm_never_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
    bench_fail("a timer fired that should not have");
}

static long repeat_left;

static void tm_repeat_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    if (--repeat_left == 0)
        ev_timer_stop(loop, w);
}

static void timers(const bench_args *a)
{
    const char *k = a->kind ? a->kind : "";
    struct ev_loop *loop = new_loop();

    if (!strcmp(k, "fire")) {
        long n = a->n;
        need_n(n, "--n");
        ev_timer *t = xmalloc((size_t)n * sizeof *t);
        fired = 0;
        double t0 = bench_now();
        for (long i = 0; i < n; i++) {
            ev_timer_init(&t[i], tm_once_cb, (double)bench_random(1000) / 1e6, 0.);
            ev_timer_start(loop, &t[i]);
        }
        double t1 = bench_now();
        watchdog(n, PER_UNIT);
        double t2 = bench_now();
        ev_run(loop, 0); /* returns when the last one-shot timer has fired */
        double t3 = bench_now();
        watchdog(0, 0);
        if (fired != n)
            bench_fail("%ld of %ld timers fired", fired, n);
        free(t);
        bench_metric("create_ns", (t1 - t0) * 1e9 / (double)n);
        bench_metric("fire_ns", (t3 - t2) * 1e9 / (double)n);
    } else if (!strcmp(k, "cancel")) {
        long n = a->n;
        need_n(n, "--n");
        ev_timer *t = xmalloc((size_t)n * sizeof *t);
        double t0 = bench_now();
        for (long i = 0; i < n; i++) {
            ev_timer_init(&t[i], tm_never_cb, (double)(1 + bench_random(1000)), 0.);
            ev_timer_start(loop, &t[i]);
        }
        double t1 = bench_now();
        for (long i = 0; i < n; i++)
            ev_timer_stop(loop, &t[i]);
        free(t);
        double t2 = bench_now();
        bench_metric("create_ns", (t1 - t0) * 1e9 / (double)n);
        bench_metric("cancel_ns", (t2 - t1) * 1e9 / (double)n);
    } else if (!strcmp(k, "rearm")) {
        long c = a->count;
        need_n(c, "--count");
        ev_timer t;
        ev_timer_init(&t, tm_never_cb, 1., 0.);
        ev_timer_start(loop, &t);
        double t0 = bench_now();
        for (long i = 0; i < c; i++) {
            ev_timer_stop(loop, &t);
            ev_timer_set(&t, 1., 0.);
            ev_timer_start(loop, &t);
        }
        double t1 = bench_now();
        ev_timer_stop(loop, &t);
        bench_metric("rearm_ns", (t1 - t0) * 1e9 / (double)c);
    } else if (!strcmp(k, "repeat")) {
        long c = a->count;
        need_n(c, "--count");
        ev_timer t;
        ev_timer_init(&t, tm_repeat_cb, 1e-6, 1e-6);
        repeat_left = c;
        /* A deadline less than epoll's 1 ms granularity ahead makes libev
         * wait 1 ms (its backend_mintime): allow for that on every firing. */
        watchdog(c, 2e-3);
        double t0 = bench_now();
        ev_timer_start(loop, &t);
        ev_run(loop, 0); /* the timer stops itself after c firings */
        double t1 = bench_now();
        watchdog(0, 0);
        if (repeat_left != 0)
            bench_fail("%ld firings short", repeat_left);
        bench_metric("fire_ns", (t1 - t0) * 1e9 / (double)c);
    } else {
        bench_fail("--kind must be fire, cancel, rearm or repeat, not '%s'", k);
    }
    ev_loop_destroy(loop);
}

/* ---- pingpong ---- */

static struct {
    ev_io a, b;
    char *msg, *buf_a, *buf_b;
    long size, count, done;
} pp;

/* End A: the echo came back; send the next message, or stop both ends. */
static void pp_a_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    read_all(w->fd, pp.buf_a, pp.size);
    if (++pp.done == pp.count) {
        ev_io_stop(loop, &pp.a);
        ev_io_stop(loop, &pp.b);
        return;
    }
    write_all(w->fd, pp.msg, pp.size);
}

/* End B: read the message whole and send it back. */
static void pp_b_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    read_all(w->fd, pp.buf_b, pp.size);
    write_all(w->fd, pp.buf_b, pp.size);
}

static void pingpong(const bench_args *a)
{
    pp.size = a->size;
    pp.count = a->count;
    need_n(pp.size, "--size");
    need_n(pp.count, "--count");
    /* Each message is written whole before the peer reads it: it must fit in
     * the socket buffer. */
    if (pp.size > 65536)
        bench_fail("--size %ld is more than 65536", pp.size);
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
        bench_fail("socketpair: %s", strerror(errno));
    pp.msg = xmalloc((size_t)pp.size);
    pp.buf_a = xmalloc((size_t)pp.size);
    pp.buf_b = xmalloc((size_t)pp.size);
    memset(pp.msg, 'p', (size_t)pp.size);
    pp.done = 0;

    struct ev_loop *loop = new_loop();
    ev_io_init(&pp.a, pp_a_cb, sv[0], EV_READ);
    ev_io_init(&pp.b, pp_b_cb, sv[1], EV_READ);
    ev_io_start(loop, &pp.a);
    ev_io_start(loop, &pp.b);

    watchdog(pp.count, PER_UNIT);
    long allocs0 = bench_allocs();
    double t0 = bench_now();
    write_all(sv[0], pp.msg, pp.size);
    ev_run(loop, 0); /* A stops both watchers after the last round trip */
    double t1 = bench_now();
    long allocs1 = bench_allocs();
    watchdog(0, 0);
    if (pp.done != pp.count)
        bench_fail("%ld of %ld round trips", pp.done, pp.count);

    ev_loop_destroy(loop);
    close(sv[0]);
    close(sv[1]);
    free(pp.msg);
    free(pp.buf_a);
    free(pp.buf_b);
    bench_metric("rt_per_s", (double)pp.count / (t1 - t0));
    bench_metric("allocs_rt", (double)(allocs1 - allocs0) / (double)pp.count);
}

/* ---- condvar ---- */

static long cv_pending; /* jobs begun and not yet ended */

static void cv_job_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
    cv_pending--;
}

static void condvar(const bench_args *a)
{
    long n = a->n;
    need_n(n, "--n");
    struct ev_loop *loop = new_loop();
    ev_timer *t = xmalloc((size_t)n * sizeof *t);
    cv_pending = 0;

    watchdog(n, PER_UNIT);
    double t0 = bench_now();
    for (long i = 0; i < n; i++) {
        cv_pending++;
        ev_timer_init(&t[i], cv_job_cb, 0., 0.);
        ev_timer_start(loop, &t[i]);
    }
    while (cv_pending > 0)
        ev_run(loop, EVRUN_ONCE);
    double t1 = bench_now();
    watchdog(0, 0);

    ev_loop_destroy(loop);
    free(t);
    bench_metric("item_ns", (t1 - t0) * 1e9 / (double)n);
}

/* ---- idle ---- */

static long idle_left;

static void idle_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
    (void)revents;
    if (--idle_left == 0)
        ev_idle_stop(loop, w);
}

static void idle(const bench_args *a)
{
    long c = a->count;
    need_n(c, "--count");
    struct ev_loop *loop = new_loop();
    ev_idle w;
    ev_idle_init(&w, idle_cb);
    idle_left = c;

    watchdog(c, PER_UNIT);
    long allocs0 = bench_allocs();
    double t0 = bench_now();
    ev_idle_start(loop, &w);
    ev_run(loop, 0); /* the watcher stops itself after c calls */
    double t1 = bench_now();
    long allocs1 = bench_allocs();
    watchdog(0, 0);
    if (idle_left != 0)
        bench_fail("%ld calls short", idle_left);

    ev_loop_destroy(loop);
    bench_metric("call_ns", (t1 - t0) * 1e9 / (double)c);
    bench_metric("allocs_call", (double)(allocs1 - allocs0) / (double)c);
}

/* ---- async ---- */

static void async_send(void *ctx)
{
    ev_async *w = ctx;
    ev_async_send(w->data, w);
}

static void async_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)revents;
    if (bench_async_seen(ev_userdata(loop)))
        ev_async_stop(loop, w); /* ev_run returns */
}

static void async_workload(const bench_args *a)
{
    need_n(a->n, "--n");
    need_n(a->count, "--count");
    struct ev_loop *loop = new_loop();
    ev_async w;
    ev_async_init(&w, async_cb);
    w.data = loop;
    ev_async_start(loop, &w);
    watchdog(a->n + a->count, PER_UNIT);
    bench_async *b = bench_async_start(async_send, &w, a->n, a->count);
    ev_set_userdata(loop, b);
    ev_run(loop, 0);
    watchdog(0, 0);
    bench_async_finish(b);
    ev_loop_destroy(loop);
}

/* ---- dispatch ---- */

void bench_run(const bench_args *a)
{
    const char *w = a->workload;
    if (!strcmp(w, "lifecycle"))
        lifecycle(a);
    else if (!strcmp(w, "pipechain"))
        pipechain(a);
    else if (!strcmp(w, "timers"))
        timers(a);
    else if (!strcmp(w, "pingpong"))
        pingpong(a);
    else if (!strcmp(w, "condvar"))
        condvar(a);
    else if (!strcmp(w, "idle"))
        idle(a);
    else if (!strcmp(w, "async"))
        async_workload(a);
    else
        bench_fail("unknown workload '%s'", w);
}
