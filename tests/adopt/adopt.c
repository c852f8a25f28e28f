/*
 * The adoption suite: a host program owns and runs its native loop (libev,
 * libevent or libuv, see host.h) with watchers of its own, and a library on
 * anyevent runs its watchers inside that loop through ae_loop_adopt(). One
 * source, built once per library, each in its own executable (Debian's
 * libev.so also defines libevent's names: never both in one program).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "anyevent.h"
#include "host.h"

static int setup(void **state)
{
    (void)state;
    alarm(60); /* a hang ends the process, and the test fails */
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    alarm(0);
    return 0;
}

static ae_loop *adopt(void *native)
{
    ae_loop *loop = ae_loop_adopt(host_backend(), native);
    if (!loop)
        fail_msg("ae_loop_adopt(%s): %s", host_backend(), ae_last_error());
    assert_string_equal(ae_loop_backend(loop), host_backend());
    assert_ptr_equal(ae_loop_native(loop), native);
    return loop;
}

static void test_adopt_errors(void **state)
{
    (void)state;
    void *native = host_loop_new();
    assert_null(ae_loop_adopt(host_backend(), NULL));
    assert_int_equal(ae_last_error_code(), AE_EINVAL);
    assert_null(ae_loop_adopt(NULL, native));
    assert_int_equal(ae_last_error_code(), AE_EINVAL);
    assert_null(ae_loop_adopt("poll", native));
    assert_int_equal(ae_last_error_code(), AE_ENOTSUP);
    assert_null(ae_loop_adopt("no-such-loop", native));
    assert_int_equal(ae_last_error_code(), AE_ENOENT);
    ae_loop *own = ae_loop_new("poll");
    assert_null(ae_loop_native(own));
    assert_int_equal(ae_last_error_code(), AE_ENOTSUP);
    ae_loop_free(own);
    host_loop_free(native);
}

/* A library's jobs, each on one watcher kind, counted with begin/end. */
struct jobs {
    ae_loop *loop;
    ae_cv *all_done;
    int pipe[2];
    int ticks, io_reads, idles, signals, children;
    int child_status;
    int done_cb;
    double t0;
};

static void job_done(struct jobs *j, ae_watcher *w)
{
    ae_watcher_free(w);
    assert_int_equal(ae_cv_end(j->all_done), 0);
}

static void on_tick(ae_watcher *w, void *arg)
{
    struct jobs *j = arg;
    if (++j->ticks == 3) {
        job_done(j, w);
        kill(getpid(), SIGUSR1); /* the signal job */
    }
}

static void on_read(ae_watcher *w, int revents, void *arg)
{
    struct jobs *j = arg;
    assert_int_equal(revents, AE_READ);
    char c;
    assert_int_equal(read(j->pipe[0], &c, 1), 1);
    j->io_reads++;
    job_done(j, w);
}

static void on_idle(ae_watcher *w, void *arg)
{
    struct jobs *j = arg;
    if (++j->idles == 5)
        job_done(j, w);
}

static void on_signal(ae_watcher *w, int signum, void *arg)
{
    struct jobs *j = arg;
    assert_int_equal(signum, SIGUSR1);
    j->signals++;
    job_done(j, w);
}

static void on_child(ae_watcher *w, pid_t pid, int status, void *arg)
{
    (void)pid;
    struct jobs *j = arg;
    j->children++;
    j->child_status = status;
    job_done(j, w);
}

static void on_all_done(ae_cv *cv, void *arg)
{
    (void)cv;
    ((struct jobs *)arg)->done_cb++;
}

static pid_t spawn_exit(int code)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char cmd[64];
        snprintf(cmd, sizeof cmd, "exec >/dev/null 2>&1; sleep 0.02; exit %d", code);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* A library's "start" function: it only knows the ae_loop it was given. */
static void library_start(struct jobs *j)
{
    ae_loop *loop = j->loop;
    j->all_done = ae_cv_new(loop);
    ae_cv_cb(j->all_done, on_all_done, j);
    assert_int_equal(pipe(j->pipe), 0);
    assert_int_equal(write(j->pipe[1], "x", 1), 1);
    for (int i = 0; i < 5; i++)
        ae_cv_begin(j->all_done);
    assert_non_null(ae_timer(loop, 0.01, 0.01, on_tick, j));
    assert_non_null(ae_io(loop, j->pipe[0], AE_READ, on_read, j));
    assert_non_null(ae_idle(loop, on_idle, j));
    assert_non_null(ae_signal(loop, SIGUSR1, on_signal, j));
    assert_non_null(ae_child(loop, spawn_exit(4), on_child, j));
}

