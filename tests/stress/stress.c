/*
 * The stress suite, run against one backend named as the first argument
 * (`meson test --suite stress` runs it once per backend):
 *
 *  - 10,000 io watchers (5,000 socketpairs, one read watcher on each end),
 *    traffic on all of them over several rounds, every byte and every
 *    callback counted;
 *  - 1,000,000 timers with random deadlines, some freed and some re-armed
 *    before and while they run: all fire once, in deadline order, ties in
 *    arming order;
 *  - 1,000 child processes exiting at once, watched pid by pid and by one
 *    any-child watcher: every status reported exactly once;
 *  - a storm of 100,000 signals from another process: the watcher runs after
 *    the last one, which is made to arrive in the middle of a dispatch;
 *  - a million random steps of creating and freeing watchers from inside
 *    callbacks (churn.c).
 *
 * STRESS_SCALE shrinks the sizes, STRESS_SEED repeats a run (common.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "churn.h"
#include "common.h"

/* Each test starts the last-resort hang guard with its name (common.h). */
static double test_started;

static int setup(void **state)
{
    (void)state;
    test_started = stress_mono();
    return 0;
}

/* The time is information only: no scenario passes or fails by it. */
static int teardown(void **state)
{
    (void)state;
    stress_guard_stop();
    printf("(%.2f s)\n", stress_mono() - test_started);
    return 0;
}

/* ---- 10,000 io watchers ------------------------------------------------ */

struct endpoint {
    int fd;
    int peer_fd;
    ae_watcher *w;
    unsigned long expected; /* bytes sent to this end, all rounds */
    unsigned long received;
    int calls;              /* in the current round */
    int empty_calls;        /* called, but nothing to read: never allowed here */
};

struct io_stress {
    struct endpoint *ends;
    size_t n_ends;
    size_t ends_waiting; /* ends that have not received all of this round's bytes */
    long calls_total;
};

static struct io_stress *io_ctx;

static void cb_endpoint(ae_watcher *w, int revents, void *arg)
{
    struct endpoint *e = arg;
    struct io_stress *s = io_ctx;
    if (revents != AE_READ)
        fail_msg("fd %d: revents %d, want AE_READ only", e->fd, revents);
    assert_ptr_equal(w, e->w);
    e->calls++;
    s->calls_total++;
    char buf[64];
    bool got = false;
    for (;;) {
        ssize_t n = read(e->fd, buf, sizeof buf);
        if (n > 0) {
            got = true;
            e->received += (unsigned long)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN)
            fail_msg("read fd %d: %s", e->fd, strerror(errno));
        if (n == 0)
            fail_msg("read fd %d: end of file, the peer is still open", e->fd);
        break;
    }
    if (!got)
        e->empty_calls++;
    else if (e->received == e->expected)
        s->ends_waiting--;
}

static bool io_round_done(void *ctx)
{
    return ((struct io_stress *)ctx)->ends_waiting == 0;
}

static void io_round_describe(void *ctx, char *buf, size_t len)
{
    struct io_stress *s = ctx;
    snprintf(buf, len, "%zu of %zu watchers still wait for bytes", s->ends_waiting, s->n_ends);
}

/* How many bytes round r sends to end e of pair i: every end, then only
 * the even pairs, then only the first ends, so that idle ends are checked
 * for callbacks they must not get. */
static int round_bytes(size_t i, int e, int r)
{
    bool active = r % 3 == 0 || (r % 3 == 1 && i % 2 == 0) || (r % 3 == 2 && e == 0);
    return active ? 1 + (int)((i * 31 + (size_t)e * 7 + (size_t)r) % 4) : 0;
}

/* select cannot watch an fd at or above FD_SETSIZE: creating such a watcher
 * must fail with AE_ELIMIT and a message that says so. */
static void expect_select_limit(ae_loop *loop, int fd, struct endpoint *e)
{
    ae_watcher *w = ae_io(loop, fd, AE_READ, cb_endpoint, e);
    if (w)
        fail_msg("select: ae_io on fd %d (>= FD_SETSIZE %d) succeeded", fd, FD_SETSIZE);
    assert_int_equal(ae_last_error_code(), AE_ELIMIT);
    if (!strstr(ae_last_error(), "FD_SETSIZE"))
        fail_msg("select: AE_ELIMIT message does not name FD_SETSIZE: '%s'", ae_last_error());
}

