/*
 * fork(): a child process goes on using the loops it inherited, by itself
 * (the loop notices the fork at its next iteration) or after ae_loop_fork(),
 * and nothing the child does reaches the parent's loop. Run once per
 * backend, named as the first argument.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "anyevent.h"

static const char *backend;

typedef struct counts {
    int io, timer, sig, child_status, child_calls;
    int fd; /* the pipe end on_io reads */
} counts;

static void on_io(ae_watcher *w, int revents, void *arg)
{
    (void)revents;
    counts *c = arg;
    char buf[16];
    (void)w;
    if (read(c->fd, buf, sizeof buf) > 0)
        c->io++;
}

static void on_timer(ae_watcher *w, void *arg)
{
    (void)w;
    ((counts *)arg)->timer++;
}

static void on_signal(ae_watcher *w, int signum, void *arg)
{
    (void)w;
    (void)signum;
    ((counts *)arg)->sig++;
}

static void on_child(ae_watcher *w, pid_t pid, int status, void *arg)
{
    (void)w;
    (void)pid;
    counts *c = arg;
    c->child_calls++;
    c->child_status = status;
}

static void on_deadline(ae_watcher *w, void *arg)
{
    (void)w;
    (void)arg;
    fprintf(stderr, "fork test: deadline passed\n");
    _exit(90);
}

/* Runs until cond holds or 10 s pass (a hang is a failure, not a wait). */
#define RUN_UNTIL(loop, cond)                                                                                  \
    do {                                                                                                        \
        ae_watcher *deadline_ = ae_timer(loop, 10, 0, on_deadline, NULL);                                       \
        while (!(cond))                                                                                         \
            if (ae_run_once(loop, 0) < 0)                                                                       \
                _exit(91);                                                                                      \
        ae_watcher_free(deadline_);                                                                             \
    } while (0)

/* In the child: every kind of watcher works on the inherited loop, and the
 * child drops the watcher it inherited on the parent's pipe. Exit status 0
 * if all went well, else the number of the step that failed. */
static int child_side(ae_loop *loop, ae_watcher *inherited, bool explicit_fork)
{
    if (explicit_fork && ae_loop_fork(loop) != 0)
        return 1;
    ae_watcher_free(inherited); /* must not touch the parent's registration */
    counts c = {0};
    int p[2];
    if (pipe(p) != 0)
        return 2;
    c.fd = p[0];
    ae_watcher *io = ae_io(loop, p[0], AE_READ, on_io, &c);
    ae_watcher *timer = ae_timer(loop, 0.01, 0, on_timer, &c);
    ae_watcher *sig = ae_signal(loop, SIGUSR2, on_signal, &c);
    if (!io || !timer || !sig)
        return 3;
    if (write(p[1], "x", 1) != 1)
        return 4;
    RUN_UNTIL(loop, c.io == 1 && c.timer == 1);
    raise(SIGUSR2);
    RUN_UNTIL(loop, c.sig == 1);
    pid_t grandchild = fork();
    if (grandchild == 0)
        _exit(7);
    ae_watcher *child = ae_child(loop, grandchild, on_child, &c);
    if (!child)
        return 5;
    RUN_UNTIL(loop, c.child_calls == 1);
    if (!WIFEXITED(c.child_status) || WEXITSTATUS(c.child_status) != 7)
        return 6;
    ae_loop_free(loop);
    return 0;
}

static void check_fork(bool explicit_fork)
{
    ae_loop *loop = ae_loop_new(backend);
    assert_non_null(loop);
    counts c = {0};
    int p[2];
    assert_int_equal(pipe(p), 0);
    c.fd = p[0];
    ae_watcher *io = ae_io(loop, p[0], AE_READ, on_io, &c);
    ae_watcher *sig = ae_signal(loop, SIGUSR2, on_signal, &c);
    assert_non_null(io);
    assert_non_null(sig);
    /* Registered in the kernel before the fork, so that state is shared. */
    assert_true(ae_run_once(loop, AE_NOWAIT) >= 0);

    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(child_side(loop, io, explicit_fork));

    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) != 0)
        fail_msg("the child failed at step %d", WEXITSTATUS(status));

    /* The parent's loop is as it was: its pipe and its signal still fire. */
    assert_int_equal(write(p[1], "y", 1), 1);
    ae_watcher *deadline = ae_timer(loop, 10, 0, on_timer, &c);
    while (c.io == 0 && c.timer == 0)
        assert_true(ae_run_once(loop, 0) >= 0);
    assert_int_equal(c.io, 1);
    raise(SIGUSR2);
    while (c.sig == 0 && c.timer == 0)
        assert_true(ae_run_once(loop, 0) >= 0);
    assert_int_equal(c.sig, 1);
    assert_int_equal(c.timer, 0);
    ae_watcher_free(deadline);
    ae_loop_free(loop);
    close(p[0]);
    close(p[1]);
}

