/*
 * ae-bench's libevent twin: the workloads of docs/benchmarks.md written
 * directly against libevent 2.1, the way a program on libevent would.
 *
 * Idiom choices:
 *  - struct events live in caller-owned arrays allocated before any timed
 *    region and are set up with event_assign() (event2/event_struct.h), as
 *    libevent's own test/bench.c does with its calloc'd events[] array. The
 *    book's everyday idiom is event_new()/event_free(), but that is one
 *    malloc per event: the spec asks twins for caller-owned memory, and
 *    event_assign() is libevent's documented way to get it.
 *  - io and signal events are EV_PERSIST (libevent's level-triggered,
 *    stay-registered form, and what evsignal_new() gives); timers are
 *    one-shot evtimers, the repeating timer an EV_PERSIST timer.
 *  - The base is event_base_new(), which honours EVENT_NOEPOLL=1 (and the
 *    other EVENT_* variables, EVENT_PRECISE_TIMER included) from the
 *    environment. Left at its default, libevent's timer clock is
 *    CLOCK_MONOTONIC_COARSE: see the repeat workload.
 *  - Every "run until" is a loop of event_base_loop(base, EVLOOP_ONCE) calls
 *    checking a counter; a return of 1 (nothing left to wait for) or -1 fails
 *    the run instead of waiting for ever, and every byte a workload expects
 *    to arrive is checked when it is sent.
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/thread.h>

#include "bench.h"

const char *const bench_impl = "libevent";

/* ---- helpers ---- */

static struct event_base *base_new(void)
{
    struct event_base *base = event_base_new();
    if (!base)
        bench_fail("event_base_new failed");
    return base;
}

/* One iteration: waits until something is active, runs it. */
static void loop_once(struct event_base *base)
{
    int rc = event_base_loop(base, EVLOOP_ONCE);
    if (rc < 0)
        bench_fail("event_base_loop failed: %s", strerror(errno));
    if (rc > 0)
        bench_fail("event_base_loop: no events left, but the workload is not done");
}

/* libevent's select backend sizes its fd_sets for any fd, but FD_SET is
 * glibc's, which (fortified, as in Debian's libevent) aborts the process for
 * an fd >= FD_SETSIZE: refuse before that, as anyevent's select backend does
 * with AE_ELIMIT. */
static void check_select_fds(struct event_base *base, int max_fd)
{
    if (max_fd >= FD_SETSIZE && !strcmp(event_base_get_method(base), "select")) {
        char why[160];
        snprintf(why, sizeof why,
                 "libevent's select backend: fd %d is not below FD_SETSIZE (%d) (glibc's FD_SET would abort)",
                 max_fd, FD_SETSIZE);
        bench_unsupported(why);
    }
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (!p)
        bench_fail("out of memory (%zu x %zu bytes)", n, size);
    return p;
}

static void nonblocking(int fd)
{
    if (evutil_make_socket_nonblocking(fd) < 0)
        bench_fail("cannot make fd %d non-blocking", fd);
}

/* ---- lifecycle ---- */

static long lc_left; /* watchers whose callback has not run yet */

/* arg: the watcher's "has run" flag. io and signal events persist, so an io
 * event may be reported again before the others had their turn; each counts
 * once. */
static void lc_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    unsigned char *ran = arg;
    if (!*ran) {
        *ran = 1;
        lc_left--;
    }
}