static void test_io_10000_watchers(void **state)
{
    (void)state;
    stress_guard_start("io", 240);
    const bool is_select = strcmp(stress_backend, "select") == 0;
    const size_t want_pairs = (size_t)stress_scaled(5000, 2);
    const int rounds = 6;
    long nofile = stress_raise_nofile();
    if (nofile < (long)(2 * want_pairs + 64))
        fail_msg("RLIMIT_NOFILE hard limit %ld is too low for %zu socketpairs", nofile, want_pairs);
    ae_loop *loop = stress_loop_new();
    struct io_stress s = {0};
    io_ctx = &s;
    s.ends = calloc(2 * want_pairs, sizeof *s.ends);
    assert_non_null(s.ends);
    bool limited = false;
    size_t pairs = 0;
    while (pairs < want_pairs && !limited) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
            fail_msg("socketpair %zu: %s", pairs, strerror(errno));
        struct endpoint *a = &s.ends[2 * pairs], *b = a + 1;
        *a = (struct endpoint){.fd = sv[0], .peer_fd = sv[1]};
        *b = (struct endpoint){.fd = sv[1], .peer_fd = sv[0]};
        if (is_select && sv[1] >= FD_SETSIZE) {
            /* The largest size select supports is reached: say so exactly. */
            expect_select_limit(loop, sv[1], b);
            close(sv[0]);
            close(sv[1]);
            limited = true;
            break;
        }
        for (int e = 0; e < 2; e++) {
            a[e].w = ae_io(loop, a[e].fd, AE_READ, cb_endpoint, &a[e]);
            if (!a[e].w)
                fail_msg("ae_io #%zu on fd %d: %s", 2 * pairs + (size_t)e, a[e].fd, ae_last_error());
        }
        pairs++;
    }
    if (is_select) {
        /* Also when the scale keeps the fds low: a duplicate above the limit. */
        int high = fcntl(s.ends[0].fd, F_DUPFD_CLOEXEC, FD_SETSIZE);
        assert_true(high >= FD_SETSIZE);
        expect_select_limit(loop, high, &s.ends[0]);
        close(high);
    } else {
        assert_int_equal(pairs, want_pairs);
    }
    s.n_ends = 2 * pairs;
    printf("io: %zu watchers on %zu socketpairs%s\n", s.n_ends, pairs,
           limited ? " (select: every fd below FD_SETSIZE; the next one failed with AE_ELIMIT)" : "");

    stress_phase("rounds");
    for (int r = 0; r < rounds; r++) {
        stress_progress = r;
        s.ends_waiting = 0;
        for (size_t i = 0; i < pairs; i++) {
            for (int e = 0; e < 2; e++) {
                struct endpoint *end = &s.ends[2 * i + (size_t)e];
                end->calls = 0;
                int n = round_bytes(i, e, r);
                if (n == 0)
                    continue;
                static const char bytes[4] = "abcd";
                /* One write: the bytes arrive together, so one callback drains them. */
                if (write(end->peer_fd, bytes, (size_t)n) != n)
                    fail_msg("write to fd %d: %s", end->peer_fd, strerror(errno));
                end->expected += (unsigned long)n;
                s.ends_waiting++;
            }
        }
        stress_wait_for(loop, io_round_done, io_round_describe, &s, 60, "io round");
        /* Nothing is left to read: a further iteration calls nobody. */
        long before = s.calls_total;
        assert_int_equal(ae_run_once(loop, AE_NOWAIT), 1);
        if (s.calls_total != before)
            fail_msg("round %d: %ld callbacks after every byte was read", r, s.calls_total - before);
        for (size_t k = 0; k < s.n_ends; k++) {
            struct endpoint *end = &s.ends[k];
            int want_calls = round_bytes(k / 2, (int)(k % 2), r) ? 1 : 0;
            if (end->received != end->expected || end->calls != want_calls || end->empty_calls)
                fail_msg("round %d, fd %d: received %lu of %lu bytes in %d callbacks (want %d), %d without data", r,
                         end->fd, end->received, end->expected, end->calls, want_calls, end->empty_calls);
        }
    }
    printf("io: %d rounds, %ld callbacks, every byte received, no callback without data\n", rounds, s.calls_total);
    for (size_t k = 0; k < s.n_ends; k++) {
        ae_watcher_free(s.ends[k].w);
        close(s.ends[k].fd);
    }
    assert_int_equal(ae_run_once(loop, AE_NOWAIT), 0);
    free(s.ends);
    io_ctx = NULL;
    ae_loop_free(loop);
}

