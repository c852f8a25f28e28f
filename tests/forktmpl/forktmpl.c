/*
 * Process templates (anyevent/fork.h) on one backend (the first argument):
 * each semantic rule of docs/fork.md, with fds counted in /proc/self/fd of
 * both processes and zombies looked for after every test.
 *
 * Built with FORKTMPL_HOST (and tests/adopt/host_<library>.c), every test
 * runs in a loop adopted from a host's own native loop, and the host runs
 * it: waits and "run until everything is reaped" are the host's own run
 * calls, never ae_run() (but for one test that frees the loop inside a
 * callback, where anyevent drives the adopted loop).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "anyevent.h"
#include "anyevent/fork.h"
#ifdef FORKTMPL_HOST
#include "host.h"
static void *native; /* the host's own loop, that loop is adopted from */
#endif

static const char *backend;
/* ANYEVENT_FORK_PORTABLE: templates fork() and forward their forks'
 * statuses; the forks are not children of this program. */
static bool portable;
static ae_loop *loop;
static int fds_before;

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n - 1;
}

/* No child of ours is a zombie nobody reaped. */
static void assert_no_zombie(void)
{
    siginfo_t info = {0};
    int rc = waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT);
    if (rc == 0 && info.si_pid != 0) {
        char path[64], comm[64] = "?";
        snprintf(path, sizeof path, "/proc/%d/comm", (int)info.si_pid);
        FILE *f = fopen(path, "r");
        if (f && fgets(comm, sizeof comm, f))
            comm[strcspn(comm, "\n")] = 0;
        if (f)
            fclose(f);
        fail_msg("zombie %d (%s), status %d, code %d", (int)info.si_pid, comm, info.si_status, info.si_code);
    }
}

static ae_loop *new_loop(void)
{
#ifdef FORKTMPL_HOST
    native = host_loop_new();
    assert_non_null(native);
    ae_loop *l = ae_loop_adopt(host_backend(), native);
    if (!l)
        fail_msg("ae_loop_adopt(%s): %s", host_backend(), ae_last_error());
    return l;
#else
    return ae_loop_new(backend);
#endif
}

static void free_host(void)
{
#ifdef FORKTMPL_HOST
    host_loop_free(native);
    native = NULL;
#endif
}

/* Run the loop until nothing keeps it going: by the host, when adopted. */
static int run_all(void)
{
#ifdef FORKTMPL_HOST
    host_run(native);
    return 0;
#else
    return ae_run(loop);
#endif
}

static int setup(void **state)
{
    (void)state;
    alarm(60); /* a hang ends the process, and the test fails */
    fds_before = count_fds();
    loop = new_loop();
    assert_non_null(loop);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    alarm(0);
    ae_loop_free(loop);
    loop = NULL;
    free_host();
    assert_no_zombie();
    assert_int_equal(count_fds(), fds_before);
    return 0;
}

/* ---- waiting ------------------------------------------------------------- */

struct outcome {
    ae_cv *cv;
    int sock;
    pid_t pid;
    char error[512];
    int status;
    bool free_in_cb, loop_free_in_cb;
    struct child_seen *seen; /* an ae_child of ours on the pid, made in the run callback */
    ae_watcher *seen_w;
};

struct child_seen {
    ae_cv *cv;
    int status;
};

static void child_cb(ae_watcher *w, pid_t pid, int status, void *arg)
{
    (void)w, (void)pid;
    struct child_seen *c = arg;
    c->status = status;
    ae_cv_send(c->cv, NULL);
}

static void guard_cb(ae_watcher *w, void *arg)
{
    (void)w;
    ae_cv_croak(arg, "timed out");
}

/* Run the loop until cv is ready (10 s at most). */
static void wait_cv(ae_cv *cv)
{
    ae_watcher *guard = ae_timer(loop, 10, 0, guard_cb, cv);
#ifdef FORKTMPL_HOST
    while (!ae_cv_ready(cv))
        host_run_once(native);
#endif
    int rc = ae_cv_recv(cv, NULL);
    if (loop)
        ae_watcher_free(guard);
    assert_int_equal(rc, 0);
}