static void lifecycle(const bench_args *a)
{
    const char *kind = a->kind ? a->kind : "";
    enum { IO, TIMER, SIGNAL } k;
    if (!strcmp(kind, "io"))
        k = IO;
    else if (!strcmp(kind, "timer"))
        k = TIMER;
    else if (!strcmp(kind, "signal"))
        k = SIGNAL;
    else if (!strcmp(kind, "child"))
        bench_unsupported("libevent has no child watcher");
    else if (!strcmp(kind, "idle"))
        bench_unsupported("libevent has no idle watcher");
    else
        bench_fail("unknown kind '%s' (io, timer, signal, child, idle)", kind);
    long n = a->n;
    if (n <= 0)
        bench_fail("--n must be > 0");

    int pipefd[2] = {-1, -1};
    int *fds = NULL;
    if (k == IO) {
        bench_need_fds(n + 2);
        if (pipe(pipefd) < 0)
            bench_fail("pipe: %s", strerror(errno));
        fds = xcalloc((size_t)n, sizeof *fds);
        for (long i = 0; i < n; i++)
            if ((fds[i] = dup(pipefd[1])) < 0)
                bench_fail("dup: %s", strerror(errno));
    }

    struct event_base *base = base_new();
    if (k == IO)
        check_select_fds(base, fds[n - 1] > pipefd[1] ? fds[n - 1] : pipefd[1]);
    /* ev is the watchers' memory: its pages are touched (and counted) by
     * event_assign() in the create phase. ran is the benchmark's own. */
    struct event *ev = xcalloc((size_t)n, sizeof *ev);
    unsigned char *ran = xcalloc((size_t)n, 1);
    memset(ran, 0, (size_t)n);
    static const struct timeval zero = {0, 0};

    /* create: assign and add N events */
    long rss0 = bench_rss_kb();
    double t0 = bench_now();
    switch (k) {
    case IO:
        for (long i = 0; i < n; i++) {
            event_assign(&ev[i], base, fds[i], EV_WRITE | EV_PERSIST, lc_cb, &ran[i]);
            if (event_add(&ev[i], NULL) < 0)
                bench_fail("event_add (io %ld) failed", i);
        }
        break;
    case TIMER:
        for (long i = 0; i < n; i++) {
            evtimer_assign(&ev[i], base, lc_cb, &ran[i]);
            if (evtimer_add(&ev[i], &zero) < 0)
                bench_fail("evtimer_add %ld failed", i);
        }
        break;
    case SIGNAL:
        for (long i = 0; i < n; i++) {
            evsignal_assign(&ev[i], base, SIGUSR1, lc_cb, &ran[i]);
            if (evsignal_add(&ev[i], NULL) < 0)
                bench_fail("evsignal_add %ld failed", i);
        }
        break;
    }
    double t1 = bench_now();
    long rss1 = bench_rss_kb();

    /* invoke: make all ready, run until every callback ran once */
    lc_left = n;
    long allocs0 = bench_allocs();
    double t2 = bench_now();
    if (k == SIGNAL && raise(SIGUSR1) != 0)
        bench_fail("raise: %s", strerror(errno));
    while (lc_left > 0)
        loop_once(base);
    double t3 = bench_now();
    long allocs1 = bench_allocs();

    /* destroy: delete N events (their memory is the caller's array) */
    double t4 = bench_now();
    for (long i = 0; i < n; i++)
        event_del(&ev[i]);
    double t5 = bench_now();

    bench_metric("create_ns", (t1 - t0) * 1e9 / (double)n);
    bench_metric("invoke_ns", (t3 - t2) * 1e9 / (double)n);
    bench_metric("destroy_ns", (t5 - t4) * 1e9 / (double)n);
    bench_metric("mem_bytes", (double)(rss1 - rss0) * 1024.0 / (double)n);
    bench_metric("allocs_invoke", (double)(allocs1 - allocs0) / (double)n);

    event_base_free(base);
    free(ran);
    free(ev);
    if (k == IO) {
        for (long i = 0; i < n; i++)
            close(fds[i]);
        free(fds);
        close(pipefd[0]);
        close(pipefd[1]);
    }
}

/* ---- pipechain (libevent's test/bench.c) ---- */

static struct {
    int *pipes;  /* 2 per pipe: [2i] read end (watched), [2i + 1] write end */
    long n;
    long count;  /* bytes read (callbacks run) */
    long writes; /* writes left */
} pc;

static void pc_send(long i)
{
    if (send(pc.pipes[2 * i + 1], "e", 1, 0) != 1)
        bench_fail("send to pipe %ld: %s", i, strerror(errno));
}

static void pc_read_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    long i = (long)(intptr_t)arg;
    unsigned char ch;
    ssize_t r = recv(fd, &ch, 1, 0);
    if (r < 0 && errno == EAGAIN)
        return; /* nothing after all: not a byte read */
    if (r != 1)
        bench_fail("recv from pipe %ld: %s", i, r < 0 ? strerror(errno) : "end of file");
    pc.count++;
    if (pc.writes > 0) {
        pc.writes--;
        long next = i + 1;
        if (next >= pc.n)
            next -= pc.n;
        pc_send(next);
    }
}

