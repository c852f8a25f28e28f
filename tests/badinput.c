/*
 * Bad input, on one backend (the first argument): every public function given
 * NULL, a foreign pointer, an invalid fd, an fd closed while watched, huge,
 * tiny, negative and NaN times, signals that cannot be caught, a pid that is
 * not a child, condvar misuse, a loop freed with live watchers. Each has the
 * result docs/reliability.md gives it: an error code with a message, never a
 * crash, a hang or a silent ignore. The table there names these checks.
 */
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "anyevent.h"

static const char *backend;

static void io_cb(ae_watcher *w, int revents, void *arg)
{
    (void)w;
    *(int *)arg |= revents;
}

static void timer_cb(ae_watcher *w, void *arg)
{
    (void)w;
    if (arg)
        (*(int *)arg)++;
}

static void signal_cb(ae_watcher *w, int signum, void *arg)
{
    (void)w;
    (void)signum;
    (void)arg;
}

static void child_cb(ae_watcher *w, pid_t pid, int status, void *arg)
{
    (void)w;
    (void)pid;
    (void)status;
    (void)arg;
}

static void idle_cb(ae_watcher *w, void *arg)
{
    (void)w;
    (void)arg;
}

/* The call failed with code, and the thread's message names fragment. */
static void expect_error(int got, int code, const char *fragment)
{
    if (got != code)
        fail_msg("expected %s (%d), got %d; message: %s", ae_strerror(code), code, got, ae_last_error());
    assert_int_equal(ae_last_error_code(), code);
    if (!strstr(ae_last_error(), fragment))
        fail_msg("message \"%s\" does not mention \"%s\"", ae_last_error(), fragment);
}

static void expect_null(const void *got, int code, const char *fragment)
{
    assert_null(got);
    expect_error(code, code, fragment);
}

static ae_loop *new_loop(void)
{
    ae_loop *loop = ae_loop_new(backend);
    if (!loop)
        fail_msg("ae_loop_new(%s): %s", backend, ae_last_error());
    return loop;
}

static void test_null_loop(void **state)
{
    (void)state;
    expect_error(ae_run(NULL), AE_EINVAL, "ae_run");
    expect_error(ae_run_once(NULL, 0), AE_EINVAL, "ae_run_once");
    expect_error(ae_loop_fork(NULL), AE_EINVAL, "ae_loop_fork");
    expect_null(ae_loop_backend(NULL), AE_EINVAL, "ae_loop_backend");
    expect_null(ae_loop_native(NULL), AE_EINVAL, "ae_loop_native");
    assert_true(isnan(ae_now(NULL)));
    expect_error(ae_last_error_code(), AE_EINVAL, "ae_now");
    expect_null(ae_io(NULL, 0, AE_READ, io_cb, NULL), AE_EINVAL, "ae_io");
    expect_null(ae_timer(NULL, 1, 0, timer_cb, NULL), AE_EINVAL, "ae_timer");
    expect_null(ae_signal(NULL, SIGUSR1, signal_cb, NULL), AE_EINVAL, "ae_signal");
    expect_null(ae_child(NULL, 0, child_cb, NULL), AE_EINVAL, "ae_child");
    expect_null(ae_idle(NULL, idle_cb, NULL), AE_EINVAL, "ae_idle");
    expect_null(ae_cv_new(NULL), AE_EINVAL, "ae_cv_new");
    expect_null(ae_loop_adopt(backend, NULL), AE_EINVAL, "native loop is NULL");
    expect_null(ae_loop_adopt(NULL, NULL), AE_EINVAL, "name the backend");
    /* Documented as ignored: */
    ae_loop_free(NULL);
    ae_break(NULL);
    ae_now_update(NULL);
}