static void run_cb(ae_fork *p, int sock, void *arg)
{
    struct outcome *o = arg;
    o->sock = sock;
    o->pid = ae_fork_pid(p);
    snprintf(o->error, sizeof o->error, "%s", ae_fork_error(p) ? ae_fork_error(p) : "");
    if (sock < 0)
        assert_non_null(ae_fork_error(p));
    ae_cv_send(o->cv, NULL);
    if (o->seen && sock >= 0)
        o->seen_w = ae_child(loop, ae_fork_pid(p), child_cb, o->seen);
    if (o->free_in_cb) {
        ae_fork_free(p);
        if (sock >= 0)
            close(sock);
    }
    if (o->loop_free_in_cb) {
        ae_loop_free(loop);
        if (sock >= 0)
            close(sock);
    }
}

static void run(ae_fork *p, const char *symbol, struct outcome *o)
{
    o->cv = ae_cv_new(loop);
    o->sock = -2;
    assert_int_equal(ae_fork_run(p, symbol, run_cb, o), 0);
    assert_int_equal(o->sock, -2); /* never from inside the call */
    if (o->loop_free_in_cb) {
        ae_run(loop); /* returns once the free is done */
        loop = NULL;
        return;
    }
    wait_cv(o->cv);
    ae_cv_free(o->cv);
}

static void exit_cb(ae_fork *p, int status, void *arg)
{
    (void)p;
    struct outcome *o = arg;
    o->status = status;
    ae_cv_send(o->cv, NULL);
}

static int wait_exit(ae_fork *p)
{
    struct outcome o = {.cv = ae_cv_new(loop)};
    ae_fork_on_exit(p, exit_cb, &o);
    wait_cv(o.cv);
    ae_cv_free(o.cv);
    return o.status;
}

