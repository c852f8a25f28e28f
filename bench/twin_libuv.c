/*
 * ae-bench-libuv: the workloads of docs/benchmarks.md written directly
 * against libuv, the way a libuv user would write them.
 *
 * libuv's idiom, followed throughout:
 * - handles are caller-owned memory (here: one array per workload, allocated
 *   before anything is timed) and initialised in place with uv_*_init;
 * - a handle's life ends with uv_close, and its memory may be reused only
 *   once the close callback ran, which happens in a later loop iteration:
 *   "destroy" (and timers' "cancel") is therefore uv_close on every handle
 *   plus running the loop until every close callback ran;
 * - every workload has its own uv_loop_t (uv_loop_init), closed at the end
 *   with uv_loop_close, which must succeed (every handle closed);
 * - readiness watchers are uv_poll_t (libuv's only fd readiness handle; its
 *   streams are a buffered I/O layer, not a watcher);
 * - times are milliseconds, rounded up (a timer never fires early), as the
 *   anyevent libuv backend rounds them.
 *
 * "until" in the spec is uv_run(loop, UV_RUN_ONCE) in a loop checking a
 * counter. Every such loop is built so that something is always ready or a
 * timer bounds the wait, and it fails instead of spinning if the loop runs
 * out of active handles before the counter is reached.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <uv.h>

#include "bench.h"

const char *const bench_impl = "libuv";

/* ---- helpers ---- */