/* ---- 1,000,000 timers --------------------------------------------------- */

enum { TIMER_LEVELS = 5000 };       /* distinct delays: many timers share one */
#define TIMER_QUANTUM 0.0001        /* so the delays span half a second */

enum timer_state { TIMER_ARMED, TIMER_FIRED, TIMER_FREED };

struct timer_stress {
    ae_watcher **w;
    uint16_t *level;   /* delay = level * TIMER_QUANTUM */
    uint32_t *armed_seq; /* the order in which the timers were (last) armed */
    uint8_t *state;
    size_t n;
    size_t fired;
    size_t freed;
    size_t freed_in_callbacks;
    long last; /* index of the timer that fired last, or -1 */
    stress_rng rng;
};

static struct timer_stress *timer_ctx;

static void cb_timer_order(ae_watcher *w, void *arg)
{
    struct timer_stress *s = timer_ctx;
    size_t i = (size_t)(uintptr_t)arg;
    if (s->state[i] != TIMER_ARMED)
        fail_msg("timer %zu fired, but it is %s", i, s->state[i] == TIMER_FIRED ? "fired already" : "freed");
    assert_ptr_equal(w, s->w[i]);
    if (s->last >= 0) {
        size_t l = (size_t)s->last;
        /* All were armed from one ae_now(): the deadline order is the level order. */
        if (s->level[i] < s->level[l] || (s->level[i] == s->level[l] && s->armed_seq[i] < s->armed_seq[l]))
            fail_msg("timer %zu (delay step %u, armed #%u) fired after timer %zu (delay step %u, armed #%u)", i,
                     s->level[i], s->armed_seq[i], l, s->level[l], s->armed_seq[l]);
    }
    s->last = (long)i;
    s->state[i] = TIMER_FIRED;
    s->fired++;
    stress_progress = (long)s->fired;
    ae_watcher_free(w);
    s->w[i] = NULL;
    /* Now and then free a timer that has not fired yet, often one due in this
     * same iteration: it must never fire. */
    if (stress_rng_below(&s->rng, 64) == 0) {
        size_t j = stress_rng_below(&s->rng, 2) ? i + 1 + stress_rng_below(&s->rng, 16)
                                                : stress_rng_below(&s->rng, (uint32_t)s->n);
        if (j < s->n && s->state[j] == TIMER_ARMED) {
            ae_watcher_free(s->w[j]);
            s->w[j] = NULL;
            s->state[j] = TIMER_FREED;
            s->freed++;
            s->freed_in_callbacks++;
        }
    }
}

static bool timers_done(void *ctx)
{
    struct timer_stress *s = ctx;
    return s->fired + s->freed == s->n;
}

static void timers_describe(void *ctx, char *buf, size_t len)
{
    struct timer_stress *s = ctx;
    snprintf(buf, len, "%zu fired, %zu freed, of %zu", s->fired, s->freed, s->n);
}