static void test_adopt_watchers_fire_in_host_loop(void **state)
{
    (void)state;
    void *native = host_loop_new();
    int host_fired = 0;
    host_timer(native, 0.05, &host_fired);
    struct jobs j = {.loop = adopt(native)};
    double t0 = ae_now(j.loop);
    library_start(&j);
    /* The host runs its own loop; it returns once neither its timer nor
     * anyevent's watchers keep it alive: every job frees its watcher. */
    host_run(native);
    assert_int_equal(host_fired, 1);
    assert_int_equal(j.ticks, 3);
    assert_int_equal(j.io_reads, 1);
    assert_int_equal(j.idles, 5);
    assert_int_equal(j.signals, 1);
    assert_int_equal(j.children, 1);
    assert_true(WIFEXITED(j.child_status));
    assert_int_equal(WEXITSTATUS(j.child_status), 4);
    assert_int_equal(j.done_cb, 1);
    assert_int_equal(ae_cv_ready(j.all_done), 1);
    assert_true(ae_now(j.loop) - t0 >= 0.03 - 1e-3); /* the loop time moved */
    ae_loop_free(j.loop);
    close(j.pipe[0]);
    close(j.pipe[1]);
    /* The native loop is intact after ae_loop_free. */
    host_timer(native, 0.001, &host_fired);
    host_run(native);
    assert_int_equal(host_fired, 2);
    host_loop_free(native);
}

static void never_timer(ae_watcher *w, void *arg)
{
    (void)w;
    (void)arg;
    fail_msg("a timer of a freed loop ran");
}
static void never_io(ae_watcher *w, int revents, void *arg)
{
    (void)w;
    (void)revents;
    (void)arg;
    fail_msg("an io watcher of a freed loop ran");
}
static void never_signal(ae_watcher *w, int signum, void *arg)
{
    (void)w;
    (void)signum;
    (void)arg;
    fail_msg("a signal watcher of a freed loop ran");
}
static void never_idle(ae_watcher *w, void *arg)
{
    (void)w;
    (void)arg;
    fail_msg("an idle watcher of a freed loop ran");
}

static void test_adopt_free_with_live_watchers(void **state)
{
    (void)state;
    void *native = host_loop_new();
    ae_loop *loop = adopt(native);
    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_int_equal(write(p[1], "x", 1), 1);
    int n = 0;
    ae_timer(loop, 100, 0, never_timer, NULL);
    ae_io(loop, p[0], AE_READ, never_io, NULL);
    ae_signal(loop, SIGUSR2, never_signal, NULL);
    ae_idle(loop, never_idle, NULL);
    ae_loop_free(loop); /* nothing of anyevent's may run or linger */
    host_timer(native, 0.001, &n);
    host_run(native);
    assert_int_equal(n, 1);
    close(p[0]);
    close(p[1]);
    host_loop_free(native);
}

static void on_send(ae_watcher *w, void *arg)
{
    ae_watcher_free(w);
    ae_cv_send(arg, arg);
}

/* anyevent may also drive an adopted loop itself, as ae_cv_recv does. */
static void test_adopt_recv_drives_native_loop(void **state)
{
    (void)state;
    void *native = host_loop_new();
    ae_loop *loop = adopt(native);
    int host_fired = 0;
    host_timer(native, 0.001, &host_fired);
    ae_cv *cv = ae_cv_new(loop);
    ae_timer(loop, 0.02, 0, on_send, cv);
    void *v = NULL;
    assert_int_equal(ae_cv_recv(cv, &v), 0);
    assert_ptr_equal(v, cv);
    assert_int_equal(host_fired, 1); /* the host's watcher ran meanwhile */
    ae_loop_free(loop);
    host_loop_free(native);
}

struct nested {
    ae_loop *loop;
    int rc;
    int done;
};

static void on_nested(ae_watcher *w, void *arg)
{
    struct nested *n = arg;
    ae_watcher_free(w);
    ae_cv *cv = ae_cv_new(n->loop);
    ae_watcher *sender = ae_timer(n->loop, 0.005, 0, on_send, cv);
    /* Called from inside the host's run: works where the native loop can
     * run recursively (libev), else a clear AE_ENOTSUP, never a hang. */
    n->rc = ae_cv_recv(cv, NULL);
    n->done = 1;
    if (n->rc != 0)
        ae_watcher_free(sender); /* it never ran, and the condvar goes now */
    ae_cv_free(cv);
}