static void pipechain(const bench_args *a)
{
    long n = a->n, active = a->active, writes = a->writes, iters = a->iterations;
    if (n <= 0 || active <= 0 || active > n || iters <= 0)
        bench_fail("needs --n > 0, 0 < --active <= --n, --iterations > 0");
    bench_need_fds(2 * n);

    pc.n = n;
    pc.pipes = xcalloc((size_t)(2 * n), sizeof *pc.pipes);
    for (long i = 0; i < n; i++) {
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, &pc.pipes[2 * i]) < 0)
            bench_fail("socketpair: %s", strerror(errno));
        nonblocking(pc.pipes[2 * i]);
    }

    struct event_base *base = base_new();
    int max_fd = 0;
    for (long i = 0; i < 2 * n; i++)
        if (pc.pipes[i] > max_fd)
            max_fd = pc.pipes[i];
    check_select_fds(base, max_fd);
    struct event *ev = xcalloc((size_t)n, sizeof *ev);
    for (long i = 0; i < n; i++) {
        event_assign(&ev[i], base, pc.pipes[2 * i], EV_READ | EV_PERSIST, pc_read_cb, (void *)(intptr_t)i);
        if (event_add(&ev[i], NULL) < 0)
            bench_fail("event_add (pipe %ld) failed", i);
    }

    double *setup = xcalloc((size_t)iters, sizeof *setup);
    double *run = xcalloc((size_t)iters, sizeof *run);
    double *allocs = xcalloc((size_t)iters, sizeof *allocs);
    long space = n / active;
    for (long it = 0; it < iters; it++) {
        double t0 = bench_now();
        for (long i = 0; i < n; i++) {
            event_del(&ev[i]);
            if (event_add(&ev[i], NULL) < 0)
                bench_fail("event_add (pipe %ld) failed", i);
        }
        double t1 = bench_now();

        long allocs0 = bench_allocs();
        double t2 = bench_now();
        pc.count = 0;
        pc.writes = writes;
        for (long i = 0; i < active; i++)
            pc_send(i * space);
        while (pc.count < active + writes)
            loop_once(base);
        double t3 = bench_now();
        long allocs1 = bench_allocs();

        setup[it] = (t1 - t0) * 1e6;
        run[it] = (t3 - t2) * 1e6;
        allocs[it] = (double)(allocs1 - allocs0);
    }
    bench_metric("setup_us", bench_median(setup, iters));
    bench_metric("run_us", bench_median(run, iters));
    bench_metric("allocs_run", bench_median(allocs, iters));

    for (long i = 0; i < n; i++)
        event_del(&ev[i]);
    event_base_free(base);
    free(ev);
    for (long i = 0; i < 2 * n; i++)
        close(pc.pipes[i]);
    free(pc.pipes);
    free(setup);
    free(run);
    free(allocs);
}

/* ---- timers ---- */

static long tm_fired;
static long tm_limit; /* repeat: fire this many times */

static void tm_fire_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    tm_fired++;
}

static void tm_repeat_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    if (++tm_fired >= tm_limit)
        event_del(arg);
}

static void tm_rearm_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    bench_fail("the re-armed 1 s timer fired");
}