static void test_timers_million(void **state)
{
    (void)state;
    stress_guard_start("timers", 240);
    ae_loop *loop = stress_loop_new();
    struct timer_stress s = {.n = (size_t)stress_scaled(1000000, 100), .last = -1};
    timer_ctx = &s;
    stress_rng_init(&s.rng, 2);
    s.w = calloc(s.n, sizeof *s.w);
    s.level = calloc(s.n, sizeof *s.level);
    s.armed_seq = calloc(s.n, sizeof *s.armed_seq);
    s.state = calloc(s.n, sizeof *s.state);
    assert_true(s.w && s.level && s.armed_seq && s.state);
    uint32_t seq = 0;
    /* Everything below runs between two iterations, so ae_now() stays the
     * same and a timer's deadline is that one time plus its delay. */
    for (size_t i = 0; i < s.n; i++) {
        s.level[i] = (uint16_t)stress_rng_below(&s.rng, TIMER_LEVELS);
        s.w[i] = ae_timer(loop, s.level[i] * TIMER_QUANTUM, 0, cb_timer_order, (void *)(uintptr_t)i);
        if (!s.w[i])
            fail_msg("ae_timer #%zu: %s", i, ae_last_error());
        s.armed_seq[i] = seq++;
    }
    /* A tenth freed, and a tenth re-armed with a new delay: a re-armed timer
     * takes its place among equal deadlines by the time of its re-arming. */
    size_t rearmed = 0;
    for (size_t k = 0; k < s.n / 10; k++) {
        size_t i = stress_rng_below(&s.rng, (uint32_t)s.n);
        if (s.state[i] != TIMER_ARMED)
            continue;
        ae_watcher_free(s.w[i]);
        s.w[i] = NULL;
        s.state[i] = TIMER_FREED;
        s.freed++;
    }
    for (size_t k = 0; k < s.n / 10; k++) {
        size_t i = stress_rng_below(&s.rng, (uint32_t)s.n);
        if (s.state[i] != TIMER_ARMED)
            continue;
        s.level[i] = (uint16_t)stress_rng_below(&s.rng, TIMER_LEVELS);
        assert_int_equal(ae_timer_set(s.w[i], s.level[i] * TIMER_QUANTUM, 0), 0);
        s.armed_seq[i] = seq++;
        rearmed++;
    }
    size_t freed_before = s.freed;
    stress_phase("firing");
    stress_wait_for(loop, timers_done, timers_describe, &s, 120, "timers");
    /* One-shot timers that fired were freed by their callbacks: nothing is left. */
    assert_int_equal(ae_run_once(loop, AE_NOWAIT), 0);
    assert_int_equal(s.fired + s.freed, s.n);
    for (size_t i = 0; i < s.n; i++)
        assert_true(s.state[i] != TIMER_ARMED);
    printf("timers: %zu created, %zu freed before the run, %zu re-armed, %zu freed by other timers' callbacks, "
           "%zu fired in deadline order\n",
           s.n, freed_before, rearmed, s.freed_in_callbacks, s.fired);
    free(s.w);
    free(s.level);
    free(s.armed_seq);
    free(s.state);
    timer_ctx = NULL;
    ae_loop_free(loop);
}

/* ---- 1,000 children exiting at once ------------------------------------ */

struct child_entry {
    pid_t pid;
    int index;
    int reports;
    int bad_status;
};

struct children {
    struct child_entry *c;
    size_t n;
    size_t reported; /* reports in total, duplicates included */
    size_t unknown_pid;
    size_t sorted_by_pid; /* c[] sorted by pid, for the any-child watcher */
};

static struct children *children_ctx;

/* Child i exits with its own code, or every eighth kills itself with a
 * signal of its own: the status tells the children apart. */
static const int child_signals[] = {SIGTERM, SIGHUP, SIGUSR1, SIGUSR2, SIGALRM, SIGKILL};

static void child_expected(int i, bool *by_signal, int *value)
{
    *by_signal = i % 8 == 7;
    *value = *by_signal ? child_signals[(i / 8) % (int)(sizeof child_signals / sizeof child_signals[0])] : i % 256;
}

static bool child_status_ok(int i, int status)
{
    bool by_signal;
    int value;
    child_expected(i, &by_signal, &value);
    if (by_signal)
        return WIFSIGNALED(status) && WTERMSIG(status) == value;
    return WIFEXITED(status) && WEXITSTATUS(status) == value;
}

static void child_record(struct child_entry *c, pid_t pid, int status)
{
    struct children *s = children_ctx;
    s->reported++;
    if (pid != c->pid) {
        s->unknown_pid++;
        return;
    }
    c->reports++;
    if (!child_status_ok(c->index, status))
        c->bad_status = status ? status : -1;
}

static void cb_child_one(ae_watcher *w, pid_t pid, int status, void *arg)
{
    (void)w;
    child_record(arg, pid, status);
}

static int cmp_child_pid(const void *a, const void *b)
{
    pid_t x = ((const struct child_entry *)a)->pid, y = ((const struct child_entry *)b)->pid;
    return (x > y) - (x < y);
}

static void cb_child_any(ae_watcher *w, pid_t pid, int status, void *arg)
{
    (void)w;
    struct children *s = arg;
    struct child_entry key = {.pid = pid};
    struct child_entry *c = bsearch(&key, s->c, s->n, sizeof *s->c, cmp_child_pid);
    if (!c) {
        s->reported++;
        s->unknown_pid++;
        return;
    }
    child_record(c, pid, status);
}