static void test_adopt_recv_inside_host_callback(void **state)
{
    (void)state;
    void *native = host_loop_new();
    struct nested n = {.loop = adopt(native), .rc = 1};
    ae_timer(n.loop, 0.001, 0, on_nested, &n);
    host_run(native);
    assert_int_equal(n.done, 1);
    assert_true(n.rc == 0 || n.rc == AE_ENOTSUP);
    if (strcmp(host_backend(), "libev") == 0)
        assert_int_equal(n.rc, 0);
    ae_loop_free(n.loop);
    host_loop_free(native);
}

static void on_free_loop(ae_watcher *w, void *arg)
{
    (*(int *)arg)++;
    ae_loop_free(ae_watcher_loop(w)); /* from inside the host's run */
}

static void test_adopt_free_from_callback(void **state)
{
    (void)state;
    void *native = host_loop_new();
    ae_loop *loop = adopt(native);
    int n = 0, host_fired = 0;
    ae_timer(loop, 0.001, 0, on_free_loop, &n);
    ae_timer(loop, 0.001, 0, on_free_loop, &n); /* must not run: the loop is gone */
    ae_timer(loop, 50, 0, never_timer, NULL);
    host_timer(native, 0.02, &host_fired);
    host_run(native);
    assert_int_equal(n, 1);
    assert_int_equal(host_fired, 1);
    host_loop_free(native);
}

static void on_closed_free_loop(ae_watcher *w, int revents, void *arg)
{
    assert_int_equal(revents, AE_ERROR);
    (*(int *)arg)++;
    ae_loop_free(ae_watcher_loop(w)); /* from inside the backend's fd check */
}

static void on_give_up(ae_watcher *w, void *arg)
{
    (void)arg;
    ae_loop_free(ae_watcher_loop(w));
}

static void test_adopt_closed_fd_then_free(void **state)
{
    (void)state;
    void *native = host_loop_new();
    ae_loop *loop = adopt(native);
    int p[2];
    assert_int_equal(pipe(p), 0);
    int calls = 0;
    ae_io(loop, p[0], AE_READ, on_closed_free_loop, &calls);
    ae_timer(loop, 0.2, 0, on_give_up, NULL);
    close(p[0]); /* before the host's loop registers it */
    host_run(native);
    /* libev and libuv check changed fds before polling; libevent registers
     * at once and cannot see the close in a loop the host runs. */
    assert_int_equal(calls, strcmp(host_backend(), "libevent") == 0 ? 0 : 1);
    close(p[1]);
    host_loop_free(native);
}

struct busy {
    ae_watcher *io, *idle;
    int io_calls, idle_calls, idle_while_io;
};

static void on_writable(ae_watcher *w, int revents, void *arg)
{
    (void)w;
    (void)revents;
    ((struct busy *)arg)->io_calls++;
}

static void on_idle_count(ae_watcher *w, void *arg)
{
    struct busy *b = arg;
    /* Before the host's loop has polled the fd at all, anyevent cannot know
     * it is ready: only idle calls once io is flowing count. */
    if (b->io && b->io_calls > 0)
        b->idle_while_io++;
    if (!b->io && ++b->idle_calls == 3) /* and it runs once io has stopped */
        ae_watcher_free(w);
}

static void on_stop_io(ae_watcher *w, void *arg)
{
    struct busy *b = arg;
    ae_watcher_free(b->io);
    b->io = NULL;
    ae_watcher_free(w);
}

static void test_adopt_idle_waits_for_io(void **state)
{
    (void)state;
    void *native = host_loop_new();
    ae_loop *loop = adopt(native);
    int p[2];
    assert_int_equal(pipe(p), 0);
    struct busy b = {0};
    b.io = ae_io(loop, p[1], AE_WRITE, on_writable, &b); /* always ready */
    b.idle = ae_idle(loop, on_idle_count, &b);
    ae_timer(loop, 0.05, 0, on_stop_io, &b);
    host_run(native);
    assert_true(b.io_calls > 0);
    assert_int_equal(b.idle_while_io, 0); /* never while io kept coming */
    assert_int_equal(b.idle_calls, 3);
    ae_loop_free(loop);
    close(p[0]);
    close(p[1]);
    host_loop_free(native);
}

/* ---- async, stop/start, ref/unref and hooks in an adopted loop ---------- */

struct adopt_async {
    ae_watcher *w;
    int calls;
    int foreign; /* callbacks on another thread than the host's */
    pthread_t host, sender;
};