static void test_null_watcher_and_callback(void **state)
{
    (void)state;
    expect_error(ae_io_set(NULL, AE_READ), AE_EINVAL, "ae_io_set");
    expect_error(ae_timer_set(NULL, 1, 0), AE_EINVAL, "ae_timer_set");
    /* Predicates answer 0 for what is not a live watcher, and say why. */
    assert_int_equal(ae_watcher_active(NULL), 0);
    expect_error(ae_last_error_code(), AE_EINVAL, "ae_watcher_active");
    expect_null(ae_watcher_loop(NULL), AE_EINVAL, "ae_watcher_loop");
    ae_watcher_free(NULL); /* ignored, like free(NULL) */
    ae_loop *loop = new_loop();
    int p[2];
    assert_int_equal(pipe(p), 0);
    expect_null(ae_io(loop, p[0], AE_READ, NULL, NULL), AE_EINVAL, "callback is NULL");
    expect_null(ae_timer(loop, 1, 0, NULL, NULL), AE_EINVAL, "callback is NULL");
    expect_null(ae_signal(loop, SIGUSR1, NULL, NULL), AE_EINVAL, "callback is NULL");
    expect_null(ae_child(loop, 0, NULL, NULL), AE_EINVAL, "callback is NULL");
    expect_null(ae_idle(loop, NULL, NULL), AE_EINVAL, "callback is NULL");
    ae_loop_free(loop);
    close(p[0]);
    close(p[1]);
}

static void test_null_condvar(void **state)
{
    (void)state;
    expect_error(ae_cv_send(NULL, NULL), AE_EINVAL, "ae_cv_send");
    expect_error(ae_cv_croak(NULL, "x"), AE_EINVAL, "ae_cv_croak");
    expect_error(ae_cv_recv(NULL, NULL), AE_EINVAL, "ae_cv_recv");
    expect_error(ae_cv_begin(NULL), AE_EINVAL, "ae_cv_begin");
    expect_error(ae_cv_end(NULL), AE_EINVAL, "ae_cv_end");
    assert_int_equal(ae_cv_ready(NULL), 0);
    expect_error(ae_last_error_code(), AE_EINVAL, "ae_cv_ready");
    expect_null(ae_cv_error(NULL), AE_EINVAL, "ae_cv_error");
    ae_cv_cb(NULL, NULL, NULL); /* ignored */
    ae_cv_free(NULL);           /* ignored */
}

/* A condvar where a watcher is expected, a watcher of the wrong kind: the
 * magic number at the start of each tells them apart. */
static void test_foreign_pointers(void **state)
{
    (void)state;
    ae_loop *loop = new_loop();
    ae_cv *cv = ae_cv_new(loop);
    ae_watcher *timer = ae_timer(loop, 100, 0, timer_cb, NULL);
    ae_watcher *idle = ae_idle(loop, idle_cb, NULL);
    assert_non_null(cv);
    assert_non_null(timer);
    expect_error(ae_io_set(timer, AE_READ), AE_EINVAL, "wrong kind of watcher");
    expect_error(ae_timer_set(idle, 1, 0), AE_EINVAL, "wrong kind of watcher");
    expect_error(ae_io_set((ae_watcher *)(void *)cv, AE_READ), AE_EINVAL, "not a live watcher");
    assert_int_equal(ae_watcher_active((ae_watcher *)(void *)cv), 0);
    expect_error(ae_last_error_code(), AE_EINVAL, "not a live watcher");
    expect_error(ae_cv_send((ae_cv *)(void *)timer, NULL), AE_EINVAL, "not a live condvar");
    expect_error(ae_cv_begin((ae_cv *)(void *)idle), AE_EINVAL, "not a live condvar");
    /* The loop's own internal watcher cannot be freed by the user. */
    ae_loop_free(loop);
}

