/*
 * fork() from one thread while other threads run loops, create and free
 * loops and watchers (taking every process-wide lock of the core), fork and
 * reap children of their own, and a storm of signals goes on: the child uses
 * and frees the loops of the thread that forked, makes a new one, and never
 * hangs (a lock held by another thread at fork(), or a signal handler that
 * was running on one, would hang it).
 *
 * The loops the other threads were running are left alone in the child:
 * they were in the middle of an iteration on a thread the child does not
 * have.
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
#include <string.h>
#include <pthread.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "common.h"
#include "scenarios.h"

static atomic_bool storm_stop;

static void on_signal(ae_watcher *w, int signum, void *arg)
{
    (void)w;
    (void)signum;
    atomic_fetch_add_explicit((atomic_int *)arg, 1, memory_order_relaxed);
}

static void on_timer(ae_watcher *w, void *arg)
{
    (void)w;
    (*(int *)arg)++;
}

static void on_child(ae_watcher *w, pid_t pid, int status, void *arg)
{
    (void)w;
    (void)pid;
    (void)status;
    (*(int *)arg)++;
}

/* Signals to the whole process, as fast as they go. */
static void *storm_run(void *arg)
{
    (void)arg;
    while (!atomic_load(&storm_stop))
        kill(getpid(), SIGUSR1);
    return NULL;
}

/* A loop that watches the storm, with a timer, and a child of its own
 * forked every 10 ticks. */
struct loop_thread {
    ae_loop *loop;
    int ticks, reported;
    ae_watcher *child;
    const char *failed;
};

static void on_loop_tick(ae_watcher *w, void *arg)
{
    (void)w;
    struct loop_thread *t = arg;
    if (++t->ticks % 10 || t->child)
        return;
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/true", "true", (char *)NULL); /* not judged by valgrind: see perthread.c */
        _exit(0);
    }
    if (pid < 0 || !(t->child = ae_child(t->loop, pid, on_child, &t->reported)))
        t->failed = "fork or ae_child";
}

static void *loop_run(void *arg)
{
    (void)arg;
    struct loop_thread t = {.loop = ae_loop_new(threads_backend)};
    if (!t.loop)
        return "ae_loop_new";
    atomic_int sigs = 0;
    ae_watcher *sig = ae_signal(t.loop, SIGUSR1, on_signal, &sigs);
    ae_watcher *tick = ae_timer(t.loop, 0.001, 0.001, on_loop_tick, &t);
    if (!sig || !tick)
        return "watchers";
    while (!atomic_load(&storm_stop) || t.child) {
        if (ae_run_once(t.loop, 0) < 0)
            return "ae_run_once";
        if (t.failed)
            return (void *)t.failed;
        if (t.reported) {
            ae_watcher_free(t.child);
            t.child = NULL;
            t.reported = 0;
        }
    }
    ae_loop_free(t.loop);
    return NULL;
}

/* Loops, signal watchers and the default loop made and freed in a row: the
 * registry's, the signals' and the default loop's locks. */
static void *churn_run(void *arg)
{
    (void)arg;
    atomic_int sigs = 0;
    while (!atomic_load(&storm_stop)) {
        ae_loop *loop = ae_loop_new(threads_backend);
        if (!loop)
            return "ae_loop_new";
        ae_watcher *w = ae_signal(loop, SIGUSR2, on_signal, &sigs);
        if (!w)
            return "ae_signal";
        ae_watcher_free(w);
        ae_loop_free(loop);
        ae_loop_free(ae_loop_default());
    }
    return NULL;
}

/* Where a child is, in a page shared with the parent: a hung child's
 * report says which step it waits in and what it has seen so far. */
enum { CHILD_EXITING = 100 }; /* the step after child_side(): _exit() or exec */
struct child_progress {
    atomic_int step;       /* the step of child_side() under way (its exit codes), or CHILD_EXITING */
    atomic_int iterations; /* ae_run_once() calls of step 3 that returned */
    atomic_int fired;      /* the step's timer fired */
    atomic_int sigs_seen;  /* signal callbacks since the child began */
    atomic_int mask_repaired; /* the child found signals blocked and unblocked them (ThreadSanitizer) */
};

static struct child_progress *progress;

/* The main thread's signal mask when the test began: neither the test nor
 * anyevent's core and backends change it, so a child forked from that
 * thread has it. */
static sigset_t start_mask;

static bool same_mask(const sigset_t *a, const sigset_t *b)
{
    for (int s = 1; s < NSIG; s++)
        if (sigismember(a, s) != sigismember(b, s))
            return false;
    return true;
}

