/*
 * demo: a tour of anyevent, in the spirit of the classic AnyEvent demo.
 *
 * It starts a handful of "jobs", each driven by a different kind of watcher,
 * and waits for all of them with one condition variable:
 *
 *   - three repeating timers (every 0.10 s, 0.25 s and 0.40 s), each a job
 *     that is done after a few ticks;
 *   - a pipe: a one-shot timer writes a message into it and closes it; an io
 *     watcher reads the message, then the end of file;
 *   - a signal: a one-shot timer sends this process SIGUSR1; a signal watcher
 *     receives it;
 *   - a child: a forked child sleeps 0.3 s and exits with status 7; a child
 *     watcher reports it;
 *   - and, not a job, an idle watcher that counts the iterations in which
 *     nothing else happened and frees itself after a while.
 *
 * Each job calls ae_cv_begin() when it starts and ae_cv_end() when it is done.
 * The ae_cv_end() that brings the count back to zero makes the condvar ready,
 * and ae_cv_recv() in main() returns. A guard timer croaks the condvar if the
 * jobs take far too long, so the demo can never hang.
 *
 * Usage: demo [backend]        e.g. "demo libev" or "demo select"
 *        demo --backends       lists the backends usable here, best first
 * Without an argument the backend named by $ANYEVENT_BACKEND is used, else the
 * first available one. Run with ANYEVENT_DEBUG=1 to see why it was chosen.
 *
 * Every call that can fail is checked: anyevent returns NULL or a negative
 * AE_E* code, and ae_last_error() says what went wrong.
 */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* fork, kill, pipe, nanosleep, strsignal */
#endif

#include <anyevent.h>

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define N_TICKERS 3
#define IDLE_CALLS 1000    /* idle callbacks before the idle watcher frees itself */
#define CHILD_SLEEP_NS (300 * 1000 * 1000L)
#define CHILD_STATUS 7
#define GUARD_SECONDS 10.0 /* croak the condvar if the jobs are not done by then */

struct demo;

/* A repeating timer whose job is done after `ticks` ticks. */
struct ticker {
    struct demo *d;
    const char *name;
    double interval;
    int ticks; /* ticks that make the job */
    int count; /* ticks so far */
    ae_watcher *w; /* NULL once freed */
};

/* Everything the callbacks share. A watcher pointer is set to NULL when its
 * watcher is freed, so the final clean-up frees each exactly once. */
struct demo {
    ae_loop *loop;
    ae_cv *done; /* ready when every job has ended */
    int jobs;
    double start; /* ae_now() at the start: lines print offsets from it */

    struct ticker tickers[N_TICKERS];

    int pipe_rd, pipe_wr; /* -1 once closed */
    ae_watcher *reader;   /* io watcher on pipe_rd */
    ae_watcher *writer;   /* one-shot timer that writes to pipe_wr */
    size_t bytes_read;

    ae_watcher *sig;    /* SIGUSR1 watcher */
    ae_watcher *killer; /* one-shot timer that sends SIGUSR1 */
    int signals;

    ae_watcher *child;
    pid_t child_pid;
    int child_status;

    ae_watcher *idle;
    long idle_calls;

    ae_watcher *guard;
};

/* ---- helpers ------------------------------------------------------------ */

/* A failed anyevent call: say which and why, and give up. */
_Noreturn static void fail(const char *what)
{
    fprintf(stderr, "demo: %s failed: %s\n", what, ae_last_error());
    exit(1);
}

/* A failed system call. */
_Noreturn static void fail_errno(const char *what)
{
    fprintf(stderr, "demo: %s failed: %s\n", what, strerror(errno));
    exit(1);
}

/* Print a line, prefixed with the loop time elapsed since the start.
 * ae_now() is the loop's cached time: the moment the current iteration's wait
 * returned, the same for every callback of that iteration. */
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void say(struct demo *d, const char *fmt, ...)
{
    va_list ap;
    printf("%6.3f  ", ae_now(d->loop) - d->start);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
}