static void timers(const bench_args *a)
{
    const char *kind = a->kind ? a->kind : "";
    struct event_base *base = base_new();

    if (!strcmp(kind, "fire") || !strcmp(kind, "cancel")) {
        bool fire = !strcmp(kind, "fire");
        long n = a->n;
        if (n <= 0)
            bench_fail("--n must be > 0");
        struct event *ev = xcalloc((size_t)n, sizeof *ev);
        /* The deadlines are drawn before timing starts, so that only the
         * library is timed. fire: bench_random(1000) / 1e6 s, that is, that
         * many microseconds; cancel: 1 to 1000 s. */
        struct timeval *after = xcalloc((size_t)n, sizeof *after);
        for (long i = 0; i < n; i++) {
            if (fire)
                after[i] = (struct timeval){0, (suseconds_t)bench_random(1000)};
            else
                after[i] = (struct timeval){(time_t)(1 + bench_random(1000)), 0};
        }
        tm_fired = 0;
        double t0 = bench_now();
        for (long i = 0; i < n; i++) {
            evtimer_assign(&ev[i], base, tm_fire_cb, NULL);
            if (evtimer_add(&ev[i], &after[i]) < 0)
                bench_fail("evtimer_add %ld failed", i);
        }
        double t1 = bench_now();
        bench_metric("create_ns", (t1 - t0) * 1e9 / (double)n);
        if (fire) {
            while (tm_fired < n)
                loop_once(base);
            double t2 = bench_now();
            bench_metric("fire_ns", (t2 - t1) * 1e9 / (double)n);
        } else {
            for (long i = 0; i < n; i++)
                evtimer_del(&ev[i]);
            double t2 = bench_now();
            bench_metric("cancel_ns", (t2 - t1) * 1e9 / (double)n);
            if (tm_fired)
                bench_fail("%ld of the 1 to 1000 s timers fired", tm_fired);
        }
        event_base_free(base);
        free(after);
        free(ev);
    } else if (!strcmp(kind, "rearm")) {
        long c = a->count;
        if (c <= 0)
            bench_fail("--count must be > 0");
        struct event ev;
        static const struct timeval one = {1, 0};
        evtimer_assign(&ev, base, tm_rearm_cb, NULL);
        if (evtimer_add(&ev, &one) < 0)
            bench_fail("evtimer_add failed");
        double t0 = bench_now();
        for (long i = 0; i < c; i++)
            evtimer_add(&ev, &one);
        double t1 = bench_now();
        bench_metric("rearm_ns", (t1 - t0) * 1e9 / (double)c);
        evtimer_del(&ev);
        event_base_free(base);
    } else if (!strcmp(kind, "repeat")) {
        /* An EV_PERSIST timer is libevent's repeating timer. Its next
         * deadline is the last one plus the interval, or now plus the
         * interval once behind; "now" is libevent's clock, which by default
         * is CLOCK_MONOTONIC_COARSE (a tick of 1 to 4 ms): a 1 us timer then
         * fires once per tick. EVENT_PRECISE_TIMER=1 in the environment
         * makes event_base_new() use CLOCK_MONOTONIC (and a timerfd with
         * epoll) instead. */
        long c = a->count;
        if (c <= 0)
            bench_fail("--count must be > 0");
        struct event ev;
        static const struct timeval interval = {0, 1};
        tm_fired = 0;
        tm_limit = c;
        event_assign(&ev, base, -1, EV_PERSIST, tm_repeat_cb, &ev);
        if (evtimer_add(&ev, &interval) < 0)
            bench_fail("evtimer_add failed");
        double t0 = bench_now();
        while (tm_fired < c)
            loop_once(base);
        double t1 = bench_now();
        bench_metric("fire_ns", (t1 - t0) * 1e9 / (double)c);
        event_base_free(base);
    } else {
        bench_fail("unknown kind '%s' (fire, cancel, rearm, repeat)", kind);
    }
}

/* ---- pingpong ---- */

static struct {
    int fd[2];  /* [0]: end A, [1]: end B */
    size_t size;
    char *msg;  /* what A sends */
    char *buf[2];
    size_t got[2];
    long rounds, count;
} pp;

static void pp_send(int fd, const char *p)
{
    size_t done = 0;
    while (done < pp.size) {
        ssize_t r = send(fd, p + done, pp.size - done, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            bench_fail("send of %zu bytes: %s", pp.size,
                       r < 0 && errno == EAGAIN ? "the socket buffer is full" : strerror(errno));
        done += (size_t)r;
    }
}

/* Reads what is there of end e's message; true once it is whole. */
static bool pp_read(int e)
{
    while (pp.got[e] < pp.size) {
        ssize_t r = recv(pp.fd[e], pp.buf[e] + pp.got[e], pp.size - pp.got[e], 0);
        if (r > 0)
            pp.got[e] += (size_t)r;
        else if (r < 0 && errno == EINTR)
            continue;
        else if (r < 0 && errno == EAGAIN)
            return false; /* the rest comes with a later callback */
        else
            bench_fail("recv: %s", r == 0 ? "end of file" : strerror(errno));
    }
    pp.got[e] = 0;
    return true;
}

static void pp_a_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    (void)arg;
    if (!pp_read(0))
        return;
    if (++pp.rounds < pp.count)
        pp_send((int)fd, pp.msg);
}

static void pp_b_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    (void)arg;
    if (pp_read(1))
        pp_send((int)fd, pp.buf[1]);
}