static void test_fork_noticed_by_itself(void **state)
{
    (void)state;
    check_fork(false);
}

static void test_fork_explicit(void **state)
{
    (void)state;
    check_fork(true);
}

/* A loop that never ran in the parent, and a child that forks again. */
static void test_fork_twice(void **state)
{
    (void)state;
    ae_loop *loop = ae_loop_new(backend);
    assert_non_null(loop);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        pid_t pid2 = fork();
        if (pid2 < 0)
            _exit(20);
        if (pid2 == 0) {
            counts c = {0};
            ae_timer(loop, 0.001, 0, on_timer, &c);
            RUN_UNTIL(loop, c.timer == 1);
            ae_loop_free(loop);
            _exit(0);
        }
        int st;
        if (waitpid(pid2, &st, 0) != pid2 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
            _exit(21);
        _exit(child_side(loop, ae_timer(loop, 100, 0, on_timer, NULL), false));
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) != 0)
        fail_msg("the child failed at step %d", WEXITSTATUS(status));
    ae_loop_free(loop);
}

/* Takes every free fd number (below a lowered limit); returns how many. */
static int fds_exhaust(int *fds, int max)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -1;
    rl.rlim_cur = 256;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -1;
    int n = 0;
    while (n < max && (fds[n] = dup(0)) >= 0)
        n++;
    return n;
}

/* In the child: the renewal fails (no fd left for the loop's new kernel
 * state), and the loop then refuses to run, with that error, even once fds
 * are free again, until it is freed. */
static int child_renewal_fails(ae_loop *loop)
{
    int fds[256];
    int n = fds_exhaust(fds, 256);
    if (n <= 0)
        return 1;
    int rc = ae_run_once(loop, AE_NOWAIT);
    for (int i = 0; i < n; i++)
        close(fds[i]);
    if (rc >= 0)
        return 2;
    if (!strstr(ae_last_error(), "fork"))
        return 3;
    if (ae_run_once(loop, AE_NOWAIT) != rc || ae_run(loop) != rc || ae_loop_fork(loop) != rc)
        return 4;
    if (!strstr(ae_last_error(), "fork"))
        return 5;
    ae_loop_free(loop); /* without touching the parent's registrations */
    return 0;
}

static void test_fork_renewal_failure_sticks(void **state)
{
    (void)state;
    ae_loop *loop = ae_loop_new(backend);
    assert_non_null(loop);
    counts c = {0};
    int p[2];
    assert_int_equal(pipe(p), 0);
    c.fd = p[0];
    ae_watcher *io = ae_io(loop, p[0], AE_READ, on_io, &c);
    ae_watcher *sig = ae_signal(loop, SIGUSR2, on_signal, &c);
    assert_non_null(io);
    assert_non_null(sig);
    assert_true(ae_run_once(loop, AE_NOWAIT) >= 0);

    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(child_renewal_fails(loop));
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) != 0)
        fail_msg("the child failed at step %d", WEXITSTATUS(status));

    /* The parent's loop is as it was. */
    assert_int_equal(write(p[1], "y", 1), 1);
    raise(SIGUSR2);
    ae_watcher *deadline = ae_timer(loop, 10, 0, on_timer, &c);
    while ((c.io == 0 || c.sig == 0) && c.timer == 0)
        assert_true(ae_run_once(loop, 0) >= 0);
    assert_int_equal(c.io, 1);
    assert_int_equal(c.sig, 1);
    ae_watcher_free(deadline);
    ae_loop_free(loop);
    close(p[0]);
    close(p[1]);
}

static void test_fork_bad_input(void **state)
{
    (void)state;
    assert_int_equal(ae_loop_fork(NULL), AE_EINVAL);
    assert_non_null(strstr(ae_last_error(), "ae_loop_fork"));
    ae_loop *loop = ae_loop_new(backend);
    /* Not forked: renewing the state is harmless. */
    assert_int_equal(ae_loop_fork(loop), 0);
    counts c = {0};
    ae_timer(loop, 0.001, 0, on_timer, &c);
    assert_int_equal(ae_run(loop), 0);
    assert_int_equal(c.timer, 1);
    ae_loop_free(loop);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s BACKEND\n", argv[0]);
        return 2;
    }
    backend = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fork_noticed_by_itself),
        cmocka_unit_test(test_fork_explicit),
        cmocka_unit_test(test_fork_twice),
        cmocka_unit_test(test_fork_renewal_failure_sticks),
        cmocka_unit_test(test_fork_bad_input),
    };
    return cmocka_run_group_tests_name(backend, tests, NULL, NULL);
}
