/*
 * fd hygiene, on one backend (the first argument): every fd anyevent or its
 * backend opens is close-on-exec, and none is left after ae_loop_free(),
 * counted in /proc/self/fd.
 */
#include <dirent.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "anyevent.h"

static const char *backend;

#define MAX_FDS 4096

/* The open fds of this process, as a bitmap; returns how many. */
static int open_fds(bool open[MAX_FDS])
{
    memset(open, 0, MAX_FDS * sizeof open[0]);
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    int self = dirfd(d), n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        int fd = atoi(e->d_name);
        if (e->d_name[0] == '.' || fd == self || fd >= MAX_FDS)
            continue;
        open[fd] = true;
        n++;
    }
    closedir(d);
    return n;
}

static void io_cb(ae_watcher *w, int revents, void *arg)
{
    (void)w;
    (void)revents;
    (void)arg;
}

static void timer_cb(ae_watcher *w, void *arg)
{
    (void)w;
    (*(int *)arg)++;
}

static void signal_cb(ae_watcher *w, int signum, void *arg)
{
    (void)w;
    (void)signum;
    (*(int *)arg)++;
}

static void child_cb(ae_watcher *w, pid_t pid, int status, void *arg)
{
    (void)w;
    (void)pid;
    (void)status;
    (*(int *)arg)++;
}

/* A loop with a watcher of every kind, run until each has fired once, so
 * that every fd the core and the backend open on the way is open. Checks
 * that each new fd is close-on-exec, then frees the loop. */
static void use_a_loop(const bool before[MAX_FDS])
{
    ae_loop *loop = ae_loop_new(backend);
    assert_non_null(loop);
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    int fired = 0;
    assert_non_null(ae_io(loop, p[0], AE_READ, io_cb, NULL));
    assert_non_null(ae_timer(loop, 0.001, 0, timer_cb, &fired));
    assert_non_null(ae_signal(loop, SIGUSR1, signal_cb, &fired));
    pid_t pid = fork();
    if (pid == 0)
        _exit(0);
    assert_non_null(ae_child(loop, pid, child_cb, &fired));
    raise(SIGUSR1);
    int deadline = 0;
    ae_watcher *guard = ae_timer(loop, 10, 0, timer_cb, &deadline);
    while (fired < 3 && !deadline)
        assert_true(ae_run_once(loop, 0) >= 0);
    assert_int_equal(fired, 3);
    ae_watcher_free(guard);

    bool now[MAX_FDS];
    open_fds(now);
    int checked = 0;
    for (int fd = 0; fd < MAX_FDS; fd++) {
        if (!now[fd] || before[fd] || fd == p[0] || fd == p[1])
            continue;
        int flags = fcntl(fd, F_GETFD);
        if (flags < 0 || !(flags & FD_CLOEXEC)) {
            char link[64], target[256] = "?";
            snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
            ssize_t n = readlink(link, target, sizeof target - 1);
            target[n > 0 ? n : 0] = '\0';
            fail_msg("fd %d (%s), opened by the %s loop, is not close-on-exec", fd, target, backend);
        }
        checked++;
    }
    print_message("%s: %d fds of anyevent's and the backend's, all close-on-exec\n", backend, checked);
    ae_loop_free(loop);
    close(p[0]);
    close(p[1]);
}

static void test_cloexec_and_no_leak(void **state)
{
    (void)state;
    /* A first loop loads the plugin and lets its library open what it keeps
     * for the whole process (libuv's signal lock pipe): not a loop's fds. */
    bool start[MAX_FDS];
    open_fds(start);
    use_a_loop(start);
    bool before[MAX_FDS];
    int n_before = open_fds(before);
    for (int fd = 0; fd < MAX_FDS; fd++)
        if (before[fd] && !start[fd]) {
            int flags = fcntl(fd, F_GETFD);
            assert_true(flags >= 0 && (flags & FD_CLOEXEC)); /* process-wide ones too */
        }
    /* Then loops come and go without a trace. */
    for (int round = 0; round < 3; round++) {
        use_a_loop(before);
        bool after[MAX_FDS];
        int n_after = open_fds(after);
        for (int fd = 0; fd < MAX_FDS; fd++) {
            if (after[fd] && !before[fd])
                fail_msg("fd %d is still open after ae_loop_free (round %d)", fd, round);
            if (!after[fd] && before[fd])
                fail_msg("fd %d, open before, was closed by the loop (round %d)", fd, round);
        }
        assert_int_equal(n_after, n_before);
    }
}

/* The same with loops freed while their signal and child watchers live. */
static void test_free_with_live_watchers_leaks_nothing(void **state)
{
    (void)state;
    bool before[MAX_FDS];
    int n_before = open_fds(before);
    for (int i = 0; i < 3; i++) {
        ae_loop *loop = ae_loop_new(backend);
        int dummy = 0;
        pid_t pid = fork();
        if (pid == 0)
            _exit(0);
        assert_non_null(ae_signal(loop, SIGUSR2, signal_cb, &dummy));
        assert_non_null(ae_child(loop, pid, child_cb, &dummy));
        assert_non_null(ae_timer(loop, 10, 0, timer_cb, &dummy));
        assert_true(ae_run_once(loop, AE_NOWAIT) >= 0);
        ae_loop_free(loop);
        waitpid(pid, NULL, 0);
    }
    bool after[MAX_FDS];
    assert_int_equal(open_fds(after), n_before);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s BACKEND\n", argv[0]);
        return 2;
    }
    backend = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cloexec_and_no_leak),
        cmocka_unit_test(test_free_with_live_watchers_leaks_nothing),
    };
    return cmocka_run_group_tests_name(backend, tests, NULL, NULL);
}