static bool children_done(void *ctx)
{
    struct children *s = ctx;
    stress_progress = (long)s->reported;
    return s->reported >= s->n;
}

static void children_describe(void *ctx, char *buf, size_t len)
{
    struct children *s = ctx;
    snprintf(buf, len, "%zu of %zu children reported", s->reported, s->n);
}

static void check_process_limit(size_t n)
{
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_NPROC, &rl), 0);
    if (rl.rlim_cur != rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NPROC, &rl); /* best effort; checked below */
        assert_int_equal(getrlimit(RLIMIT_NPROC, &rl), 0);
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < n + 100)
        fail_msg("RLIMIT_NPROC (ulimit -u) is %llu: too low for %zu children at once", (unsigned long long)rl.rlim_cur,
                 n);
}

/* Fork n children that each say they are ready, then wait for the gate to
 * close, then all exit at once. any: one pid 0 watcher, else one per pid. */
static void run_children(bool any)
{
    stress_guard_start(any ? "children, one pid 0 watcher" : "children, a watcher each", 240);
    struct children s = {.n = (size_t)stress_scaled(1000, 4)};
    children_ctx = &s;
    check_process_limit(s.n);
    ae_loop *loop = stress_loop_new();
    s.c = calloc(s.n, sizeof *s.c);
    ae_watcher **ws = calloc(s.n, sizeof *ws);
    char(*scripts)[96] = calloc(s.n, sizeof *scripts);
    assert_true(s.c && ws && scripts);
    for (size_t i = 0; i < s.n; i++) {
        bool by_signal;
        int value;
        child_expected((int)i, &by_signal, &value);
        /* fd 4: one byte says "ready"; fd 3: end of file says "go". */
        if (by_signal)
            snprintf(scripts[i], sizeof scripts[i], "printf r >&4; exec 4>&-; read x <&3; kill -%d $$; exit 200",
                     value);
        else
            snprintf(scripts[i], sizeof scripts[i], "printf r >&4; exec 4>&-; read x <&3; exit %d", value);
    }
    int gate[2], ready[2];
    assert_int_equal(pipe2(gate, O_CLOEXEC), 0);
    assert_int_equal(pipe2(ready, O_CLOEXEC), 0);
    ae_watcher *any_w = NULL;
    if (any) {
        any_w = ae_child(loop, 0, cb_child_any, &s);
        if (!any_w)
            fail_msg("ae_child(0): %s", ae_last_error());
    }
    stress_phase("fork");
    for (size_t i = 0; i < s.n; i++) {
        stress_progress = (long)i;
        s.c[i].index = (int)i;
        s.c[i].pid = stress_spawn_shell(scripts[i], gate[0], ready[1]);
        if (!any) {
            /* Before the gate opens, so no exit can come first. */
            ws[i] = ae_child(loop, s.c[i].pid, cb_child_one, &s.c[i]);
            if (!ws[i])
                fail_msg("ae_child(%d): %s", (int)s.c[i].pid, ae_last_error());
        }
    }
    close(ready[1]);
    close(gate[0]);
    /* Every child is in its read: open the gate for all at once. */
    stress_phase("ready");
    size_t ready_bytes = 0;
    char buf[256];
    double deadline = stress_mono() + 60;
    for (;;) {
        struct pollfd pfd = {.fd = ready[0], .events = POLLIN};
        if (poll(&pfd, 1, 100) == 0) {
            if (stress_mono() > deadline)
                fail_msg("only %zu of %zu children said they were ready within 60 s", ready_bytes, s.n);
            continue;
        }
        ssize_t r = read(ready[0], buf, sizeof buf);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        ready_bytes += (size_t)r;
        stress_progress = (long)ready_bytes;
    }
    close(ready[0]);
    assert_int_equal(ready_bytes, s.n);
    if (any)
        qsort(s.c, s.n, sizeof *s.c, cmp_child_pid);
    close(gate[1]);
    stress_phase("reports");
    stress_wait_for(loop, children_done, children_describe, &s, 60, any ? "any-child watcher" : "child watchers");
    /* A few more iterations: no status may come twice. */
    for (int k = 0; k < 3; k++)
        assert_true(ae_run_once(loop, AE_NOWAIT) >= 0);
    assert_int_equal(s.unknown_pid, 0);
    assert_int_equal(s.reported, s.n);
    for (size_t i = 0; i < s.n; i++) {
        if (s.c[i].reports != 1 || s.c[i].bad_status)
            fail_msg("child #%d (pid %d): %d reports, status %s", s.c[i].index, (int)s.c[i].pid, s.c[i].reports,
                     s.c[i].bad_status ? "wrong" : "right");
        if (!any)
            assert_int_equal(ae_watcher_active(ws[s.c[i].index]), 0);
    }
    for (size_t i = 0; i < s.n; i++)
        ae_watcher_free(ws[i]);
    ae_watcher_free(any_w);
    /* Every child was reaped by anyevent: none is left to wait for. */
    errno = 0;
    assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
    assert_int_equal(errno, ECHILD);
    printf("children: %zu exited at once, each reported exactly once to %s\n", s.n,
           any ? "one pid 0 watcher" : "its own watcher");
    free(scripts);
    free(ws);
    free(s.c);
    children_ctx = NULL;
    ae_loop_free(loop);
}

