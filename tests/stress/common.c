/* Shared helpers of the stress suite; see common.h. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "common.h"

#ifdef HAVE_VALGRIND_H
#include <valgrind/valgrind.h>
#endif

const char *stress_backend = "poll";

static double scale = 1.0;
static uint64_t seed;

static bool under_valgrind(void)
{
#ifdef HAVE_VALGRIND_H
    if (RUNNING_ON_VALGRIND)
        return true;
#endif
    /* Without the header: valgrind preloads its own helpers into the client. */
    const char *preload = getenv("LD_PRELOAD");
    return preload && strstr(preload, "vgpreload");
}

void stress_init(void)
{
    const char *s = getenv("STRESS_SCALE");
    if (s && *s) {
        char *end;
        scale = strtod(s, &end);
        if (*end || !(scale > 0 && scale <= 1)) {
            fprintf(stderr, "STRESS_SCALE=%s: want a number in (0, 1]\n", s);
            exit(2);
        }
        printf("stress: scale %g (STRESS_SCALE)\n", scale);
    } else if (under_valgrind()) {
        /* A tenth takes about 10 s per backend under memcheck; all of it ~100 s. */
        scale = 0.1;
        printf("stress: scale %g: running under valgrind, full sizes would take minutes per backend "
               "(set STRESS_SCALE to choose)\n",
               scale);
    } else {
        printf("stress: scale 1 (full sizes)\n");
    }
    const char *z = getenv("STRESS_SEED");
    if (z && *z) {
        char *end;
        errno = 0;
        seed = strtoull(z, &end, 0);
        if (*end || errno) {
            fprintf(stderr, "STRESS_SEED=%s: want an unsigned integer\n", z);
            exit(2);
        }
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        seed = ((uint64_t)ts.tv_sec * 1000003u) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
    }
    printf("stress: backend %s, seed %" PRIu64 " (STRESS_SEED=%" PRIu64 " repeats this run)\n", stress_backend, seed,
           seed);
    fflush(stdout);
}

long stress_scaled(long full, long minimum)
{
    long n = (long)((double)full * scale + 0.5);
    return n < minimum ? minimum : n;
}

uint64_t stress_seed(void)
{
    return seed;
}

void stress_rng_init(stress_rng *rng, uint64_t salt)
{
    /* splitmix64 of seed and salt: never the all-zero state xorshift cannot leave. */
    uint64_t z = seed + salt * 0x9E3779B97F4A7C15u + 0x9E3779B97F4A7C15u;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    z ^= z >> 31;
    rng->state = z ? z : 1;
}

uint64_t stress_rng_next(stress_rng *rng)
{
    uint64_t x = rng->state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng->state = x;
    return x * 0x2545F4914F6CDD1Du;
}

uint32_t stress_rng_below(stress_rng *rng, uint32_t bound)
{
    return (uint32_t)((stress_rng_next(rng) >> 32) % bound);
}

double stress_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

ae_loop *stress_loop_new(void)
{
    ae_loop *loop = ae_loop_new(stress_backend);
    if (!loop)
        fail_msg("ae_loop_new(%s): %s", stress_backend, ae_last_error());
    assert_string_equal(ae_loop_backend(loop), stress_backend);
    return loop;
}

long stress_raise_nofile(void)
{
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur != rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            fail_msg("cannot raise RLIMIT_NOFILE to its hard limit %llu: %s", (unsigned long long)rl.rlim_max,
                     strerror(errno));
    }
    return rl.rlim_cur == RLIM_INFINITY ? (long)1 << 30 : (long)rl.rlim_cur;
}

volatile long stress_progress;
static const char *volatile guard_test = "";
static const char *volatile guard_phase = "";

void stress_phase(const char *phase)
{
    guard_phase = phase;
    stress_progress = 0;
}

static void guard_write(const char *s)
{
    ssize_t r = write(2, s, strlen(s));
    (void)r;
}

/* Async-signal-safe: write() of strings and digits only. */
static void guard_alarm(int signum)
{
    char digits[24];
    char *p = digits + sizeof digits;
    *--p = '\0';
    unsigned long v = (unsigned long)stress_progress;
    do
        *--p = (char)('0' + v % 10);
    while ((v /= 10) && p > digits);
    guard_write("\nstress: HANG in ");
    guard_write(guard_test);
    guard_write(", phase ");
    guard_write(guard_phase);
    guard_write(", progress ");
    guard_write(p);
    guard_write("\n");
    signal(signum, SIG_DFL);
    raise(signum);
}

void stress_guard_start(const char *test, unsigned seconds)
{
    guard_test = test;
    stress_phase("start");
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = guard_alarm;
    sigaction(SIGALRM, &sa, NULL);
    alarm(seconds);
}

void stress_guard_stop(void)
{
    alarm(0);
    signal(SIGALRM, SIG_DFL);
}

static void cb_guard(ae_watcher *w, void *arg)
{
    (void)w;
    (void)arg; /* only wakes the loop, so that the deadline is looked at */
}

void stress_wait_for(ae_loop *loop, bool (*done)(void *ctx), void (*describe)(void *ctx, char *buf, size_t len),
                     void *ctx, double limit, const char *what)
{
    ae_watcher *guard = ae_timer(loop, 0.1, 0.1, cb_guard, NULL);
    if (!guard)
        fail_msg("guard timer: %s", ae_last_error());
    double deadline = stress_mono() + limit;
    while (!done(ctx)) {
        int rc = ae_run_once(loop, 0);
        if (rc < 0)
            fail_msg("ae_run_once while waiting for %s: %s", what, ae_last_error());
        if (stress_mono() > deadline && !done(ctx)) {
            char buf[512] = "";
            if (describe)
                describe(ctx, buf, sizeof buf);
            fail_msg("%s: not done after %.0f s (%s)", what, limit, buf);
        }
    }
    ae_watcher_free(guard);
}

/* Put fd at target in a freshly forked child, without close-on-exec. */
static void child_place_fd(int fd, int target)
{
    if (fd == target)
        fcntl(fd, F_SETFD, 0); /* dup2 onto itself would keep FD_CLOEXEC */
    else
        dup2(fd, target);
}

pid_t stress_spawn_shell(const char *script, int gate_fd, int ready_fd)
{
    pid_t pid = fork();
    if (pid < 0)
        fail_msg("fork: %s", strerror(errno));
    if (pid == 0) {
        /* fd 4 first: gate_fd may itself be 4 and would be overwritten. */
        int gate = gate_fd == 4 ? fcntl(gate_fd, F_DUPFD_CLOEXEC, 10) : gate_fd;
        if (ready_fd >= 0)
            child_place_fd(ready_fd, 4);
        child_place_fd(gate, 3);
        /* The shell starts with default dispositions and nothing blocked,
         * whatever this process had (an ignored signal survives exec). */
        for (int sig = 1; sig < NSIG; sig++)
            if (sig != SIGKILL && sig != SIGSTOP)
                signal(sig, SIG_DFL);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        /* Not the test's output: meson waits for every writer to close it. */
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0) {
            dup2(null, 1);
            dup2(null, 2);
        }
        execl("/bin/sh", "sh", "-c", script, (char *)NULL);
        _exit(127);
    }
    return pid;
}

void stress_exec_exit(int code)
{
    char script[32];
    snprintf(script, sizeof script, "exit %d", code);
    int null = open("/dev/null", O_WRONLY);
    if (null >= 0) {
        dup2(null, 1);
        dup2(null, 2);
    }
    execl("/bin/sh", "sh", "-c", script, (char *)NULL);
    _exit(127);
}