static void test_invalid_fds(void **state)
{
    (void)state;
    ae_loop *loop = new_loop();
    int got = 0;
    expect_null(ae_io(loop, -1, AE_READ, io_cb, &got), AE_EBADF, "fd -1");
    expect_null(ae_io(loop, 54321, AE_READ, io_cb, &got), AE_EBADF, "fd 54321");
    int p[2];
    assert_int_equal(pipe(p), 0);
    close(p[1]);
    expect_null(ae_io(loop, p[1], AE_READ, io_cb, &got), AE_EBADF, "is not open");
    expect_null(ae_io(loop, p[0], 8, io_cb, &got), AE_EINVAL, "only AE_READ and AE_WRITE");
    expect_null(ae_io(loop, p[0], AE_ERROR, io_cb, &got), AE_EINVAL, "only AE_READ and AE_WRITE");
    ae_watcher *w = ae_io(loop, p[0], 0, io_cb, &got);
    assert_non_null(w);
    expect_error(ae_io_set(w, AE_READ | 16), AE_EINVAL, "only AE_READ and AE_WRITE");
    /* A high fd: select cannot watch past FD_SETSIZE. */
    int high = fcntl(p[0], F_DUPFD_CLOEXEC, FD_SETSIZE + 10);
    if (high >= 0) {
        ae_watcher *hw = ae_io(loop, high, AE_READ, io_cb, &got);
        if (strcmp(ae_loop_backend(loop), "select") == 0)
            expect_null(hw, AE_ELIMIT, "FD_SETSIZE");
        else
            assert_non_null(hw);
        ae_watcher_free(hw);
        close(high);
    }
    ae_loop_free(loop);
    close(p[0]);
}

/* Closing an fd under its watcher is the caller's error; the result is
 * AE_ERROR to the watcher (which is paused), at the latest when its interest
 * next changes, or AE_EBADF from that change; never a crash. The built-in
 * loops report it at the next iteration. */
static void test_fd_closed_while_watched(void **state)
{
    (void)state;
    ae_loop *loop = new_loop();
    int p[2];
    assert_int_equal(pipe(p), 0);
    int got = 0;
    ae_watcher *w = ae_io(loop, p[0], AE_READ, io_cb, &got);
    assert_non_null(w);
    assert_true(ae_run_once(loop, AE_NOWAIT) >= 0); /* registered with the backend */
    close(p[0]);
    close(p[1]);
    for (int i = 0; i < 3; i++)
        assert_true(ae_run_once(loop, AE_NOWAIT) >= 0);
    bool builtin = strcmp(backend, "poll") == 0 || strcmp(backend, "select") == 0;
    if (builtin)
        assert_int_equal(got, AE_ERROR);
    if (!(got & AE_ERROR)) {
        int rc = ae_io_set(w, AE_READ | AE_WRITE);
        for (int i = 0; i < 3 && rc == 0 && !(got & AE_ERROR); i++)
            assert_true(ae_run_once(loop, AE_NOWAIT) >= 0);
        if (rc != 0)
            expect_error(rc, AE_EBADF, "not open");
        else
            assert_int_equal(got & AE_ERROR, AE_ERROR);
    }
    if (got & AE_ERROR)
        assert_int_equal(ae_watcher_active(w), 0); /* paused */
    ae_watcher_free(w);
    ae_loop_free(loop);
}

static void test_bad_times(void **state)
{
    (void)state;
    ae_loop *loop = new_loop();
    const double bad[] = {-1, -1e-300, NAN, -NAN, INFINITY, -INFINITY};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        expect_null(ae_timer(loop, bad[i], 0, timer_cb, NULL), AE_EINVAL, "ae_timer");
        expect_null(ae_timer(loop, 0, bad[i], timer_cb, NULL), AE_EINVAL, "ae_timer");
    }
    ae_watcher *t = ae_timer(loop, 1, 0, timer_cb, NULL);
    expect_error(ae_timer_set(t, NAN, 0), AE_EINVAL, "ae_timer_set");
    expect_error(ae_timer_set(t, 0, -2), AE_EINVAL, "ae_timer_set");
    assert_int_equal(ae_watcher_active(t), 1); /* a failed set leaves it as it was */
    ae_watcher_free(t);
    ae_loop_free(loop);
}