#define CHECK(call)                                                                  \
    do {                                                                             \
        int check_rc_ = (call);                                                      \
        if (check_rc_ < 0)                                                           \
            bench_fail("%s: %s", #call, uv_strerror(check_rc_));                      \
    } while (0)

static void loop_open(uv_loop_t *loop) { CHECK(uv_loop_init(loop)); }

static void loop_close(uv_loop_t *loop)
{
    int rc = uv_loop_close(loop);
    if (rc != 0)
        bench_fail("uv_loop_close: %s", uv_strerror(rc));
}

/* Run one iteration at a time (UV_RUN_ONCE) until *count reaches target.
 * uv_run returns 0 when no active handle is left: then nothing can move the
 * count any more. */
static void run_until(uv_loop_t *loop, const long *count, long target)
{
    while (*count < target)
        if (uv_run(loop, UV_RUN_ONCE) == 0 && *count < target)
            bench_fail("the loop ran out of work at %ld of %ld callbacks", *count, target);
}

static long closed;
static void on_close(uv_handle_t *h)
{
    (void)h;
    closed++;
}

/* uv_close on each of the n handles of an array (elements of `size` bytes),
 * then run the loop until every close callback ran. Closing handles make
 * libuv poll with a zero timeout, and UV_RUN_NOWAIT never blocks anyway. */
static void close_all(uv_loop_t *loop, void *array, size_t size, long n)
{
    char *p = array;
    closed = 0;
    for (long i = 0; i < n; i++)
        uv_close((uv_handle_t *)(void *)(p + (size_t)i * size), on_close);
    for (long spins = 0; closed < n; spins++) {
        if (spins > 1000)
            bench_fail("close callbacks: %ld of %ld ran", closed, n);
        uv_run(loop, UV_RUN_NOWAIT);
    }
}

static void *alloc_array(long n, size_t size)
{
    /* malloc, not calloc-and-touch: the pages become resident when the
     * handles are initialised, so mem_bytes counts the handles themselves. */
    void *p = malloc((size_t)n * size);
    if (!p)
        bench_fail("out of memory for %ld handles", n);
    return p;
}

static void need_positive(const char *what, long v)
{
    if (v <= 0)
        bench_fail("%s must be > 0", what);
}

/* libuv's millisecond timeout for a delay in seconds: rounded up. */
static uint64_t ms_of_us(unsigned long us) { return (us + 999) / 1000; }

/* ---- lifecycle ---- */

static long called;

static void lc_io_cb(uv_poll_t *h, int status, int events)
{
    (void)events;
    if (status < 0)
        bench_fail("poll callback: %s", uv_strerror(status));
    /* Always ready, so libuv calls it on every poll while the phase runs:
     * count each watcher once. */
    if (!h->data) {
        h->data = h;
        called++;
    }
}

static void lc_timer_cb(uv_timer_t *h)
{
    (void)h;
    called++;
}

static void lc_signal_cb(uv_signal_t *h, int signum)
{
    (void)h;
    (void)signum;
    called++;
}

static void lc_idle_cb(uv_idle_t *h)
{
    (void)h;
    called++;
}

/* libuv's signal handler writes one message per handle of the signal into
 * the loop's signal pipe (signal.c: uv__signal_handler), and a handle whose
 * message does not fit is silently skipped, never called: with the default
 * 64 KiB pipe one raise reaches 4096 handles. For the workload to be possible
 * at all the pipe must hold N messages: it is enlarged (F_SETPIPE_SZ) before
 * anything is timed. uv_loop_init creates the pipe (for the loop's internal
 * SIGCHLD handle); its fd is a field of uv_loop_t, documented as private. */
static void grow_signal_pipe(uv_loop_t *loop, long n)
{
    typedef struct {
        uv_signal_t *handle;
        int signum;
    } signal_msg; /* libuv's uv__signal_msg_t */
    long need = n * (long)sizeof(signal_msg);
    int fd = loop->signal_pipefd[1];
    if (fd < 0)
        bench_fail("libuv's signal pipe is not open after uv_loop_init");
    long have = fcntl(fd, F_GETPIPE_SZ);
    if (have < 0)
        bench_fail("F_GETPIPE_SZ: %s", strerror(errno));
    if (have >= need)
        return;
    if (fcntl(fd, F_SETPIPE_SZ, (int)need) < 0) {
        static char why[256];
        snprintf(why, sizeof why,
                 "libuv passes a signal to each handle as a %zu-byte message in one pipe and drops the ones that do "
                 "not fit: %ld handles need a %ld-byte pipe, F_SETPIPE_SZ refused (%s)",
                 sizeof(signal_msg), n, need, strerror(errno));
        bench_unsupported(why);
    }
}

enum lc_kind { LC_IO, LC_TIMER, LC_SIGNAL, LC_IDLE };

static void lifecycle(const bench_args *a)
{
    const char *kind = a->kind ? a->kind : "io";
    enum lc_kind k;
    size_t size;
    if (!strcmp(kind, "io")) {
        k = LC_IO;
        size = sizeof(uv_poll_t);
    } else if (!strcmp(kind, "timer")) {
        k = LC_TIMER;
        size = sizeof(uv_timer_t);
    } else if (!strcmp(kind, "signal")) {
        k = LC_SIGNAL;
        size = sizeof(uv_signal_t);
    } else if (!strcmp(kind, "idle")) {
        k = LC_IDLE;
        size = sizeof(uv_idle_t);
    } else if (!strcmp(kind, "child")) {
        bench_unsupported("libuv has no child watcher for processes it did not spawn");
    } else {
        bench_fail("unknown lifecycle kind %s", kind);
    }
    long n = a->n;
    need_positive("--n", n);

    int pfd[2] = {-1, -1};
    int *fds = NULL;
    if (k == LC_IO) {
        bench_need_fds(n);
        if (pipe(pfd) < 0)
            bench_fail("pipe: %s", strerror(errno));
        fds = malloc((size_t)n * sizeof *fds);
        if (!fds)
            bench_fail("out of memory");
        for (long i = 0; i < n; i++)
            if ((fds[i] = dup(pfd[1])) < 0)
                bench_fail("dup: %s", strerror(errno));
    }

    uv_loop_t loop;
    loop_open(&loop);
    if (k == LC_SIGNAL)
        grow_signal_pipe(&loop, n);
    char *mem = alloc_array(n, size);

    /* create */
    long rss0 = bench_rss_kb();
    double t0 = bench_now();
    switch (k) {
    case LC_IO:
        for (long i = 0; i < n; i++) {
            uv_poll_t *h = (uv_poll_t *)(void *)(mem + (size_t)i * size);
            CHECK(uv_poll_init(&loop, h, fds[i]));
            h->data = NULL;
            CHECK(uv_poll_start(h, UV_WRITABLE, lc_io_cb));
        }
        break;
    case LC_TIMER:
        for (long i = 0; i < n; i++) {
            uv_timer_t *h = (uv_timer_t *)(void *)(mem + (size_t)i * size);
            CHECK(uv_timer_init(&loop, h));
            CHECK(uv_timer_start(h, lc_timer_cb, 0, 0));
        }
        break;
    case LC_SIGNAL:
        for (long i = 0; i < n; i++) {
            uv_signal_t *h = (uv_signal_t *)(void *)(mem + (size_t)i * size);
            CHECK(uv_signal_init(&loop, h));
            CHECK(uv_signal_start(h, lc_signal_cb, SIGUSR1));
        }
        break;
    case LC_IDLE:
        for (long i = 0; i < n; i++) {
            uv_idle_t *h = (uv_idle_t *)(void *)(mem + (size_t)i * size);
            CHECK(uv_idle_init(&loop, h));
            CHECK(uv_idle_start(h, lc_idle_cb));
        }
        break;
    }
    double t1 = bench_now();
    long rss1 = bench_rss_kb();

    /* invoke: the io watchers are ready from the start, the 0 ms timers are
     * due at once, the idle watchers run in the first iteration, the signal
     * handles get SIGUSR1 raised once. */
    called = 0;
    long al0 = bench_allocs();
    double t2 = bench_now();
    if (k == LC_SIGNAL && raise(SIGUSR1) != 0)
        bench_fail("raise: %s", strerror(errno));
    run_until(&loop, &called, n);
    double t3 = bench_now();
    long al1 = bench_allocs();

    /* destroy */
    double t4 = bench_now();
    close_all(&loop, mem, size, n);
    double t5 = bench_now();

    loop_close(&loop);
    free(mem);
    if (k == LC_IO) {
        for (long i = 0; i < n; i++)
            close(fds[i]);
        free(fds);
        close(pfd[0]);
        close(pfd[1]);
    }

    bench_metric("create_ns", (t1 - t0) * 1e9 / (double)n);
    bench_metric("invoke_ns", (t3 - t2) * 1e9 / (double)n);
    bench_metric("destroy_ns", (t5 - t4) * 1e9 / (double)n);
    bench_metric("mem_bytes", (double)(rss1 - rss0) * 1024.0 / (double)n);
    bench_metric("allocs_invoke", (double)(al1 - al0) / (double)n);
}

/* ---- pipechain (libevent's test/bench.c) ---- */

static struct {
    int (*sv)[2]; /* [i][0] watched, [i][1] written */
    long n;
    long writes_left;
    long count; /* bytes read */
} pc;

static void pc_read_cb(uv_poll_t *h, int status, int events)
{
    (void)events;
    if (status < 0)
        bench_fail("poll callback: %s", uv_strerror(status));
    long i = (long)(intptr_t)h->data;
    unsigned char ch;
    ssize_t r = recv(pc.sv[i][0], &ch, 1, MSG_DONTWAIT);
    if (r != 1) {
        if (r < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        bench_fail("recv: %s", r < 0 ? strerror(errno) : "end of file");
    }
    pc.count++;
    if (pc.writes_left > 0) {
        pc.writes_left--;
        long j = i + 1 == pc.n ? 0 : i + 1;
        if (send(pc.sv[j][1], "e", 1, 0) != 1)
            bench_fail("send: %s", strerror(errno));
    }
}

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
    uv_poll_t *h = alloc_array(n, sizeof *h);
    double *setup = malloc((size_t)iters * sizeof *setup);
    double *run = malloc((size_t)iters * sizeof *run);
    double *allocs = malloc((size_t)iters * sizeof *allocs);
    if (!pc.sv || !setup || !run || !allocs)
        bench_fail("out of memory");
    for (long i = 0; i < n; i++)
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, pc.sv[i]) < 0)
            bench_fail("socketpair: %s", strerror(errno));

    uv_loop_t loop;
    loop_open(&loop);
    for (long i = 0; i < n; i++) {
        CHECK(uv_poll_init(&loop, &h[i], pc.sv[i][0]));
        h[i].data = (void *)(intptr_t)i;
        CHECK(uv_poll_start(&h[i], UV_READABLE, pc_read_cb));
    }
    long space = n / active;
    for (long it = 0; it < iters; it++) {
        /* As the spec names them. libuv removes an fd from epoll at once
         * (uv_poll_stop, and again inside uv_poll_start, which stops first)
         * and adds it back only when it next polls: in run, not here. */
        double t0 = bench_now();
        for (long i = 0; i < n; i++) {
            CHECK(uv_poll_stop(&h[i]));
            CHECK(uv_poll_start(&h[i], UV_READABLE, pc_read_cb));
        }
        double t1 = bench_now();

        /* Until every byte is read one is always in flight: UV_RUN_ONCE
         * never waits for nothing. */
        long al0 = bench_allocs();
        double t2 = bench_now();
        pc.count = 0;
        pc.writes_left = writes;
        for (long i = 0; i < active; i++)
            if (send(pc.sv[i * space][1], "e", 1, 0) != 1)
                bench_fail("send: %s", strerror(errno));
        run_until(&loop, &pc.count, active + writes);
        double t3 = bench_now();
        long al1 = bench_allocs();

        setup[it] = (t1 - t0) * 1e6;
        run[it] = (t3 - t2) * 1e6;
        allocs[it] = (double)(al1 - al0);
    }

    close_all(&loop, h, sizeof *h, n);
    loop_close(&loop);
    for (long i = 0; i < n; i++) {
        close(pc.sv[i][0]);
        close(pc.sv[i][1]);
    }
    free(h);
    free(pc.sv);

    bench_metric("setup_us", bench_median(setup, iters));
    bench_metric("run_us", bench_median(run, iters));
    bench_metric("allocs_run", bench_median(allocs, iters));
    free(setup);
    free(run);
    free(allocs);
}