/* One more job under way. */
static void job_begin(struct demo *d)
{
    if (ae_cv_begin(d->done) < 0)
        fail("ae_cv_begin");
    d->jobs++;
}

/* A job is done; the last one to finish makes d->done ready. */
static void job_end(struct demo *d, const char *job)
{
    say(d, "job done: %s", job);
    if (ae_cv_end(d->done) < 0)
        fail("ae_cv_end");
}

/* ---- timers ------------------------------------------------------------- */

static void ticker_cb(ae_watcher *w, void *arg)
{
    struct ticker *t = arg;

    /* A repeating timer does not drift: each deadline is the previous one
     * plus the interval, so the offsets printed stay close to multiples of
     * the interval however long the callbacks take. */
    t->count++;
    say(t->d, "timer %-6s (every %.2f s): tick %d of %d", t->name, t->interval, t->count, t->ticks);
    if (t->count == t->ticks) {
        /* Freeing a watcher from inside its own callback is safe, and its
         * callback never runs again. */
        ae_watcher_free(w);
        t->w = NULL;
        job_end(t->d, t->name);
    }
}

/* ---- io: a pipe --------------------------------------------------------- */

static void writer_cb(ae_watcher *w, void *arg)
{
    struct demo *d = arg;
    static const char msg[] = "hello through the pipe";
    (void)w;

    say(d, "writer: writing %zu bytes, then closing the pipe", strlen(msg));
    /* Less than PIPE_BUF bytes into an empty pipe: one write, no blocking. */
    if (write(d->pipe_wr, msg, strlen(msg)) != (ssize_t)strlen(msg))
        fail_errno("write");
    /* Closing the write end is what gives the reader its end of file. No
     * watcher watches pipe_wr, so it may be closed at any time. */
    close(d->pipe_wr);
    d->pipe_wr = -1;
    /* The timer has fired: it is inactive now but remains ours until
     * ae_watcher_free(), which main() calls at the end. */
}

static void reader_cb(ae_watcher *w, int revents, void *arg)
{
    struct demo *d = arg;
    char buf[64];
    (void)revents; /* AE_READ: the only event this watcher asked for */

    /* io watchers are level-triggered: one read per callback is enough, as
     * the watcher is called again in the next iteration while data is left. */
    ssize_t n = read(d->pipe_rd, buf, sizeof buf);
    if (n < 0) {
        if (errno == EINTR || errno == EAGAIN)
            return; /* called again while the fd is readable */
        fail_errno("read");
    }
    if (n > 0) {
        d->bytes_read += (size_t)n;
        say(d, "reader: got \"%.*s\"", (int)n, buf);
        return;
    }

    /* End of file. Free the watcher *before* closing its fd: a watched fd
     * must not be closed, as its number may be reused at once. */
    say(d, "reader: end of file");
    ae_watcher_free(w);
    d->reader = NULL;
    close(d->pipe_rd);
    d->pipe_rd = -1;
    job_end(d, "pipe");
}

/* ---- signals ------------------------------------------------------------ */

static void killer_cb(ae_watcher *w, void *arg)
{
    struct demo *d = arg;
    (void)w;

    say(d, "sending SIGUSR1 to myself");
    if (kill(getpid(), SIGUSR1) < 0)
        fail_errno("kill");
}

static void signal_cb(ae_watcher *w, int signum, void *arg)
{
    struct demo *d = arg;

    /* Not run inside the signal handler: anyevent's handler only notes the
     * signal and wakes the loop, and this callback runs from the loop like
     * any other, so it may do anything. */
    d->signals++;
    say(d, "signal watcher: got signal %d (%s)", signum, strsignal(signum));
    /* Freeing the last watcher of SIGUSR1 gives the signal back its previous
     * disposition (here the default: terminate the process). */
    ae_watcher_free(w);
    d->sig = NULL;
    job_end(d, "signal");
}

/* ---- child processes ---------------------------------------------------- */