/* Everything the process writes, to EOF. */
static char *read_all(int sock)
{
    static char buf[8192];
    size_t len = 0;
    for (;;) {
        struct pollfd pfd = {sock, POLLIN, 0};
        int n = poll(&pfd, 1, 10000);
        if (n < 0 && errno == EINTR) /* SIGCHLD: the core catches it */
            continue;
        assert_int_equal(n, 1);
        ssize_t r = read(sock, buf + len, sizeof buf - 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        assert_true(r >= 0);
        if (r == 0)
            break;
        len += (size_t)r;
    }
    buf[len] = 0;
    return buf;
}

/* from_template: the process was forked by a template, so its parent is
 * this program (Linux: CLONE_PARENT) or, on the portable path, the template. */
static void expect_report(int sock, int init, const char *items, bool from_template)
{
    char want[512], got[512];
    snprintf(got, sizeof got, "%s", read_all(sock));
    if (portable && from_template) {
        int ppid = 0, n = 0;
        char *at = strstr(got, "ppid=");
        assert_non_null(at);
        assert_int_equal(sscanf(at, "ppid=%d%n", &ppid, &n), 1);
        assert_int_not_equal(ppid, (int)getpid());
        memmove(at + 5, at + n, strlen(at + n) + 1); /* "ppid=" then the rest */
        snprintf(want, sizeof want, "init=%d ppid= items=%s extra=0 missing=0", init, items);
    } else {
        snprintf(want, sizeof want, "init=%d ppid=%d items=%s extra=0 missing=0", init, (int)getpid(), items);
    }
    assert_string_equal(got, want);
}

/* ---- running ------------------------------------------------------------- */

static void check_sock_flags(int sock)
{
    assert_true(fcntl(sock, F_GETFL) & O_NONBLOCK);
    assert_true(fcntl(sock, F_GETFD) & FD_CLOEXEC);
}

static void test_new_run(void **state)
{
    (void)state;
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    ae_fork *p = ae_fork_new(loop);
    assert_non_null(p);
    assert_int_equal(ae_fork_require(p, WORKER), 0);
    assert_int_equal(ae_fork_send_arg(p, "a", 1), 0);
    assert_int_equal(ae_fork_send_fd(p, pfd[1]), 0);
    assert_int_equal(ae_fork_call(p, "t_init"), 0);
    assert_int_equal(ae_fork_send_arg(p, "b", 1), 0);
    assert_int_equal(ae_fork_send_arg(p, "", 0), 0);
    struct outcome o = {0};
    run(p, "t_report", &o);
    assert_true(o.sock >= 0);
    assert_true(o.pid > 0);
    assert_int_equal(o.pid, ae_fork_pid(p));
    check_sock_flags(o.sock);
    expect_report(o.sock, 102, "a,fd,b,,", true);
    close(o.sock);
    assert_int_equal(wait_exit(p), 0);
    assert_true(fcntl(pfd[1], F_GETFD) >= 0); /* the caller's fd stays the caller's */
    ae_fork_free(p);
    close(pfd[0]);
    close(pfd[1]);
    assert_int_equal(run_all(), 0); /* the idle default template keeps nothing going */
}

static void test_exec_run(void **state)
{
    (void)state;
    ae_fork *p = ae_fork_exec(loop);
    assert_true(ae_fork_pid(p) > 0); /* a helper's pid is known at once */
    ae_fork_require(p, WORKER);
    ae_fork_send_arg(p, "x", 1);
    struct outcome o = {0};
    run(p, "t_report", &o);
    assert_true(o.sock >= 0);
    expect_report(o.sock, 0, "x,", false);
    close(o.sock);
    assert_int_equal(wait_exit(p), 0);
    ae_fork_free(p);
}

static void test_template_fork(void **state)
{
    (void)state;
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    ae_fork *t = ae_fork_exec(loop);
    ae_fork_require(t, WORKER);
    ae_fork_send_arg(t, "T", 1);
    ae_fork_call(t, "t_init");
    ae_fork_send_fd(t, pfd[1]);
    for (int i = 0; i < 3; i++) {
        ae_fork *c = ae_fork_fork(t);
        assert_non_null(c);
        char arg = (char)('0' + i);
        ae_fork_send_arg(c, &arg, 1);
        /* a child of this program (CLONE_PARENT): an ae_child of ours sees it;
         * on the portable path it is the template's child: ae_child refuses it */
        struct child_seen seen = {ae_cv_new(loop), -1};
        struct outcome o = {.seen = &seen};
        run(c, "t_report", &o);
        assert_true(o.sock >= 0);
        ae_watcher *w = o.seen_w;
        if (portable)
            assert_null(w);
        else
            assert_non_null(w);
        char want[16];
        snprintf(want, sizeof want, "T,fd,%c,", arg);
        expect_report(o.sock, 101, want, true);
        close(o.sock);
        assert_int_equal(wait_exit(c), 0); /* on the portable path: forwarded by the template */
        if (!portable) {
            wait_cv(seen.cv);
            assert_int_equal(seen.status, 0);
        }
        ae_cv_free(seen.cv);
        ae_watcher_free(w);
        ae_fork_free(c);
    }
    /* a fork's own items and fds */
    ae_fork *c = ae_fork_fork(t);
    ae_fork_send_fd(c, pfd[1]);
    struct outcome o = {0};
    run(c, "t_write_fd", &o);
    close(o.sock);
    int st = wait_exit(c);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 3); /* T, its fd, our fd */
    char buf[8] = {0};
    assert_int_equal(read(pfd[0], buf, sizeof buf), 5);
    assert_string_equal(buf, "hello");
    ae_fork_free(c);
    ae_fork_free(t);
    assert_int_equal(run_all(), 0); /* the template exits and is reaped */
    close(pfd[0]);
    close(pfd[1]);
}

/* ---- errors -------------------------------------------------------------- */