/* Huge times are accepted and never overflow a backend's conversion; tiny
 * ones (a denormal interval) still make progress. */
static void test_huge_and_tiny_times(void **state)
{
    (void)state;
    ae_loop *loop = new_loop();
    int fired = 0;
    ae_watcher *huge = ae_timer(loop, DBL_MAX, DBL_MAX, timer_cb, &fired);
    ae_watcher *big = ae_timer(loop, 1e300, 0, timer_cb, &fired);
    assert_non_null(huge);
    assert_non_null(big);
    /* The wait is bounded by the huge deadline: a pipe written by a child
     * must still wake it. */
    int p[2];
    assert_int_equal(pipe(p), 0);
    int got = 0;
    ae_watcher *io = ae_io(loop, p[0], AE_READ, io_cb, &got);
    pid_t pid = fork();
    if (pid == 0) {
        alarm(30);
        usleep(20000);
        _exit(write(p[1], "x", 1) == 1 ? 0 : 1);
    }
    while (!got)
        assert_true(ae_run_once(loop, 0) >= 0);
    assert_int_equal(got, AE_READ);
    assert_int_equal(fired, 0);
    waitpid(pid, NULL, 0);
    ae_watcher_free(io);
    ae_watcher_free(huge);
    ae_watcher_free(big);
    /* A denormal interval: fires, repeats, and the loop goes on. */
    ae_watcher *tiny = ae_timer(loop, 1e-300, 4.9e-324, timer_cb, &fired);
    assert_non_null(tiny);
    while (fired < 5)
        assert_true(ae_run_once(loop, 0) >= 0);
    ae_watcher_free(tiny);
    ae_loop_free(loop);
    close(p[0]);
    close(p[1]);
}

static void test_bad_signals(void **state)
{
    (void)state;
    ae_loop *loop = new_loop();
    expect_null(ae_signal(loop, SIGKILL, signal_cb, NULL), AE_ESIGNAL, "SIGKILL cannot be caught");
    expect_null(ae_signal(loop, SIGSTOP, signal_cb, NULL), AE_ESIGNAL, "SIGSTOP cannot be caught");
    const int out_of_range[] = {0, -1, -SIGINT, 65, 1000, INT32_MAX};
    for (size_t i = 0; i < sizeof out_of_range / sizeof out_of_range[0]; i++)
        expect_null(ae_signal(loop, out_of_range[i], signal_cb, NULL), AE_ESIGNAL, "not a signal number");
    expect_null(ae_signal(loop, 32, signal_cb, NULL), AE_ESIGNAL, "reserved by the C library");
    expect_null(ae_signal(loop, 33, signal_cb, NULL), AE_ESIGNAL, "reserved by the C library");
    ae_loop_free(loop);
}

static void test_bad_pids(void **state)
{
    (void)state;
    ae_loop *loop = new_loop();
    expect_null(ae_child(loop, -1, child_cb, NULL), AE_EINVAL, "must be a child's pid");
    expect_null(ae_child(loop, 1, child_cb, NULL), AE_EINVAL, "pid 1 is not a child of this process");
    expect_null(ae_child(loop, getpid(), child_cb, NULL), AE_EINVAL, "is not a child of this process");
    /* A child reaped by other code already is no longer ours either. */
    pid_t pid = fork();
    if (pid == 0)
        _exit(0);
    assert_int_equal(waitpid(pid, NULL, 0), pid);
    expect_null(ae_child(loop, pid, child_cb, NULL), AE_EINVAL, "or was reaped already");
    ae_loop_free(loop);
}