/* The mask the child inherited. ThreadSanitizer (gcc 12's libtsan) can
 * leave a thread with every signal blocked: when a signal arrives while it
 * runs a deferred handler, the nested run saves the all-blocked mask over
 * the one to restore (LLVM issue google/sanitizers#1855, fixed upstream by
 * llvm-project PR 138599). A child of that thread would never see its
 * raise(SIGUSR1), and hang. Under ThreadSanitizer the child puts the mask
 * back (and says so); anywhere else a changed mask is a failure. */
static int child_mask_check(void)
{
    sigset_t inherited;
    pthread_sigmask(SIG_SETMASK, NULL, &inherited);
    if (same_mask(&inherited, &start_mask))
        return 0;
    if (!threads_under_tsan())
        return 8;
    pthread_sigmask(SIG_SETMASK, &start_mask, NULL);
    atomic_store(&progress->mask_repaired, 1);
    return 0;
}

static void progress_reset(void)
{
    atomic_store(&progress->step, 0);
    atomic_store(&progress->iterations, 0);
    atomic_store(&progress->fired, 0);
    atomic_store(&progress->sigs_seen, 0);
    atomic_store(&progress->mask_repaired, 0);
}

/* In the child. Exit status 0, or the step that failed (8: the signal mask
 * it inherited was changed, see child_mask_check). */
static int child_side(ae_loop *loop, atomic_int *sigs)
{
    int fired = 0;
    int seen = atomic_load(sigs);
    atomic_store(&progress->step, 1);
    if (child_mask_check() != 0)
        return 8;
    raise(SIGUSR1);
    ae_watcher *t = ae_timer(loop, 0.001, 0, on_timer, &fired);
    if (!t)
        return 1;
    atomic_store(&progress->step, 3);
    double end = threads_mono() + 10;
    while (!fired || atomic_load(sigs) == seen) {
        if (ae_run_once(loop, 0) < 0)
            return 2;
        atomic_fetch_add(&progress->iterations, 1);
        atomic_store(&progress->fired, fired);
        atomic_store(&progress->sigs_seen, atomic_load(sigs) - seen);
        if (threads_mono() > end)
            return 3;
    }
    atomic_store(&progress->step, 4);
    ae_loop_free(loop);
    ae_loop *fresh = ae_loop_new(threads_backend);
    if (!fresh)
        return 4;
    atomic_store(&progress->step, 5);
    fired = 0;
    if (!ae_timer(fresh, 0.001, 0, on_timer, &fired))
        return 5;
    atomic_store(&progress->step, 6);
    if (ae_run(fresh) != 0 || fired != 1)
        return 6;
    atomic_store(&progress->step, 7);
    ae_loop_free(fresh);
    return 0;
}

/* The hung child's open fds: what each is, and an eventfd's counter (a
 * wake-up written but never read, or never written). */
static void child_fds_report(pid_t pid)
{
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%d/fd", (int)pid);
    for (int fd = 0; fd < 64; fd++) {
        char path[96], target[128], info[96], line[256];
        snprintf(path, sizeof path, "%s/%d", dir, fd);
        ssize_t n = readlink(path, target, sizeof target - 1);
        if (n < 0)
            continue;
        target[n] = 0;
        printf("threads: hung child %d fd %d: %s", (int)pid, fd, target);
        snprintf(info, sizeof info, "/proc/%d/fdinfo/%d", (int)pid, fd);
        FILE *f = fopen(info, "r");
        while (f && fgets(line, sizeof line, f))
            if (!strncmp(line, "eventfd-count:", 14))
                printf(" (%.*s)", (int)strcspn(line, "\n"), line);
        if (f)
            fclose(f);
        printf("\n");
    }
}

/* A hung child's state, printed before it is killed, so that a hang that
 * comes once in thousands of forks says where it was: its step and what it
 * saw (child_progress), what it waits in (wchan), its system call and
 * arguments, its kernel stack (as root), its fds. */
static void child_report(pid_t pid)
{
    printf("threads: hung child %d: step %d, %d iterations, timer fired %d, %d signal callbacks\n", (int)pid,
           atomic_load(&progress->step), atomic_load(&progress->iterations), atomic_load(&progress->fired),
           atomic_load(&progress->sigs_seen));
    child_fds_report(pid);
    /* Its signals: pending, blocked, caught (a signal blocked or pending
     * but never delivered would leave it waiting). */
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *status = fopen(path, "r");
    while (status && fgets(line, sizeof line, status))
        if (!strncmp(line, "Sig", 3) || !strncmp(line, "ShdPnd", 6) || !strncmp(line, "State", 5))
            printf("threads: hung child %d status: %s", (int)pid, line);
    if (status)
        fclose(status);
    static const char *const files[] = {"wchan", "syscall", "stack"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char path[64], line[256];
        snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, files[i]);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        while (fgets(line, sizeof line, f))
            printf("threads: hung child %d %s: %s%s", (int)pid, files[i], line,
                   strchr(line, '\n') ? "" : "\n");
        fclose(f);
    }
}