static void expect_error(ae_fork *p, const char *symbol, const char *text)
{
    struct outcome o = {0};
    run(p, symbol, &o);
    assert_int_equal(o.sock, -1);
    if (!strstr(o.error, text))
        fail_msg("error \"%s\" does not say \"%s\"", o.error, text);
    assert_string_equal(ae_fork_error(p), o.error);
    ae_fork_free(p);
    assert_int_equal(run_all(), 0); /* everything reaped */
}

static void test_error_require(void **state)
{
    (void)state;
    ae_fork *p = ae_fork_new(loop);
    ae_fork_require(p, "/nonexistent/lib.so");
    ae_fork_require(p, WORKER); /* refused after the failure */
    expect_error(p, "t_report", "cannot open shared object file");
    /* a template whose require failed: every fork from it fails the same way */
    ae_fork *t = ae_fork_exec(loop);
    ae_fork_require(t, "/nonexistent/lib.so");
    ae_fork *c1 = ae_fork_fork(t);
    expect_error(c1, "t_report", "/nonexistent/lib.so");
    ae_fork *c2 = ae_fork_fork(t);
    expect_error(c2, "t_report", "/nonexistent/lib.so");
    ae_fork_free(t);
    assert_int_equal(run_all(), 0);
}

static void test_error_symbol(void **state)
{
    (void)state;
    ae_fork *p = ae_fork_new(loop);
    ae_fork_require(p, WORKER);
    expect_error(p, "t_no_such_function", "t_no_such_function: symbol not found");
}

static void test_error_call(void **state)
{
    (void)state;
    ae_fork *p = ae_fork_new(loop);
    ae_fork_require(p, WORKER);
    ae_fork_call(p, "t_fail");
    expect_error(p, "t_report", "call t_fail returned 3");
    p = ae_fork_exec(loop);
    ae_fork_require(p, WORKER);
    ae_fork_call(p, "t_die");
    expect_error(p, "t_report", "exited with 5");
}

static void test_error_helper(void **state)
{
    (void)state;
    setenv("ANYEVENT_FORK_SERVER", "/nonexistent/ae-fork-server", 1);
    ae_fork *p = ae_fork_exec(loop);
    unsetenv("ANYEVENT_FORK_SERVER");
    assert_non_null(p);
    expect_error(p, "t_report", "ANYEVENT_FORK_SERVER=/nonexistent/ae-fork-server");
    setenv("ANYEVENT_FORK_SERVER", "/bin/true", 1); /* not a helper: exits at once */
    p = ae_fork_exec(loop);
    unsetenv("ANYEVENT_FORK_SERVER");
    expect_error(p, "t_report", "exited with 0");
}

static void test_error_template_died(void **state)
{
    (void)state;
    ae_fork *t = ae_fork_exec(loop);
    ae_fork_require(t, WORKER);
    ae_fork *c = ae_fork_fork(t); /* made before the death */
    struct outcome o = {0};
    run(c, "t_wait_eof", &o);
    assert_true(o.sock >= 0);
    kill(ae_fork_pid(t), SIGKILL);
    close(o.sock); /* the run child goes on: it ends at EOF */
    ae_fork *c2 = ae_fork_fork(t);
    expect_error(c2, "t_report", "killed by signal 9");
    if (!portable) { /* on the portable path c's status died with its template */
        int st = wait_exit(c);
        assert_int_equal(WEXITSTATUS(st), 7);
    }
    ae_fork_free(c);
    ae_fork_free(t);
    assert_int_equal(run_all(), 0);
}

static void test_error_fd_limit(void **state)
{
    (void)state;
    ae_fork *p = ae_fork_exec(loop);
    ae_fork_require(p, WORKER);
    ae_fork_call(p, "t_few_fds");
    for (int i = 0; i < 4; i++)
        ae_fork_send_fd(p, 0);
    expect_error(p, "t_report", "fd limit");
}