static void test_children_per_pid(void **state)
{
    (void)state;
    run_children(false);
}

static void test_children_any(void **state)
{
    (void)state;
    run_children(true);
}

/* ---- a storm of 100,000 signals ----------------------------------------- */

/*
 * The sender sends total - 1 SIGUSR1 as fast as it can, storing the number
 * of each before sending it. The last one is made to arrive at the worst
 * moment: inside the SIGUSR1 callback, when the loop has already taken the
 * signal's pending flag for this dispatch. The callback that first sees
 * total - 1 blocks SIGUSR1 and tells the sender, which sends the last one
 * (it stays pending) and says so; the callback then unblocks SIGUSR1, and the
 * handler of that last delivery runs right there. The contract says a
 * delivery is never lost, so the loop owes one more callback: the test waits
 * for it, and fails on the guard if it never comes. Then one SIGUSR2.
 */
struct storm_shared {
    volatile long sent;        /* the number of the signal being sent */
    volatile int parent_ready; /* the parent blocks SIGUSR1: send the last one */
    volatile int last_sent;    /* kill() of the last one has returned */
    volatile int kill_errno;
};

struct storm {
    struct storm_shared *shared;
    long total;
    long calls;       /* SIGUSR1 callbacks */
    long max_seen;    /* the highest "sent" a SIGUSR1 callback saw */
    bool last_inside; /* the last delivery was handled inside a callback */
    bool last_was_pending;
    long calls_at_last;
    long usr2_calls;
    long usr2_seen;
    bool sender_done;
    int sender_status;
};

static void storm_take_last_inside(struct storm *s)
{
    sigset_t usr1, old, pending;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    assert_int_equal(sigprocmask(SIG_BLOCK, &usr1, &old), 0);
    s->shared->parent_ready = 1;
    __sync_synchronize();
    double deadline = stress_mono() + 30;
    while (!s->shared->last_sent && stress_mono() < deadline)
        sched_yield();
    if (!s->shared->last_sent)
        fail_msg("the sender did not send the last signal within 30 s");
    assert_int_equal(sigpending(&pending), 0);
    s->last_was_pending = sigismember(&pending, SIGUSR1) == 1;
    s->calls_at_last = s->calls;
    s->last_inside = true;
    /* The handler of the last delivery runs before this returns. */
    assert_int_equal(sigprocmask(SIG_SETMASK, &old, NULL), 0);
}

static void cb_storm_usr1(ae_watcher *w, int signum, void *arg)
{
    (void)w;
    struct storm *s = arg;
    assert_int_equal(signum, SIGUSR1);
    s->calls++;
    stress_progress = s->calls;
    __sync_synchronize();
    long seen = s->shared->sent;
    if (seen > s->max_seen)
        s->max_seen = seen;
    if (!s->last_inside && seen >= s->total - 1)
        storm_take_last_inside(s);
}

static void cb_storm_usr2(ae_watcher *w, int signum, void *arg)
{
    (void)w;
    struct storm *s = arg;
    assert_int_equal(signum, SIGUSR2);
    s->usr2_calls++;
    __sync_synchronize();
    s->usr2_seen = s->shared->sent;
}

static void cb_storm_sender(ae_watcher *w, pid_t pid, int status, void *arg)
{
    (void)w;
    (void)pid;
    struct storm *s = arg;
    s->sender_done = true;
    s->sender_status = status;
}

