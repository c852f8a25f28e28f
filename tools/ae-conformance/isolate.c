/* Running one piece of work in a child process with a deadline, capturing
 * its output (see isolate.h). */
#include "isolate.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

/* What is kept of a child's output; the rest is read and dropped. */
#define OUTPUT_KEPT (256 * 1024)
/* How often a child whose pipe stays open is checked for having ended. */
#define TICK_MS 20
/* How long to wait for the pipe to close once the child and its group are
 * gone (something that left the group may still hold it). */
#define DRAIN_SECONDS 1.0

static const int ending_signals[] = {SIGINT, SIGTERM, SIGHUP};
#define N_ENDING_SIGNALS (sizeof ending_signals / sizeof ending_signals[0])

/* The running child's process group, for the signal handler. */
static volatile sig_atomic_t running_group;
static struct sigaction default_action; /* SIG_DFL, set up before the handler can run */

/* Ends the running check's group, then this process, by the same signal. */
static void end_with_child(int signum)
{
    if (running_group > 0)
        kill(-(pid_t)running_group, SIGKILL);
    sigaction(signum, &default_action, NULL);
    raise(signum); /* blocked until this handler returns, then fatal */
}

int isolate_init(void)
{
    memset(&default_action, 0, sizeof default_action);
    default_action.sa_handler = SIG_DFL;
    sigemptyset(&default_action.sa_mask);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = end_with_child;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < N_ENDING_SIGNALS; i++)
        if (sigaction(ending_signals[i], &sa, NULL) < 0)
            return -1;
    return 0;
}

static double monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The child's side: never returns. */
static void become_child(int pipe_write, pid_t parent, int (*work)(void *), void *arg)
{
    setpgid(0, 0);
#ifdef __linux__
    prctl(PR_SET_PDEATHSIG, SIGKILL);
#endif
    if (getppid() != parent) /* the runner died before the line above */
        _exit(127);
    /* Back to what a fresh process has: the checks watch signals themselves. */
    for (size_t i = 0; i < N_ENDING_SIGNALS; i++)
        signal(ending_signals[i], SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    int null_fd = open("/dev/null", O_RDONLY);
    if (null_fd < 0 || dup2(null_fd, 0) < 0 || dup2(pipe_write, 1) < 0 || dup2(pipe_write, 2) < 0)
        _exit(127);
    close(null_fd);
    close(pipe_write);
    setvbuf(stdout, NULL, _IONBF, 0);
    exit(work(arg));
}

/* Appends what the pipe has to run->output; returns 0 at end of file, 1 if
 * it may have more, -1 on a read error. */
static int read_some(int fd, isolated_run *run)
{
    char buf[8192];
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0)
        return errno == EINTR || errno == EAGAIN ? 1 : -1;
    if (n == 0)
        return 0;
    size_t room = OUTPUT_KEPT - run->length;
    size_t keep = (size_t)n < room ? (size_t)n : room;
    memcpy(run->output + run->length, buf, keep);
    run->length += keep;
    run->output[run->length] = '\0';
    if (keep < (size_t)n)
        run->truncated = true;
    return 1;
}

/* Reads the pipe until end of file or until the given time; returns true at
 * end of file. */
static bool read_until(int fd, isolated_run *run, double until)
{
    for (;;) {
        double left = until - monotonic();
        if (left <= 0)
            return false;
        int ms = (int)(left * 1000) + 1;
        struct pollfd pfd = {fd, POLLIN, 0};
        int ready = poll(&pfd, 1, ms < TICK_MS ? ms : TICK_MS);
        if (ready < 0 && errno != EINTR)
            return true; /* cannot wait on it: treat as closed */
        if (ready > 0) {
            int r = read_some(fd, run);
            if (r <= 0)
                return true;
        } else {
            return false; /* a tick passed: let the caller look at the child */
        }
    }
}

/* Whether the child has ended, leaving it unreaped (a zombie keeps its pid,
 * so its process group's id cannot be reused while we kill the group). */
static bool has_ended(pid_t pid)
{
    siginfo_t info;
    memset(&info, 0, sizeof info);
    if (waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT) < 0)
        return errno == ECHILD;
    return info.si_pid == pid;
}

int isolate_run(int (*work)(void *arg), void *arg, double timeout, isolated_run *run)
{
    memset(run, 0, sizeof *run);
    run->output = malloc(OUTPUT_KEPT + 1);
    if (!run->output)
        return -1;
    run->output[0] = '\0';
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) {
        free(run->output);
        run->output = NULL;
        return -1;
    }
    fflush(stdout); /* or the child would write our buffered output again */
    fflush(stderr);
    pid_t parent = getpid();
    double start = monotonic();
    pid_t pid = fork();
    if (pid < 0) {
        int saved = errno;
        close(p[0]);
        close(p[1]);
        free(run->output);
        run->output = NULL;
        errno = saved;
        return -1;
    }
    if (pid == 0) {
        close(p[0]);
        become_child(p[1], parent, work, arg);
    }
    close(p[1]);
    setpgid(pid, pid); /* as the child does: whichever runs first */
    running_group = pid;

    double deadline = start + timeout;
    bool eof = false, timed_out = false;
    for (;;) {
        if (!eof) {
            eof = read_until(p[0], run, deadline);
        } else {
            struct timespec tick = {0, TICK_MS * 1000000L};
            nanosleep(&tick, NULL);
        }
        if (has_ended(pid))
            break;
        if (monotonic() >= deadline) {
            timed_out = true;
            break;
        }
    }
    run->seconds = monotonic() - start;
    /* Whatever is still in the group (everything, on a timeout) goes now. */
    kill(-pid, SIGKILL);
    if (timed_out)
        kill(pid, SIGKILL); /* should its setpgid have failed */
    running_group = 0;
    if (!eof)
        read_until(p[0], run, monotonic() + DRAIN_SECONDS);
    close(p[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (timed_out) {
        run->end = ISOLATED_TIMED_OUT;
    } else if (WIFSIGNALED(status)) {
        run->end = ISOLATED_SIGNALED;
        run->code = WTERMSIG(status);
    } else {
        run->end = ISOLATED_EXITED;
        run->code = WEXITSTATUS(status);
    }
    return 0;
}

void isolated_run_free(isolated_run *run)
{
    free(run->output);
    run->output = NULL;
    run->length = 0;
}