static void test_error_fork_failed(void **state)
{
    (void)state;
    if (getuid() != 0)
        skip(); /* a user's own RLIMIT_NPROC may be taken already: only root can switch to a clean one */
    ae_fork *t = ae_fork_exec(loop);
    ae_fork_require(t, WORKER);
    ae_fork_call(t, "t_no_fork");
    ae_fork *c = ae_fork_fork(t);
    expect_error(c, "t_report", "fork failed in template");
    /* t is left to the loop's end, which kills it: exiting by itself it would
     * run a leak checker's exit hook, which cannot start its thread there */
}

/* A template whose call started a thread refuses to fork (the template
 * counts its threads after every require and call); it can still be run. */
static void test_error_template_threads(void **state)
{
    (void)state;
    ae_fork *t = ae_fork_exec(loop);
    ae_fork_require(t, WORKER);
    ae_fork_call(t, "t_start_thread");
    ae_fork *c = ae_fork_fork(t);
    expect_error(c, "t_report", "has 2 threads since call t_start_thread");
    struct outcome o = {0};
    run(t, "t_report", &o);
    assert_true(o.sock >= 0);
    expect_report(o.sock, 0, "", false);
    close(o.sock);
    assert_int_equal(wait_exit(t), 0);
    ae_fork_free(t);
}

static void test_bad_args(void **state)
{
    (void)state;
    assert_null(ae_fork_new(NULL));
    assert_null(ae_fork_exec(NULL));
    assert_null(ae_fork_fork(NULL));
    assert_int_equal(ae_last_error_code(), AE_EINVAL);
    assert_int_equal(ae_fork_require(NULL, "x"), AE_EINVAL);
    assert_int_equal(ae_fork_run(NULL, "x", NULL, NULL), AE_EINVAL);
    assert_int_equal(ae_fork_pid(NULL), 0);
    assert_null(ae_fork_error(NULL));
    ae_fork_free(NULL);
    ae_fork *p = ae_fork_new(loop);
    assert_int_equal(ae_fork_require(p, NULL), AE_EINVAL);
    assert_int_equal(ae_fork_call(p, NULL), AE_EINVAL);
    assert_int_equal(ae_fork_send_arg(p, NULL, 1), AE_EINVAL);
    assert_int_equal(ae_fork_send_fd(p, -1), AE_EBADF);
    assert_int_equal(ae_fork_send_fd(p, 999), AE_EBADF);
    assert_int_equal(ae_fork_run(p, NULL, NULL, NULL), AE_EINVAL);
    struct outcome o = {0};
    ae_fork_require(p, WORKER);
    run(p, "t_wait_eof", &o);
    assert_int_equal(ae_fork_run(p, "t_report", run_cb, &o), AE_ESTATE);
    assert_int_equal(ae_fork_send_arg(p, "x", 1), AE_ESTATE);
    assert_null(ae_fork_fork(p));
    assert_int_equal(ae_last_error_code(), AE_ESTATE);
    assert_null(ae_rpc_new(NULL, "x"));
    assert_int_equal(ae_rpc_call(NULL, "x", 1, NULL, NULL), AE_EINVAL);
    close(o.sock);
    wait_exit(p);
    ae_fork_free(p);
}

/* ---- freeing ------------------------------------------------------------- */

static void test_free_before_run(void **state)
{
    (void)state;
    ae_fork *t = ae_fork_exec(loop);
    ae_fork_require(t, WORKER);
    ae_fork *c = ae_fork_fork(t);
    ae_fork_free(t); /* the fork request still reaches it */
    ae_fork_send_arg(c, "c", 1);
    ae_fork_free(c);
    ae_fork *p = ae_fork_new(loop);
    ae_fork_free(p);
    assert_int_equal(run_all(), 0); /* returns once all of them are reaped */
    assert_no_zombie();
}

static void test_free_in_callback(void **state)
{
    (void)state;
    ae_fork *p = ae_fork_new(loop);
    ae_fork_require(p, WORKER);
    struct outcome o = {.free_in_cb = true};
    run(p, "t_report", &o);
    assert_int_equal(run_all(), 0); /* reaped though forgotten */
    /* the same when the run fails */
    p = ae_fork_new(loop);
    struct outcome o2 = {.free_in_cb = true};
    run(p, "t_nothing", &o2);
    assert_int_equal(o2.sock, -1);
    assert_int_equal(run_all(), 0);
}