/* ---- timers ---- */

static long fired;

static void tm_fire_cb(uv_timer_t *h)
{
    (void)h;
    fired++;
}

static void tm_never_cb(uv_timer_t *h)
{
    (void)h;
    bench_fail("a timer of 1 s or more fired");
}

static long repeat_target;
static void tm_repeat_cb(uv_timer_t *h)
{
    if (++fired >= repeat_target)
        CHECK(uv_timer_stop(h));
}

static void timers(const bench_args *a)
{
    const char *kind = a->kind ? a->kind : "fire";
    uv_loop_t loop;

    if (!strcmp(kind, "fire") || !strcmp(kind, "cancel")) {
        bool fire = !strcmp(kind, "fire");
        long n = a->n;
        need_positive("--n", n);
        uv_timer_t *t = alloc_array(n, sizeof *t);
        /* The deadlines, drawn before timing: creating the timers is what is
         * timed. fire: 0 to 999 us, rounded up to libuv's ms (0 or 1 ms);
         * cancel: 1 to 1000 s. */
        uint64_t *ms = malloc((size_t)n * sizeof *ms);
        if (!ms)
            bench_fail("out of memory");
        for (long i = 0; i < n; i++)
            ms[i] = fire ? ms_of_us(bench_random(1000)) : (1 + bench_random(1000)) * 1000;

        loop_open(&loop);
        uv_update_time(&loop);
        fired = 0;
        double t0 = bench_now();
        for (long i = 0; i < n; i++) {
            CHECK(uv_timer_init(&loop, &t[i]));
            CHECK(uv_timer_start(&t[i], fire ? tm_fire_cb : tm_never_cb, ms[i], 0));
        }
        double t1 = bench_now();
        bench_metric("create_ns", (t1 - t0) * 1e9 / (double)n);

        if (fire) {
            /* The latest deadline is 1 ms away: UV_RUN_ONCE waits for at
             * most that. */
            double t2 = bench_now();
            run_until(&loop, &fired, n);
            double t3 = bench_now();
            bench_metric("fire_ns", (t3 - t2) * 1e9 / (double)n);
            close_all(&loop, t, sizeof *t, n);
        } else {
            /* uv_close stops an active timer (uv__timer_close is
             * uv_timer_stop); the memory is free once the callbacks ran. */
            double t2 = bench_now();
            close_all(&loop, t, sizeof *t, n);
            double t3 = bench_now();
            bench_metric("cancel_ns", (t3 - t2) * 1e9 / (double)n);
        }
        loop_close(&loop);
        free(ms);
        free(t);
    } else if (!strcmp(kind, "rearm")) {
        long c = a->count;
        need_positive("--count", c);
        uv_timer_t t;
        loop_open(&loop);
        CHECK(uv_timer_init(&loop, &t));
        CHECK(uv_timer_start(&t, tm_never_cb, 1000, 0));
        /* uv_timer_start on the active handle: libuv stops and re-inserts it
         * itself. "Now" is the loop's cached time, as for every libuv timer. */
        double t0 = bench_now();
        for (long i = 0; i < c; i++)
            CHECK(uv_timer_start(&t, tm_never_cb, 1000, 0));
        double t1 = bench_now();
        bench_metric("rearm_ns", (t1 - t0) * 1e9 / (double)c);
        close_all(&loop, &t, sizeof t, 1);
        loop_close(&loop);
    } else if (!strcmp(kind, "repeat")) {
        long c = a->count;
        need_positive("--count", c);
        uv_timer_t t;
        loop_open(&loop);
        CHECK(uv_timer_init(&loop, &t));
        fired = 0;
        repeat_target = c;
        /* 1 ms: libuv's timers have millisecond resolution, and 0 means "no
         * repeat". The callback stops the timer at C, the loop then has
         * nothing left and uv_run returns: the libuv idiom. */
        uv_update_time(&loop);
        double t0 = bench_now();
        CHECK(uv_timer_start(&t, tm_repeat_cb, 1, 1));
        uv_run(&loop, UV_RUN_DEFAULT);
        double t1 = bench_now();
        if (fired != c)
            bench_fail("the repeating timer fired %ld of %ld times", fired, c);
        bench_metric("fire_ns", (t1 - t0) * 1e9 / (double)c);
        close_all(&loop, &t, sizeof t, 1);
        loop_close(&loop);
    } else {
        bench_fail("unknown timers kind %s", kind);
    }
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
        else /* an empty socket pair takes a message of 4096 bytes at once */
            bench_fail("send: %s", r < 0 ? strerror(errno) : "wrote nothing");
    }
}