static void test_condvar_misuse(void **state)
{
    (void)state;
    ae_loop *loop = new_loop();
    ae_cv *cv = ae_cv_new(loop);
    expect_error(ae_cv_end(cv), AE_ESTATE, "without a matching ae_cv_begin");
    void *value = NULL;
    expect_error(ae_cv_recv(cv, &value), AE_EDEADLK, "no active watcher");
    assert_int_equal(ae_cv_send(cv, "first"), 0);
    expect_error(ae_cv_send(cv, "second"), AE_ESTATE, "already sent");
    expect_error(ae_cv_croak(cv, "late"), AE_ESTATE, "already sent");
    expect_error(ae_cv_begin(cv), AE_ESTATE, "already ready");
    assert_int_equal(ae_cv_recv(cv, &value), 0);
    assert_string_equal(value, "first"); /* the first send won */
    ae_cv *croaked = ae_cv_new(loop);
    assert_int_equal(ae_cv_croak(croaked, "boom"), 0);
    expect_error(ae_cv_send(croaked, NULL), AE_ESTATE, "already croaked");
    expect_error(ae_cv_recv(croaked, &value), AE_ECROAKED, "boom");
    ae_loop_free(loop); /* frees both condvars */
}

/* Freeing a loop with live watchers of every kind and condvars frees them
 * all (checked for leaks by ASan and valgrind) and restores the signal's
 * disposition. */
static void test_free_loop_with_live_watchers(void **state)
{
    (void)state;
    struct sigaction before, after;
    sigaction(SIGUSR2, NULL, &before);
    ae_loop *loop = new_loop();
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    if (pid == 0) {
        alarm(30); /* never outlives a failed test by long */
        pause();
        _exit(0);
    }
    int got = 0;
    assert_non_null(ae_io(loop, p[0], AE_READ, io_cb, &got));
    assert_non_null(ae_io(loop, p[1], AE_WRITE, io_cb, &got));
    assert_non_null(ae_timer(loop, 10, 1, timer_cb, NULL));
    assert_non_null(ae_signal(loop, SIGUSR2, signal_cb, NULL));
    assert_non_null(ae_child(loop, pid, child_cb, NULL));
    assert_non_null(ae_idle(loop, idle_cb, NULL));
    ae_cv *cv = ae_cv_new(loop);
    assert_int_equal(ae_cv_begin(cv), 0);
    assert_true(ae_run_once(loop, AE_NOWAIT) >= 0);
    ae_loop_free(loop);
    sigaction(SIGUSR2, NULL, &after);
    assert_true(after.sa_handler == before.sa_handler);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0); /* still ours to reap: the freed watcher did not take it */
    close(p[0]);
    close(p[1]);
}

static void test_unknown_backend(void **state)
{
    (void)state;
    expect_null(ae_loop_new("no-such-backend"), AE_ENOENT, "unknown backend 'no-such-backend'");
    expect_null(ae_loop_new("../../etc/passwd"), AE_ENOENT, "is not a plugin name");
    expect_null(ae_loop_new("/nonexistent/anyevent-x.so"), AE_ENOENT, "not found");
    expect_null(ae_loop_adopt("poll", (void *)1), AE_ENOTSUP, "cannot adopt");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s BACKEND\n", argv[0]);
        return 2;
    }
    backend = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_null_loop),
        cmocka_unit_test(test_null_watcher_and_callback),
        cmocka_unit_test(test_null_condvar),
        cmocka_unit_test(test_foreign_pointers),
        cmocka_unit_test(test_invalid_fds),
        cmocka_unit_test(test_fd_closed_while_watched),
        cmocka_unit_test(test_bad_times),
        cmocka_unit_test(test_huge_and_tiny_times),
        cmocka_unit_test(test_bad_signals),
        cmocka_unit_test(test_bad_pids),
        cmocka_unit_test(test_condvar_misuse),
        cmocka_unit_test(test_free_loop_with_live_watchers),
        cmocka_unit_test(test_unknown_backend),
    };
    return cmocka_run_group_tests_name(backend, tests, NULL, NULL);
}