static void test_loop_free_in_callback(void **state)
{
    (void)state;
    ae_fork *t = ae_fork_exec(loop); /* templates and prepared processes exit with the loop */
    ae_fork_require(t, WORKER);
    ae_fork *c = ae_fork_fork(t);
    ae_fork_send_arg(c, "c", 1);
    ae_fork *p = ae_fork_new(loop);
    ae_fork_require(p, WORKER);
    struct outcome o = {.loop_free_in_cb = true};
    run(p, "t_report", &o);
    assert_true(o.pid > 0);
    /* p was run: it goes on; the loop is gone, so reap it here (on the
     * portable path it is its template's child, not ours) */
    int st;
    if (!portable)
        assert_int_equal(waitpid(o.pid, &st, 0), o.pid);
    assert_no_zombie();
    free_host();
    loop = new_loop(); /* for teardown */
}

static void test_loop_free_pending(void **state)
{
    (void)state;
    ae_fork *t = ae_fork_exec(loop);
    ae_fork_require(t, WORKER);
    for (int i = 0; i < 3; i++) {
        ae_fork *c = ae_fork_fork(t);
        ae_fork_send_fd(c, 1);
    }
    ae_fork *w = ae_fork_fork(t);
    ae_rpc_call(ae_rpc_new(w, "t_echo"), "x", 1, NULL, NULL); /* a worker exits too */
    ae_fork_new(loop);
    ae_run_once(loop, AE_NOWAIT);
    /* teardown frees the loop with all of it pending, then counts */
}

/* ---- RPC ----------------------------------------------------------------- */

struct calls {
    ae_cv *cv;
    char log[512];
    int n;
};

static void rpc_cb(ae_rpc *r, const void *reply, size_t len, int err, void *arg)
{
    (void)r;
    struct calls *c = arg;
    size_t l = strlen(c->log);
    snprintf(c->log + l, sizeof c->log - l, "%s%d:%.*s", l ? " " : "", err, reply ? (int)len : 6,
             reply ? (const char *)reply : "(null)");
    if (--c->n == 0)
        ae_cv_send(c->cv, NULL);
}

static void test_rpc(void **state)
{
    (void)state;
    ae_fork *p = ae_fork_new(loop);
    ae_fork_require(p, WORKER);
    ae_rpc *r = ae_rpc_new(p, "t_echo");
    assert_non_null(r);
    struct calls c = {ae_cv_new(loop), "", 6};
    char req[8] = "one";
    ae_rpc_call(r, req, 3, rpc_cb, &c);
    strcpy(req, "XXX"); /* copied before returning */
    ae_rpc_call(r, "fail", 4, rpc_cb, &c);
    ae_rpc_call(r, "", 0, rpc_cb, &c);
    ae_rpc_call(r, "two", 3, rpc_cb, &c);
    ae_rpc_call(r, "die", 3, rpc_cb, &c);
    ae_rpc_call(r, "late", 4, rpc_cb, &c);
    wait_cv(c.cv);
    assert_string_equal(c.log, "0:one -12:no 0: 0:two -12:(null) -12:(null)");
    assert_non_null(ae_rpc_error(r));
    assert_non_null(strstr(ae_rpc_error(r), "exited with 9"));
    /* calls after the death fail on the loop, never inside the call */
    c.n = 1;
    c.log[0] = 0;
    ae_cv_free(c.cv);
    c.cv = ae_cv_new(loop);
    assert_int_equal(ae_rpc_call(r, "x", 1, rpc_cb, &c), 0);
    assert_int_equal(c.log[0], 0);
    wait_cv(c.cv);
    assert_string_equal(c.log, "-12:(null)");
    ae_cv_free(c.cv);
    ae_rpc_free(r);
    assert_int_equal(run_all(), 0);
}