/* What the child has done so far, as one number that grows. */
static int64_t child_progress_mark(void)
{
    return (int64_t)atomic_load(&progress->step) << 32 | (uint32_t)atomic_load(&progress->iterations);
}

/* Waits for pid; kills it if it makes no progress (child_progress) for
 * seconds: it hung. A child that has begun to exit is given longer: its
 * exit unmaps everything it has (a ThreadSanitizer process's shadow memory
 * took over 20 s to unmap at a load of 50). Returns its exit status, or -1
 * if it hung, -2 if it died of a signal. */
static int child_wait(pid_t pid, double seconds)
{
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    double end = threads_mono() + seconds;
    int64_t mark = child_progress_mark();
    for (;;) {
        int status;
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            if (pidfd >= 0)
                close(pidfd);
            return WIFEXITED(status) ? WEXITSTATUS(status) : -2;
        }
        if (r < 0 && errno != EINTR)
            return -2;
        int64_t now_mark = child_progress_mark();
        if (now_mark != mark) {
            mark = now_mark;
            end = threads_mono() + (atomic_load(&progress->step) == CHILD_EXITING ? 6 * seconds : seconds);
        }
        double left = end - threads_mono();
        if (left < 0) {
            child_report(pid);
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            if (pidfd >= 0)
                close(pidfd);
            return -1;
        }
        /* The pidfd turns readable when the child exits; without one, look
         * again every millisecond. */
        struct pollfd p = {pidfd, POLLIN, 0};
        if (pidfd >= 0)
            poll(&p, 1, (int)(left * 1000) + 1);
        else
            poll(NULL, 0, 1);
    }
}

void test_fork_under_signal_storm(void **state)
{
    (void)state;
    /* Once skipped on libuv: one child in some thousands hung (fork 391 of
     * 1000, about once in ten runs, early in issue 14's work). Not seen in
     * 157 runs of 1000 forks since (57, then 100 in a row at load 15-70 on
     * 2 cores at commit 48735e4), so it runs everywhere; if it comes back,
     * child_report() prints where the hung child waits. A hang is 20 s
     * without progress (child_progress), 120 s for a child that exits. */
    long forks = threads_scaled(1000, 20);
    progress = mmap(NULL, sizeof *progress, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(progress != MAP_FAILED);
    pthread_sigmask(SIG_SETMASK, NULL, &start_mask);
    ae_loop *loop = threads_loop_new();
    atomic_int sigs = 0;
    ae_watcher *sig = ae_signal(loop, SIGUSR1, on_signal, &sigs);
    assert_non_null(sig);

    atomic_store(&storm_stop, false);
    enum { N_LOOPS = 2 };
    pthread_t storm, churn, loops[N_LOOPS];
    assert_int_equal(pthread_create(&storm, NULL, storm_run, NULL), 0);
    assert_int_equal(pthread_create(&churn, NULL, churn_run, NULL), 0);
    for (int i = 0; i < N_LOOPS; i++)
        assert_int_equal(pthread_create(&loops[i], NULL, loop_run, NULL), 0);

    long done = 0, repaired = 0;
    int failure = 0;
    for (; done < forks && !failure; done++) {
        assert_true(ae_run_once(loop, AE_NOWAIT) >= 0);
        progress_reset();
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            int rc = child_side(loop, &sigs);
            atomic_store(&progress->step, CHILD_EXITING);
            /* Under valgrind, the child must not be judged for the copy of
             * the parent's heap it holds (the other threads' loops). */
            if (rc == 0 && threads_under_valgrind())
                execl("/bin/true", "true", (char *)NULL);
            _exit(rc);
        }
        failure = child_wait(pid, 20);
        repaired += atomic_load(&progress->mask_repaired);
    }
    atomic_store(&storm_stop, true);
    void *why;
    assert_int_equal(pthread_join(storm, NULL), 0);
    assert_int_equal(pthread_join(churn, &why), 0);
    if (why)
        fail_msg("churn thread failed: %s: %s", (char *)why, ae_last_error());
    for (int i = 0; i < N_LOOPS; i++) {
        assert_int_equal(pthread_join(loops[i], &why), 0);
        if (why)
            fail_msg("loop thread failed: %s", (char *)why);
    }
    if (failure == -1)
        fail_msg("fork %ld of %ld: the child hung", done, forks);
    if (failure)
        fail_msg("fork %ld of %ld: the child failed (%d)", done, forks, failure);
    printf("threads: %ld forks under a signal storm, every child done\n", done);
    if (repaired)
        printf("threads: %ld children unblocked the signals ThreadSanitizer had left blocked\n", repaired);
    /* Drain what the storm left pending before the loop goes. */
    ae_run_once(loop, AE_NOWAIT);
    ae_loop_free(loop);
    munmap(progress, sizeof *progress);
}