/* Read what is there towards a whole message; true once it is complete. A
 * short read leaves the rest for the next callback. */
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

static void pp_b_cb(uv_poll_t *h, int status, int events)
{
    (void)h;
    (void)events;
    if (status < 0)
        bench_fail("poll callback: %s", uv_strerror(status));
    if (read_message(pp.fd[1], pp.b_buf, &pp.b_got))
        write_all(pp.fd[1], pp.b_buf, pp.size);
}

static void pp_a_cb(uv_poll_t *h, int status, int events)
{
    (void)h;
    (void)events;
    if (status < 0)
        bench_fail("poll callback: %s", uv_strerror(status));
    if (read_message(pp.fd[0], pp.a_buf, &pp.a_got) && ++pp.rts < pp.count)
        write_all(pp.fd[0], pp.msg, pp.size);
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

    uv_loop_t loop;
    uv_poll_t h[2];
    loop_open(&loop);
    CHECK(uv_poll_init(&loop, &h[0], pp.fd[0]));
    CHECK(uv_poll_init(&loop, &h[1], pp.fd[1]));
    CHECK(uv_poll_start(&h[0], UV_READABLE, pp_a_cb));
    CHECK(uv_poll_start(&h[1], UV_READABLE, pp_b_cb));

    /* A message or its echo is always in flight until the last round trip:
     * UV_RUN_ONCE never waits for nothing. */
    pp.rts = 0;
    long al0 = bench_allocs();
    double t0 = bench_now();
    write_all(pp.fd[0], pp.msg, pp.size);
    run_until(&loop, &pp.rts, pp.count);
    double t1 = bench_now();
    long al1 = bench_allocs();

    close_all(&loop, h, sizeof h[0], 2);
    loop_close(&loop);
    close(pp.fd[0]);
    close(pp.fd[1]);
    free(pp.msg);
    free(pp.a_buf);
    free(pp.b_buf);

    bench_metric("rt_per_s", (double)pp.count / (t1 - t0));
    bench_metric("allocs_rt", (double)(al1 - al0) / (double)pp.count);
}