static void test_rpc_free_queued(void **state)
{
    (void)state;
    ae_fork *p = ae_fork_new(loop);
    ae_fork_require(p, WORKER);
    ae_rpc *r = ae_rpc_new(p, "t_echo");
    struct calls c = {ae_cv_new(loop), "", 3};
    ae_rpc_call(r, "a", 1, rpc_cb, &c);
    ae_rpc_call(r, "b", 1, rpc_cb, &c);
    ae_rpc_call(r, "c", 1, rpc_cb, &c);
    ae_rpc_free(r); /* the queue still completes */
    assert_int_equal(run_all(), 0);
    assert_string_equal(c.log, "0:a 0:b 0:c");
    ae_cv_free(c.cv);
    /* a worker that does not start fails its calls */
    p = ae_fork_new(loop);
    r = ae_rpc_new(p, "t_no_handler");
    struct calls c2 = {ae_cv_new(loop), "", 1};
    ae_rpc_call(r, "a", 1, rpc_cb, &c2);
    wait_cv(c2.cv);
    assert_string_equal(c2.log, "-12:(null)");
    assert_non_null(strstr(ae_rpc_error(r), "symbol not found"));
    ae_cv_free(c2.cv);
    ae_rpc_free(r);
    assert_int_equal(run_all(), 0);
}

/* ---- pools -------------------------------------------------------------- */

struct pool_calls {
    ae_cv *cv;
    int ok, failed;
    ae_pool *free_after; /* freed from the first callback */
};

static void pool_cb(ae_rpc *r, const void *reply, size_t len, int err, void *arg)
{
    (void)r;
    struct pool_calls *pc = arg;
    if (err == 0 && len == 3 && memcmp(reply, "req", 3) == 0)
        pc->ok++;
    else if (err == AE_EPROC)
        pc->failed++;
    if (pc->free_after) {
        ae_pool_free(pc->free_after);
        pc->free_after = NULL;
    }
    ae_cv_end(pc->cv);
}

static void test_pool(void **state)
{
    (void)state;
    ae_fork *t = ae_fork_exec(loop);
    ae_fork_require(t, WORKER);
    ae_pool *pool = ae_pool_new(t, "t_echo", &(ae_pool_opts){.max = 2, .load = 1, .start = 0.01});
    assert_non_null(pool);
    struct pool_calls pc = {ae_cv_new(loop), 0, 0, NULL};
    for (int i = 0; i < 20; i++) {
        ae_cv_begin(pc.cv);
        assert_int_equal(ae_pool_call(pool, i == 5 ? "fail" : "req", i == 5 ? 4 : 3, pool_cb, &pc), 0);
    }
    pc.free_after = pool; /* queued calls still complete */
    wait_cv(pc.cv);
    assert_int_equal(pc.ok, 19);
    assert_int_equal(pc.failed, 1);
    ae_cv_free(pc.cv);
    assert_int_equal(run_all(), 0); /* the workers exit and are reaped */
    /* a worker that dies: its call fails, the next ones go to a new worker */
    pool = ae_pool_new(t, "t_echo", &(ae_pool_opts){.max = 1, .load = 1});
    struct pool_calls pc2 = {ae_cv_new(loop), 0, 0, NULL};
    ae_cv_begin(pc2.cv);
    ae_pool_call(pool, "die", 3, pool_cb, &pc2);
    for (int i = 0; i < 3; i++) {
        ae_cv_begin(pc2.cv);
        ae_pool_call(pool, "req", 3, pool_cb, &pc2);
    }
    wait_cv(pc2.cv);
    assert_int_equal(pc2.ok, 3);
    assert_int_equal(pc2.failed, 1);
    ae_cv_free(pc2.cv);
    ae_pool_free(pool);
    assert_null(ae_pool_new(NULL, "x", NULL));
    assert_int_equal(ae_pool_call(NULL, "x", 1, NULL, NULL), AE_EINVAL);
    /* freed with the loop while calls are queued (teardown) */
    pool = ae_pool_new(t, "t_echo", NULL);
    ae_pool_call(pool, "req", 3, NULL, NULL);
    ae_pool_call(pool, "req", 3, NULL, NULL);
    ae_run_once(loop, AE_NOWAIT);
    ae_fork_free(t);
}

