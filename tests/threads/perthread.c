/*
 * One loop per thread, N threads (2 x cores, and 64), each running io,
 * timers, a signal watcher and a child watcher at once. Every round of
 * SIGUSR2 reaches every loop (the next is sent only once all saw the last,
 * so each loop must count exactly the rounds sent), and each loop gets its
 * own child's status.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common.h"
#include "scenarios.h"

struct lt {
    int index;
    atomic_int ready;   /* watchers are in place */
    atomic_int signals; /* rounds seen */
    atomic_bool stop;
    atomic_bool enough; /* a child report and a few ticks: the main thread may stop it */
    atomic_bool failing;
    int ticks, reads, child_calls, child_status;
    int pipe[2];
    pid_t child;
    const char *failed;
    char failed_detail[256];
};

static void on_sig(ae_watcher *w, int signum, void *arg)
{
    (void)w;
    (void)signum;
    atomic_fetch_add(&((struct lt *)arg)->signals, 1);
}

static void on_tick(ae_watcher *w, void *arg)
{
    (void)w;
    struct lt *t = arg;
    t->ticks++;
    if (write(t->pipe[1], "x", 1) != 1)
        t->failed = "write";
}

static void on_read(ae_watcher *w, int revents, void *arg)
{
    (void)w;
    (void)revents;
    struct lt *t = arg;
    char buf[64];
    ssize_t n = read(t->pipe[0], buf, sizeof buf);
    if (n > 0)
        t->reads += (int)n;
}

static void on_child(ae_watcher *w, pid_t pid, int status, void *arg)
{
    (void)w;
    struct lt *t = arg;
    if (pid != t->child)
        t->failed = "a child's status went to the wrong loop";
    t->child_calls++;
    t->child_status = status;
}

static void *lt_run(void *arg)
{
    struct lt *t = arg;
    ae_loop *loop = ae_loop_new(threads_backend);
    if (!loop || pipe(t->pipe) != 0) {
        t->failed = "ae_loop_new or pipe";
        atomic_store(&t->failing, true);
        atomic_store(&t->ready, 1);
        return NULL;
    }
    char cmd[32];
    snprintf(cmd, sizeof cmd, "exit %d", t->index & 0x7f);
    t->child = fork();
    if (t->child == 0) {
        /* Through exec: under valgrind, a child that only _exit()s is judged
         * for its copy of the parent's heap, and its status becomes 99. */
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    ae_watcher *ws[4] = {
        ae_signal(loop, SIGUSR2, on_sig, t),
        ae_timer(loop, 0.001, 0.002, on_tick, t),
        ae_io(loop, t->pipe[0], AE_READ, on_read, t),
        t->child > 0 ? ae_child(loop, t->child, on_child, t) : NULL,
    };
    for (int i = 0; i < 4; i++)
        if (!ws[i]) {
            t->failed = "a watcher";
            snprintf(t->failed_detail, sizeof t->failed_detail, "%s", ae_last_error());
        }
    atomic_store(&t->ready, 1);
    while (!t->failed && !atomic_load(&t->stop)) {
        if (ae_run_once(loop, 0) < 0)
            t->failed = "ae_run_once";
        if (t->child_calls && t->ticks >= 3)
            atomic_store(&t->enough, true);
    }
    if (t->failed)
        atomic_store(&t->failing, true);
    /* What the last ticks wrote. */
    while (!t->failed && t->reads < t->ticks)
        ae_run_once(loop, AE_NOWAIT);
    ae_loop_free(loop);
    close(t->pipe[0]);
    close(t->pipe[1]);
    return NULL;
}

static void run_threads(int n)
{
    int rounds = (int)threads_scaled(20, 3);
    struct lt *ts = calloc((size_t)n, sizeof *ts);
    pthread_t *th = calloc((size_t)n, sizeof *th);
    assert_non_null(ts);
    assert_non_null(th);
    for (int i = 0; i < n; i++) {
        ts[i].index = i;
        assert_int_equal(pthread_create(&th[i], NULL, lt_run, &ts[i]), 0);
    }
    for (int i = 0; i < n; i++)
        while (!atomic_load(&ts[i].ready))
            sched_yield();
    double end = threads_mono() + 60;
    for (int r = 1; r <= rounds; r++) {
        kill(getpid(), SIGUSR2);
        for (int i = 0; i < n; i++)
            while (atomic_load(&ts[i].signals) < r && !atomic_load(&ts[i].failing)) {
                if (threads_mono() > end)
                    fail_msg("round %d: loop %d saw only %d rounds", r, i, atomic_load(&ts[i].signals));
                sched_yield();
            }
    }
    /* Enough io and timers, and every child reported, before stopping. */
    for (int i = 0; i < n; i++) {
        while (!atomic_load(&ts[i].failing) && !atomic_load(&ts[i].enough)) {
            if (threads_mono() > end)
                fail_msg("loop %d: its child never reported, or its timer never ticked", i);
            sched_yield();
        }
    }
    for (int i = 0; i < n; i++)
        atomic_store(&ts[i].stop, true);
    for (int i = 0; i < n; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    for (int i = 0; i < n; i++) {
        if (ts[i].failed)
            fail_msg("loop %d: %s %s", i, ts[i].failed, ts[i].failed_detail);
        assert_int_equal(atomic_load(&ts[i].signals), rounds); /* none lost, none twice */
        assert_int_equal(ts[i].child_calls, 1);
        assert_true(WIFEXITED(ts[i].child_status));
        assert_int_equal(WEXITSTATUS(ts[i].child_status), i & 0x7f);
        assert_true(ts[i].reads >= ts[i].ticks);
    }
    printf("threads: %d loops in %d threads, %d signal rounds each, every child reported\n", n, n, rounds);
    free(ts);
    free(th);
}

void test_loop_per_thread_2x_cores(void **state)
{
    (void)state;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    run_threads(cores > 0 ? (int)(2 * cores) : 4);
}

void test_loop_per_thread_64(void **state)
{
    (void)state;
    run_threads(threads_under_valgrind() || threads_under_tsan() ? 16 : 64);
}