static void pingpong(const bench_args *a)
{
    if (a->size <= 0 || a->count <= 0)
        bench_fail("needs --size > 0 and --count > 0");
    pp.size = (size_t)a->size;
    pp.count = a->count;
    pp.rounds = 0;
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, pp.fd) < 0)
        bench_fail("socketpair: %s", strerror(errno));
    nonblocking(pp.fd[0]);
    nonblocking(pp.fd[1]);
    pp.msg = xcalloc(pp.size, 1);
    memset(pp.msg, 'p', pp.size);
    pp.buf[0] = xcalloc(pp.size, 1);
    pp.buf[1] = xcalloc(pp.size, 1);

    struct event_base *base = base_new();
    check_select_fds(base, pp.fd[0] > pp.fd[1] ? pp.fd[0] : pp.fd[1]);
    struct event ev[2];
    event_assign(&ev[0], base, pp.fd[0], EV_READ | EV_PERSIST, pp_a_cb, NULL);
    event_assign(&ev[1], base, pp.fd[1], EV_READ | EV_PERSIST, pp_b_cb, NULL);
    if (event_add(&ev[0], NULL) < 0 || event_add(&ev[1], NULL) < 0)
        bench_fail("event_add failed");

    long allocs0 = bench_allocs();
    double t0 = bench_now();
    pp_send(pp.fd[0], pp.msg);
    while (pp.rounds < pp.count)
        loop_once(base);
    double t1 = bench_now();
    long allocs1 = bench_allocs();
    bench_metric("rt_per_s", (double)pp.count / (t1 - t0));
    bench_metric("allocs_rt", (double)(allocs1 - allocs0) / (double)pp.count);

    event_del(&ev[0]);
    event_del(&ev[1]);
    event_base_free(base);
    close(pp.fd[0]);
    close(pp.fd[1]);
    free(pp.msg);
    free(pp.buf[0]);
    free(pp.buf[1]);
}

/* ---- condvar: fan-in with a counter ---- */

static long cv_pending;

static void cv_job_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    cv_pending--;
}

static void condvar(const bench_args *a)
{
    long n = a->n;
    if (n <= 0)
        bench_fail("--n must be > 0");
    struct event_base *base = base_new();
    struct event *ev = xcalloc((size_t)n, sizeof *ev);
    static const struct timeval zero = {0, 0};

    double t0 = bench_now();
    cv_pending = 0;
    for (long i = 0; i < n; i++) {
        cv_pending++;
        evtimer_assign(&ev[i], base, cv_job_cb, NULL);
        if (evtimer_add(&ev[i], &zero) < 0)
            bench_fail("evtimer_add %ld failed", i);
    }
    while (cv_pending > 0)
        loop_once(base);
    double t1 = bench_now();
    bench_metric("item_ns", (t1 - t0) * 1e9 / (double)n);

    event_base_free(base);
    free(ev);
}

/* ---- dispatch ---- */

/* ---- async ---- */

/* libevent's cross-thread wake-up: event_active() on an event of a base
 * made after evthread_use_pthreads(), which notifies the base's loop. */
static void async_send(void *ctx) { event_active(ctx, EV_READ, 0); }

struct async_state {
    struct event *ev;
    bench_async *b; /* read by the callback only, in the loop */
};

static void async_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct async_state *st = arg;
    if (bench_async_seen(st->b))
        event_base_loopbreak(event_get_base(st->ev));
}

static void async_workload(const bench_args *a)
{
    if (a->n < 1 || a->count < 1)
        bench_fail("--n and --count must be at least 1");
    if (evthread_use_pthreads() != 0)
        bench_fail("evthread_use_pthreads failed");
    struct event_base *base = base_new();
    struct async_state st = {0};
    st.ev = event_new(base, -1, EV_PERSIST, async_cb, &st);
    if (!st.ev || event_add(st.ev, NULL) != 0)
        bench_fail("event_new or event_add failed");
    st.b = bench_async_start(async_send, st.ev, a->n, a->count);
    /* An event without an fd does not keep the loop going by itself. */
    if (event_base_loop(base, EVLOOP_NO_EXIT_ON_EMPTY) < 0)
        bench_fail("event_base_loop failed");
    bench_async_finish(st.b);
    event_free(st.ev);
    event_base_free(base);
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
        bench_unsupported("libevent has no idle watcher");
    else if (!strcmp(a->workload, "async"))
        async_workload(a);
    else
        bench_fail("unknown workload '%s'", a->workload);
    libevent_global_shutdown();
}