/* ---- ae_fork_self ------------------------------------------------------- */

AE_EXPORT int t_self_value;

AE_EXPORT int t_self_report(int sock, int n, const ae_fork_item *items)
{
    char buf[64];
    int len = snprintf(buf, sizeof buf, "value=%d n=%d ppid=%d", t_self_value, n, (int)(getppid() == getpid()));
    (void)items;
    return write(sock, buf, (size_t)len) == len ? 0 : 1;
}

static void test_self(void **state)
{
    (void)state;
    t_self_value = 42;
    ae_fork *t = ae_fork_self(loop);
    assert_non_null(t);
    t_self_value = 0; /* the template keeps what it had */
    ae_fork_send_arg(t, "s", 1);
    ae_fork *c = ae_fork_fork(t);
    struct outcome o = {0};
    run(c, "t_self_report", &o);
    assert_true(o.sock >= 0);
    assert_string_equal(read_all(o.sock), "value=42 n=1 ppid=0");
    close(o.sock);
    assert_int_equal(wait_exit(c), 0);
    ae_fork_free(c);
    ae_fork_free(t);
    assert_int_equal(run_all(), 0);
}

static void *sleeper(void *arg)
{
    char c;
    return (void *)(intptr_t)read(*(int *)arg, &c, 1);
}

static void test_self_threads(void **state)
{
    (void)state;
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    pthread_t th;
    pthread_create(&th, NULL, sleeper, &pfd[0]);
    assert_null(ae_fork_self(loop));
    assert_int_equal(ae_last_error_code(), AE_ESTATE);
    close(pfd[1]);
    pthread_join(th, NULL);
    close(pfd[0]);
}

/* Backends open some process-wide fds on first use of child watchers
 * (libuv's signal pipe): open them before the counting starts. */
static void warm_up(void)
{
    ae_loop *l = ae_loop_new(backend);
    assert_non_null(l);
    pid_t pid = fork();
    if (pid == 0)
        _exit(0);
    ae_watcher *w = ae_child(l, pid, NULL, NULL);
    (void)w;
    struct child_seen seen = {ae_cv_new(l), -1};
    ae_child(l, pid, child_cb, &seen);
    ae_cv_recv(seen.cv, NULL);
    ae_loop_free(l);
}

int main(int argc, char **argv)
{
#ifdef FORKTMPL_HOST
    backend = host_backend();
    (void)argc;
#else
    backend = argc > 1 ? argv[1] : "poll";
#endif
    const char *e = getenv("ANYEVENT_FORK_PORTABLE");
    portable = e && *e && strcmp(e, "0") != 0;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_new_run, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exec_run, setup, teardown),
        cmocka_unit_test_setup_teardown(test_template_fork, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_require, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_symbol, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_call, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_helper, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_template_died, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_fd_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_fork_failed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_template_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_args, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_before_run, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_in_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_loop_free_in_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_loop_free_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rpc, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rpc_free_queued, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pool, setup, teardown),
        cmocka_unit_test_setup_teardown(test_self, setup, teardown),
        cmocka_unit_test_setup_teardown(test_self_threads, setup, teardown),
    };
    if (argc > 2)
        cmocka_set_test_filter(argv[2]);
#ifdef FORKTMPL_HOST
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
#endif
    warm_up();
    char name[64];
#ifdef FORKTMPL_HOST
    snprintf(name, sizeof name, "forktmpl-%s-adopted%s", backend, portable ? "-portable" : "");
#else
    snprintf(name, sizeof name, "forktmpl-%s%s", backend, portable ? "-portable" : "");
#endif
    return cmocka_run_group_tests_name(name, tests, NULL, NULL);
}