static bool storm_done(void *ctx)
{
    struct storm *s = ctx;
    return s->last_inside && s->calls > s->calls_at_last && s->usr2_calls > 0 && s->sender_done;
}

static void storm_describe(void *ctx, char *buf, size_t len)
{
    struct storm *s = ctx;
    snprintf(buf, len,
             "sender at %ld of %ld, SIGUSR1 callbacks %ld, latest saw %ld, last one %s, SIGUSR2 callbacks %ld, "
             "sender %s",
             (long)s->shared->sent, s->total, s->calls, s->max_seen,
             !s->last_inside ? "not sent yet"
                             : s->calls > s->calls_at_last ? "seen" : "LOST: no callback after its delivery",
             s->usr2_calls, s->sender_done ? "ended" : "running");
}

/* The sender, in the forked child: only kill() and shared memory. */
static void storm_send(struct storm_shared *sh, pid_t parent, long total)
{
    int code = 0;
    for (long i = 1; i < total && code == 0; i++) {
        sh->sent = i;
        __sync_synchronize();
        if (kill(parent, SIGUSR1) < 0)
            code = 1;
    }
    double deadline = stress_mono() + 30;
    while (code == 0 && !sh->parent_ready)
        if (stress_mono() > deadline)
            code = 3;
    if (code == 0) {
        sh->sent = total;
        __sync_synchronize();
        if (kill(parent, SIGUSR1) < 0)
            code = 1;
        __sync_synchronize();
        sh->last_sent = 1;
    }
    if (code == 0 && kill(parent, SIGUSR2) < 0)
        code = 2;
    if (code == 1 || code == 2)
        sh->kill_errno = errno;
    stress_exec_exit(code);
}

static void test_signal_storm(void **state)
{
    (void)state;
    stress_guard_start("signal storm", 240);
    stress_phase("storm");
    ae_loop *loop = stress_loop_new();
    struct storm s = {.total = stress_scaled(100000, 100)};
    s.shared = mmap(NULL, sizeof *s.shared, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(s.shared != MAP_FAILED);
    memset((void *)s.shared, 0, sizeof *s.shared);
    ae_watcher *usr1 = ae_signal(loop, SIGUSR1, cb_storm_usr1, &s);
    ae_watcher *usr2 = ae_signal(loop, SIGUSR2, cb_storm_usr2, &s);
    assert_true(usr1 && usr2);
    pid_t parent = getpid();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        storm_send(s.shared, parent, s.total);
    ae_watcher *sender = ae_child(loop, pid, cb_storm_sender, &s);
    assert_non_null(sender);
    stress_wait_for(loop, storm_done, storm_describe, &s, 60, "signal storm");
    if (!WIFEXITED(s.sender_status) || WEXITSTATUS(s.sender_status) != 0)
        fail_msg("sender status %#x (kill: %s)", s.sender_status, strerror(s.shared->kill_errno));
    /* The last signal really was pending while blocked, so its handler ran
     * inside the callback, after the loop had taken the pending flag. */
    assert_true(s.last_was_pending);
    assert_int_equal(s.max_seen, s.total);
    /* Deliveries coalesce, so fewer callbacks than signals; never more. */
    assert_true(s.calls >= 2 && s.calls <= s.total);
    assert_int_equal(s.usr2_calls, 1);
    assert_int_equal(s.usr2_seen, s.total);
    printf("signals: %ld SIGUSR1 sent, %ld callbacks; the last one, delivered inside a callback, got its own "
           "callback; SIGUSR2 after them: 1 callback\n",
           s.total, s.calls);
    ae_watcher_free(usr1);
    ae_watcher_free(usr2);
    ae_watcher_free(sender);
    munmap((void *)s.shared, sizeof *s.shared);
    ae_loop_free(loop);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        stress_backend = argv[1];
    unsetenv("ANYEVENT_BACKEND");
    stress_init();
    const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
        T(test_io_10000_watchers),
        T(test_children_per_pid),
        T(test_children_any),
        T(test_signal_storm),
        T(test_timers_million),
        T(test_churn_random_steps),
#undef T
    };
    char group[64];
    snprintf(group, sizeof group, "stress-%s", stress_backend);
    return _cmocka_run_group_tests(group, tests, sizeof tests / sizeof tests[0], NULL, NULL);
}