/* ---- condvar ---- */

static long pending; /* jobs begun and not yet ended */

static void cv_job_done(uv_timer_t *h)
{
    (void)h;
    pending--;
}

static void condvar(const bench_args *a)
{
    long n = a->n;
    need_positive("--n", n);
    uv_timer_t *t = alloc_array(n, sizeof *t);
    uv_loop_t loop;
    loop_open(&loop);

    /* A counter for the jobs, the loop run until it is back to 0: the libuv
     * way to wait for a set of callbacks. The 0 ms timers are due at once. */
    pending = 0;
    double t0 = bench_now();
    for (long i = 0; i < n; i++) {
        pending++;
        CHECK(uv_timer_init(&loop, &t[i]));
        CHECK(uv_timer_start(&t[i], cv_job_done, 0, 0));
    }
    while (pending > 0)
        if (uv_run(&loop, UV_RUN_ONCE) == 0 && pending > 0)
            bench_fail("the loop ran out of work with %ld jobs pending", pending);
    double t1 = bench_now();

    close_all(&loop, t, sizeof *t, n);
    loop_close(&loop);
    free(t);
    bench_metric("item_ns", (t1 - t0) * 1e9 / (double)n);
}

/* ---- idle ---- */

static long idle_calls, idle_target;

static void idle_cb(uv_idle_t *h)
{
    if (++idle_calls >= idle_target)
        CHECK(uv_idle_stop(h));
}