static void child_cb(ae_watcher *w, pid_t pid, int status, void *arg)
{
    struct demo *d = arg;
    (void)w;

    d->child_status = status;
    if (WIFEXITED(status))
        say(d, "child %d exited with status %d", (int)pid, WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        say(d, "child %d was killed by signal %d", (int)pid, WTERMSIG(status));
    /* A watcher for one pid is inactive once it has reported (anyevent has
     * reaped the child); it remains ours until ae_watcher_free(). */
    job_end(d, "child");
}

static pid_t spawn_child(void)
{
    /* Nothing buffered must be left for the child to inherit. */
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        fail_errno("fork");
    if (pid == 0) {
        /* The child sleeps and leaves with _exit(), which unlike exit() runs
         * none of the parent's atexit handlers or stdio flushes. */
        struct timespec ts = {0, CHILD_SLEEP_NS};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
            ;
        _exit(CHILD_STATUS);
    }
    return pid;
}

/* ---- idle --------------------------------------------------------------- */

static void idle_cb(ae_watcher *w, void *arg)
{
    struct demo *d = arg;

    /* Called in every iteration in which nothing else ran. While an idle
     * watcher exists the loop never blocks, so it spins: free it as soon as
     * its background work is done. */
    if (++d->idle_calls == IDLE_CALLS) {
        say(d, "idle: called %ld times, freeing it", d->idle_calls);
        ae_watcher_free(w);
        d->idle = NULL;
    }
}

/* ---- the guard ---------------------------------------------------------- */

static void guard_cb(ae_watcher *w, void *arg)
{
    struct demo *d = arg;
    (void)w;

    say(d, "guard: the jobs take far too long, giving up");
    /* ae_cv_recv() in main() returns AE_ECROAKED; ae_cv_error() has the text. */
    if (ae_cv_croak(d->done, "timed out waiting for the jobs") < 0)
        fail("ae_cv_croak");
}

/* ---- main --------------------------------------------------------------- */

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        double interval;
        int ticks;
    } spec[N_TICKERS] = {
        {"fast", 0.10, 10}, /* done at 1.0 s */
        {"medium", 0.25, 4}, /* done at 1.0 s */
        {"slow", 0.40, 3}, /* done at 1.2 s */
    };
    struct demo d = {.pipe_rd = -1, .pipe_wr = -1};

    /* Line by line, also when the output goes to a pipe or a file. */
    setvbuf(stdout, NULL, _IOLBF, 0);

    if (argc > 1 && strcmp(argv[1], "--backends") == 0) {
        puts(ae_backend_names()); /* the ones usable here, best first */
        return 0;
    }

    /* The child process is forked first, before any loop exists, so that it
     * inherits none of anyevent's state (using a loop across fork() is not
     * supported yet). Its watcher comes later, which is fine: a child that
     * exits before its watcher is created is still reported. */
    d.child_pid = spawn_child();

    /* NULL lets anyevent choose; an unknown name fails with AE_ENOENT and a
     * message that lists the available backends. */
    d.loop = ae_loop_new(argc > 1 ? argv[1] : NULL);
    if (!d.loop)
        fail("ae_loop_new");
    printf("anyevent demo: backend \"%s\" (available: %s)\n", ae_loop_backend(d.loop), ae_backend_names());
    d.start = ae_now(d.loop);

    d.done = ae_cv_new(d.loop);
    if (!d.done)
        fail("ae_cv_new");

    /* Creating a watcher starts it: from here on the loop has work to do,
     * though nothing runs until the loop does (in ae_cv_recv() below). */

    /* 1. Three repeating timers: first tick after one interval. */
    for (int i = 0; i < N_TICKERS; i++) {
        struct ticker *t = &d.tickers[i];
        t->d = &d;
        t->name = spec[i].name;
        t->interval = spec[i].interval;
        t->ticks = spec[i].ticks;
        job_begin(&d);
        t->w = ae_timer(d.loop, t->interval, t->interval, ticker_cb, t);
        if (!t->w)
            fail("ae_timer");
    }

    /* 2. A pipe: read by an io watcher, written by a one-shot timer. */
    int fds[2];
    if (pipe(fds) < 0)
        fail_errno("pipe");
    d.pipe_rd = fds[0];
    d.pipe_wr = fds[1];
    job_begin(&d);
    d.reader = ae_io(d.loop, d.pipe_rd, AE_READ, reader_cb, &d);
    if (!d.reader)
        fail("ae_io");
    d.writer = ae_timer(d.loop, 0.5, 0, writer_cb, &d);
    if (!d.writer)
        fail("ae_timer");

    /* 3. A signal: watched first, sent later by a one-shot timer. A signal
     * that arrives once ae_signal() has returned is never lost. */
    job_begin(&d);
    d.sig = ae_signal(d.loop, SIGUSR1, signal_cb, &d);
    if (!d.sig)
        fail("ae_signal");
    d.killer = ae_timer(d.loop, 0.7, 0, killer_cb, &d);
    if (!d.killer)
        fail("ae_timer");

    /* 4. The child process forked above. */
    job_begin(&d);
    d.child = ae_child(d.loop, d.child_pid, child_cb, &d);
    if (!d.child)
        fail("ae_child");

    /* 5. An idle watcher: not a job, it frees itself. */
    d.idle = ae_idle(d.loop, idle_cb, &d);
    if (!d.idle)
        fail("ae_idle");

    /* The guard: a one-shot timer far beyond the expected run time. */
    d.guard = ae_timer(d.loop, GUARD_SECONDS, 0, guard_cb, &d);
    if (!d.guard)
        fail("ae_timer");

    /* Run the loop until every job has ended. */
    say(&d, "waiting for %d jobs", d.jobs);
    int rc = ae_cv_recv(d.done, NULL);
    if (rc == AE_ECROAKED) {
        fprintf(stderr, "demo: %s\n", ae_cv_error(d.done));
        /* Frees every watcher and condvar still on the loop, then the loop. */
        ae_loop_free(d.loop);
        return 1;
    }
    if (rc < 0)
        fail("ae_cv_recv");
    say(&d, "all %d jobs done", d.jobs);

    printf("\nsummary\n");
    for (int i = 0; i < N_TICKERS; i++)
        printf("  timer %-6s  %d ticks every %.2f s\n", d.tickers[i].name, d.tickers[i].count,
               d.tickers[i].interval);
    printf("  pipe          %zu bytes read\n", d.bytes_read);
    printf("  signal        %d SIGUSR1 received\n", d.signals);
    printf("  child         pid %d, exit status %d (its watcher is now %s)\n", (int)d.child_pid,
           WIFEXITED(d.child_status) ? WEXITSTATUS(d.child_status) : -1,
           ae_watcher_active(d.child) ? "active" : "inactive");
    printf("  idle          %ld calls\n", d.idle_calls);
    printf("  run time      %.3f s\n", ae_now(d.loop) - d.start);

    /* Clean up. The callbacks set the pointers of the watchers they freed to
     * NULL, and freeing NULL does nothing. ae_loop_free() alone would free all
     * of these too; freeing them one by one shows that fired one-shot timers
     * and a child watcher that has reported stay valid until freed. */
    for (int i = 0; i < N_TICKERS; i++)
        ae_watcher_free(d.tickers[i].w);
    ae_watcher_free(d.reader);
    ae_watcher_free(d.writer);
    ae_watcher_free(d.sig);
    ae_watcher_free(d.killer);
    ae_watcher_free(d.child);
    ae_watcher_free(d.idle);
    ae_watcher_free(d.guard); /* still armed: freeing stops it */
    ae_cv_free(d.done);
    ae_loop_free(d.loop);
    if (d.pipe_rd >= 0)
        close(d.pipe_rd);
    if (d.pipe_wr >= 0)
        close(d.pipe_wr);
    return 0;
}