static void *adopt_async_send_later(void *arg)
{
    struct adopt_async *a = arg;
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
    ae_async_send(a->w);
    return NULL;
}

static void on_adopt_async(ae_watcher *w, void *arg)
{
    struct adopt_async *a = arg;
    a->calls++;
    if (!pthread_equal(pthread_self(), a->host))
        a->foreign++;
    ae_watcher_free(w); /* nothing of ours is left: the host's run ends */
}

/* A send from another thread wakes the host's loop; the callback runs in
 * it, on the host's thread. */
static void test_adopt_async_from_thread(void **state)
{
    (void)state;
    void *native = host_loop_new();
    ae_loop *loop = adopt(native);
    struct adopt_async a = {.host = pthread_self()};
    a.w = ae_async(loop, on_adopt_async, &a);
    assert_non_null(a.w);
    assert_int_equal(pthread_create(&a.sender, NULL, adopt_async_send_later, &a), 0);
    host_run(native);
    assert_int_equal(pthread_join(a.sender, NULL), 0);
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.foreign, 0);
    ae_loop_free(loop);
    host_loop_free(native);
}

static void on_adopt_tick(ae_watcher *w, void *arg)
{
    (void)w;
    (*(int *)arg)++;
}

/* A stopped timer leaves nothing armed in the host's loop; started, it
 * fires there. An unref'd one does not keep a condvar wait alive. */
static void test_adopt_stop_start_unref(void **state)
{
    (void)state;
    void *native = host_loop_new();
    ae_loop *loop = adopt(native);
    int ticks = 0, host_fired = 0;
    ae_watcher *t = ae_timer(loop, 0.01, 0, on_adopt_tick, &ticks);
    assert_int_equal(ae_watcher_stop(t), 0);
    host_timer(native, 0.03, &host_fired);
    host_run(native);
    assert_int_equal(host_fired, 1);
    assert_int_equal(ticks, 0);
    assert_int_equal(ae_watcher_start(t), 0);
    host_run(native);
    assert_int_equal(ticks, 1);
    assert_int_equal(ae_watcher_start(t), 0);
    ae_watcher_unref(t);
    ae_cv *cv = ae_cv_new(loop);
    assert_int_equal(ae_cv_recv(cv, NULL), AE_EDEADLK);
    ae_watcher_ref(t);
    ae_cv_free(cv);
    host_run(native);
    assert_int_equal(ticks, 2);
    ae_watcher_free(t);
    ae_loop_free(loop);
    host_loop_free(native);
}

/* ---- loop hooks in the host's iterations ---------------------------------- */

struct hooklog {
    char log[512]; /* P prepare, C check, W io, T timer */
    size_t n;
    ae_loop *loop;
    ae_watcher *io;
    int free_in_check; /* a check hook frees the loop at this call (1-based) */
    int checks;
};

static void hooklog_add(struct hooklog *h, char c)
{
    if (h->n < sizeof h->log - 1)
        h->log[h->n++] = c;
    h->log[h->n] = '\0';
}

static void on_hook_prepare(ae_watcher *w, void *arg)
{
    (void)w;
    hooklog_add(arg, 'P');
}

static void on_hook_check(ae_watcher *w, void *arg)
{
    (void)w;
    struct hooklog *h = arg;
    hooklog_add(h, 'C');
    if (++h->checks == h->free_in_check)
        ae_loop_free(h->loop); /* from the host's iteration: the backend touches nothing after */
}

static void on_hook_io(ae_watcher *w, int revents, void *arg)
{
    (void)w;
    (void)revents;
    hooklog_add(arg, 'W');
}

static void on_hook_timer(ae_watcher *w, void *arg)
{
    (void)w;
    hooklog_add(arg, 'T');
}

static size_t count_of(const char *s, char c)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == c;
    return n;
}

/* Each host iteration that dispatched W: a prepare before it, and between
 * it and the next W one check, then one prepare (GLib runs an iteration's
 * check hooks as the host begins the next one, before its prepare hooks). */
static void assert_iterations(const char *log, int iterations)
{
    assert_int_equal(count_of(log, 'W'), iterations);
    const char *w = strchr(log, 'W');
    assert_non_null(w);
    assert_non_null(memchr(log, 'P', (size_t)(w - log)));
    for (const char *next; (next = strchr(w + 1, 'W')); w = next) {
        char between[64];
        size_t len = (size_t)(next - w - 1);
        assert_true(len < sizeof between);
        memcpy(between, w + 1, len);
        between[len] = '\0';
        if (strcmp(between, "CP") != 0)
            fail_msg("between two host iterations' io: \"%s\", want \"CP\" (log %s)", between, log);
    }
}