static void idle(const bench_args *a)
{
    long c = a->count;
    need_positive("--count", c);
    uv_loop_t loop;
    uv_idle_t h;
    loop_open(&loop);
    CHECK(uv_idle_init(&loop, &h));
    idle_calls = 0;
    idle_target = c;
    CHECK(uv_idle_start(&h, idle_cb));

    /* The watcher stops itself at C; the loop then has nothing left and
     * uv_run returns: the libuv idiom. */
    long al0 = bench_allocs();
    double t0 = bench_now();
    uv_run(&loop, UV_RUN_DEFAULT);
    double t1 = bench_now();
    long al1 = bench_allocs();
    if (idle_calls != c)
        bench_fail("the idle watcher ran %ld of %ld times", idle_calls, c);

    close_all(&loop, &h, sizeof h, 1);
    loop_close(&loop);
    bench_metric("call_ns", (t1 - t0) * 1e9 / (double)c);
    bench_metric("allocs_call", (double)(al1 - al0) / (double)c);
}

/* ---- entry ---- */

/* ---- async ---- */

static void async_send(void *ctx) { uv_async_send(ctx); }

static void async_cb(uv_async_t *h)
{
    if (bench_async_seen(h->data))
        uv_close((uv_handle_t *)h, NULL); /* uv_run returns */
}

static void async_workload(const bench_args *a)
{
    if (a->n < 1 || a->count < 1)
        bench_fail("--n and --count must be at least 1");
    uv_loop_t loop;
    loop_open(&loop);
    uv_async_t h;
    CHECK(uv_async_init(&loop, &h, async_cb));
    bench_async *b = bench_async_start(async_send, &h, a->n, a->count);
    h.data = b; /* read by the callback only, on this thread, inside uv_run */
    uv_run(&loop, UV_RUN_DEFAULT);
    bench_async_finish(b);
    CHECK(uv_loop_close(&loop));
}

void bench_run(const bench_args *a)
{
    if (!strcmp(a->workload, "lifecycle"))
        lifecycle(a);
    else if (!strcmp(a->workload, "pipechain"))
        pipechain(a);
    else if (!strcmp(a->workload, "timers"))
        timers(a);
    else if (!strcmp(a->workload, "pingpong"))
        pingpong(a);
    else if (!strcmp(a->workload, "condvar"))
        condvar(a);
    else if (!strcmp(a->workload, "idle"))
        idle(a);
    else if (!strcmp(a->workload, "async"))
        async_workload(a);
    else
        bench_fail("unknown workload %s", a->workload);
}