/* Hooks whose loop the host runs: libev's ev_prepare and ev_check, libuv's
 * uv_prepare_t and uv_check_t, a GSource's prepare. libevent 2.1 has no
 * such point: refused there with the reason. */
static void test_adopt_hooks_in_host_loop(void **state)
{
    (void)state;
    void *native = host_loop_new();
    ae_loop *loop = adopt(native);
    struct hooklog h = {.loop = loop};
    if (strcmp(host_backend(), "libevent") == 0) {
        assert_null(ae_prepare(loop, on_hook_prepare, &h));
        assert_int_equal(ae_last_error_code(), AE_ENOTSUP);
        assert_non_null(strstr(ae_last_error(), "no native prepare and check"));
        assert_null(ae_check(loop, on_hook_check, &h));
        assert_int_equal(ae_last_error_code(), AE_ENOTSUP);
        ae_loop_free(loop);
        host_loop_free(native);
        return;
    }
    ae_watcher *prepare = ae_prepare(loop, on_hook_prepare, &h);
    ae_watcher *check = ae_check(loop, on_hook_check, &h);
    if (!prepare || !check)
        fail_msg("hooks on an adopted %s loop: %s", host_backend(), ae_last_error());

    /* Hooks alone keep nothing running: the host's run returns. */
    host_run(native);

    /* Three host iterations, each with io ready (a pipe's write end). */
    int p[2];
    assert_int_equal(pipe(p), 0);
    h.n = 0;
    h.io = ae_io(loop, p[1], AE_WRITE, on_hook_io, &h);
    assert_non_null(h.io);
    for (int i = 0; i < 3; i++)
        host_run_once(native);
    assert_iterations(h.log, 3);

    /* An iteration the core runs on the adopted loop runs each hook once,
     * not once more through the native watchers. */
    size_t prepares = count_of(h.log, 'P');
    int checks = h.checks;
    assert_true(ae_run_once(loop, AE_NOWAIT) >= 0);
    assert_int_equal(count_of(h.log, 'P'), prepares + 1);
    assert_int_equal(h.checks, checks + 1);
    ae_watcher_free(h.io);

    /* A timer of ours in the host's loop: a check hook runs after it. */
    h.n = 0;
    ae_timer(loop, 0.01, 0, on_hook_timer, &h);
    host_run(native);
    const char *t = strchr(h.log, 'T');
    if (!t || !strchr(t, 'C'))
        fail_msg("no check hook after the timer: %s", h.log);

    /* Stopped hooks are not called; started again, they are. */
    assert_int_equal(ae_watcher_stop(prepare), 0);
    assert_int_equal(ae_watcher_stop(check), 0);
    h.n = 0;
    h.io = ae_io(loop, p[1], AE_WRITE, on_hook_io, &h);
    host_run_once(native);
    host_run_once(native);
    assert_string_equal(h.log, "WW");
    assert_int_equal(ae_watcher_start(prepare), 0);
    assert_int_equal(ae_watcher_start(check), 0);
    h.n = 0;
    for (int i = 0; i < 3; i++)
        host_run_once(native);
    assert_iterations(h.log, 3);

    /* A check hook frees the loop from the host's iteration; the host's
     * loop goes on without it. */
    h.free_in_check = h.checks + 1;
    int host_fired = 0;
    host_timer(native, 0.02, &host_fired);
    host_run(native);
    assert_int_equal(h.checks, h.free_in_check);
    assert_int_equal(host_fired, 1);
    close(p[0]);
    close(p[1]);
    host_loop_free(native);
}

/* A child of fork() goes on with the adopted loop, as a preforking server's
 * workers do, and the library finds the fork itself: libev's
 * EVFLAG_FORKCHECK, where the host calls nothing (a host that calls
 * ev_loop_fork, event_reinit or uv_loop_fork is ae-conformance's
 * test_adopt_fork_io_reused_fd, on every plugin). Three times an fd of ours is
 * paused, closed, its number taken by a new pipe and resumed before the
 * loop polls (the first time before the child's loop has run): its byte
 * must be reported, never AE_ERROR (the libev plugin asks libev's own epoll
 * set whether the number still names the file it registered, and that set
 * is the child's only once libev has renewed it, at a number freed below
 * the old one meanwhile). The parent's watcher is unaffected. */
struct fork_reader {
    int fd;
    int calls;
    int errors;
};

static void on_fork_read(ae_watcher *w, int revents, void *arg)
{
    (void)w;
    struct fork_reader *r = arg;
    char c;
    if (revents & AE_ERROR)
        r->errors++;
    else if (read(r->fd, &c, 1) == 1)
        r->calls++;
}

/* A new pipe whose read end has the number fd (closing what fd was);
 * returns its write end, or -1. */
static int pipe_at(int fd)
{
    int p[2];
    if (pipe(p) < 0)
        return -1;
    if (p[0] != fd) {
        if (dup2(p[0], fd) < 0)
            return -1;
        close(p[0]);
    }
    return p[1];
}

/* Up to three iterations, until r has one more byte; the step that failed, or 0. */
static int fork_read_one(ae_loop *loop, struct fork_reader *r, int wr, int step)
{
    int before = r->calls;
    if (write(wr, "x", 1) != 1)
        return step;
    for (int i = 0; i < 3 && r->calls == before; i++)
        if (ae_run_once(loop, AE_NOWAIT) < 0)
            return step + 1;
    if (r->errors)
        return step + 2; /* an open fd reported as closed */
    return r->calls == before + 1 ? 0 : step + 3;
}

/* The child's part: returns 0 or the step that failed (its exit status). */
static int fork_child_rearms(void *native, ae_loop *loop, ae_watcher *w, struct fork_reader *r, int *wr, int hole)
{
    for (int round = 0; round < 3; round++) {
        if (ae_io_set(w, 0) != 0)
            return 1;
        close(*wr);
        if ((*wr = pipe_at(r->fd)) < 0)
            return 2;
        if (ae_io_set(w, AE_READ) != 0)
            return 3;
        if (round == 0)
            close(hole); /* kernel state the child's library renews now may take this lower number */
        int failed = fork_read_one(loop, r, *wr, 10 + 10 * round);
        if (failed)
            return failed;
        if (ae_io_set(w, 0) != 0 || ae_io_set(w, AE_READ) != 0)
            return 4; /* the same file again: paused and resumed */
        if ((failed = fork_read_one(loop, r, *wr, 15 + 10 * round)) != 0)
            return failed;
    }
    ae_watcher_free(w);
    ae_loop_free(loop);
    host_loop_free(native); /* the child's copy: under valgrind, a leak fails the child */
    close(r->fd);
    close(*wr);
    return 0;
}

static void test_adopt_forkcheck_child_keeps_loop(void **state)
{
    (void)state;
    int hole = open("/dev/null", O_RDONLY); /* below the native loop's fds: libev's new set may take it */
    assert_true(hole >= 0);
    void *native = host_loop_new_forkcheck();
    if (!native) {
        close(hole); /* no such loop in this library */
        return;
    }
    ae_loop *loop = adopt(native);
    int p[2];
    assert_int_equal(pipe(p), 0);
    struct fork_reader r = {.fd = p[0]};
    ae_watcher *w = ae_io(loop, p[0], AE_READ, on_fork_read, &r);
    assert_non_null(w);
    assert_int_equal(fork_read_one(loop, &r, p[1], 1), 0); /* registered in the state the child shares */
    assert_int_equal(ae_io_set(w, 0), 0);
    assert_int_equal(ae_io_set(w, AE_READ), 0);

    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(fork_child_rearms(native, loop, w, &r, &p[1], hole));
    close(hole);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("the child failed at step %d (status %#x)", WIFEXITED(status) ? WEXITSTATUS(status) : -1, status);

    assert_int_equal(fork_read_one(loop, &r, p[1], 1), 0);
    ae_watcher_free(w);
    ae_loop_free(loop);
    close(p[0]);
    close(p[1]);
    host_loop_free(native);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
        T(test_adopt_errors),
        T(test_adopt_watchers_fire_in_host_loop),
        T(test_adopt_free_with_live_watchers),
        T(test_adopt_recv_drives_native_loop),
        T(test_adopt_recv_inside_host_callback),
        T(test_adopt_free_from_callback),
        T(test_adopt_closed_fd_then_free),
        T(test_adopt_idle_waits_for_io),
        T(test_adopt_async_from_thread),
        T(test_adopt_stop_start_unref),
        T(test_adopt_hooks_in_host_loop),
        T(test_adopt_forkcheck_child_keeps_loop),
#undef T
    };
    char group[64];
    snprintf(group, sizeof group, "adopt[%s]", host_backend());
    return cmocka_run_group_tests_name(group, tests, NULL, NULL);
}
