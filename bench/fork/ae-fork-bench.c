/*
 * ae-fork-bench: how fast processes are made, and what it costs the loop,
 * with the parent's memory at 5 MiB, 200 MiB and 2 GiB (every page written,
 * MADV_NOHUGEPAGE): plain fork()+_exit, posix_spawn of /bin/true,
 * ae_fork_exec, ae_fork_new and ae_fork_fork from a template that required a
 * library; then RPC no-op calls through one worker and through a pool.
 * Every repetition runs every case at every size (the parent's memory is
 * made again for each size); every figure is the median of the
 * repetitions. "blocked" is the time spent inside the calls that start one
 * process (what the loop cannot run meanwhile), median per spawn.
 *
 *   build/bench/ae-fork-bench [--quick] [--backend NAME] [--plot FILE.png] [--table FILE.md]
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "anyevent.h"
#include "anyevent/fork.h"

extern char **environ;

enum { C_FORK, C_SPAWN, C_EXEC, C_NEW, C_TMPL, NCASES };
static const char *case_names[NCASES] = {"fork()+_exit", "posix_spawn /bin/true", "ae_fork_exec",
                                         "ae_fork_new", "ae_fork_fork (template)"};
#define MAX_SIZES 4
#define MAX_REPS 9

static ae_loop *loop;
static ae_fork *tmpl;
static double sample_secs = 1.0;
static int reps = 5;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    if (n == 0)
        return NAN;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* ---- the parent's memory --------------------------------------------------- */

static void *ballast;
static size_t ballast_size;

static void set_ballast(size_t mib)
{
    if (ballast)
        munmap(ballast, ballast_size);
    ballast_size = mib << 20;
    ballast = mmap(NULL, ballast_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (ballast == MAP_FAILED) {
        perror("ae-fork-bench: mmap");
        exit(1);
    }
    madvise(ballast, ballast_size, MADV_NOHUGEPAGE);
    for (size_t off = 0; off < ballast_size; off += 4096)
        ((volatile char *)ballast)[off] = 1;
}

/* ---- one process of each kind ------------------------------------------------ */

struct wait_state {
    ae_cv *cv;
};

static void run_cb(ae_fork *p, int sock, void *arg)
{
    (void)arg;
    if (sock < 0) {
        fprintf(stderr, "ae-fork-bench: %s\n", ae_fork_error(p));
        exit(1);
    }
    close(sock);
}

static void exit_cb(ae_fork *p, int status, void *arg)
{
    (void)p, (void)status;
    ae_cv_send(arg, NULL);
}

static const char *worker_path;

/* Start one process; returns the time spent in the starting calls. */
static double spawn_one(int kind)
{
    double t0 = now(), blocked;
    if (kind == C_FORK || kind == C_SPAWN) {
        pid_t pid;
        if (kind == C_FORK) {
            pid = fork();
            if (pid == 0)
                _exit(0);
        } else {
            char *argv[] = {"true", NULL};
            if (posix_spawn(&pid, "/bin/true", NULL, NULL, argv, environ) != 0)
                pid = -1;
        }
        blocked = now() - t0;
        if (pid < 0) {
            perror("ae-fork-bench: fork/spawn");
            exit(1);
        }
        waitpid(pid, NULL, 0);
        return blocked;
    }
    ae_fork *p = kind == C_EXEC ? ae_fork_exec(loop) : kind == C_NEW ? ae_fork_new(loop) : ae_fork_fork(tmpl);
    if (kind != C_TMPL)
        ae_fork_require(p, worker_path);
    ae_cv *cv = ae_cv_new(loop);
    ae_fork_run(p, "bench_exit", run_cb, NULL);
    ae_fork_on_exit(p, exit_cb, cv);
    blocked = now() - t0;
    if (ae_cv_recv(cv, NULL) < 0) {
        fprintf(stderr, "ae-fork-bench: %s\n", ae_last_error());
        exit(1);
    }
    ae_cv_free(cv);
    ae_fork_free(p);
    return blocked;
}

/* One sample: processes per second and the median time blocked per spawn. */
static void sample(int kind, double *rate, double *blocked)
{
    static double b[100000];
    int n = 0;
    double t0 = now(), t;
    do
        b[n++] = spawn_one(kind);
    while ((t = now()) - t0 < sample_secs && n < 100000);
    *rate = n / (t - t0);
    *blocked = median(b, n);
}

/* ---- RPC ------------------------------------------------------------------------- */

struct rpc_state {
    ae_rpc *r;
    ae_pool *pool;
    int left, in_flight;
    double t_sent;
    double *lat;
    int nlat;
    ae_cv *cv;
};

static void rpc_send(struct rpc_state *s);

static void rpc_cb(ae_rpc *r, const void *reply, size_t len, int err, void *arg)
{
    (void)r, (void)reply, (void)len;
    struct rpc_state *s = arg;
    if (err) {
        fprintf(stderr, "ae-fork-bench: RPC failed: %s\n", r ? ae_rpc_error(r) : "?");
        exit(1);
    }
    s->in_flight--;
    if (s->lat)
        s->lat[s->nlat++] = now() - s->t_sent;
    if (s->left > 0)
        rpc_send(s);
    else if (s->in_flight == 0)
        ae_cv_send(s->cv, NULL);
}

static void rpc_send(struct rpc_state *s)
{
    s->left--;
    s->in_flight++;
    s->t_sent = now();
    if (s->pool)
        ae_pool_call(s->pool, "", 0, rpc_cb, s);
    else
        ae_rpc_call(s->r, "", 0, rpc_cb, s);
}

/* calls per second with `window` calls in flight; with window 1, also the
 * median round trip. */
static double rpc_sample(ae_rpc *r, ae_pool *pool, int window, int calls, double *rtt)
{
    static double lat[200000];
    struct rpc_state s = {r, pool, calls, 0, 0, window == 1 ? lat : NULL, 0, ae_cv_new(loop)};
    double t0 = now();
    for (int i = 0; i < window; i++)
        rpc_send(&s);
    ae_cv_recv(s.cv, NULL);
    double t = now() - t0;
    ae_cv_free(s.cv);
    if (rtt)
        *rtt = median(lat, s.nlat);
    return (calls + window) / t;
}

/* ---- facts ------------------------------------------------------------------------ */

static void read_line(const char *path, char *buf, size_t size)
{
    FILE *f = fopen(path, "r");
    buf[0] = 0;
    if (f) {
        if (!fgets(buf, (int)size, f))
            buf[0] = 0;
        fclose(f);
    }
    buf[strcspn(buf, "\n")] = 0;
}

static long vm_rss_kib(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld", &kib) == 1)
            break;
    if (f)
        fclose(f);
    return kib;
}

/* A fresh helper's resident memory, before any require. */
static long template_rss(void)
{
    ae_fork *t = ae_fork_exec(loop);
    ae_fork *c = ae_fork_fork(t); /* once it runs, the helper has served a fork */
    ae_fork_require(c, worker_path);
    ae_cv *cv = ae_cv_new(loop);
    ae_fork_run(c, "bench_exit", run_cb, NULL);
    ae_fork_on_exit(c, exit_cb, cv);
    ae_cv_recv(cv, NULL);
    long kib = vm_rss_kib(ae_fork_pid(t));
    ae_cv_free(cv);
    ae_fork_free(c);
    ae_fork_free(t);
    return kib;
}

/* ---- the run ------------------------------------------------------------------------ */

static const char *verdict(bool met) { return met ? "**met**" : "**missed**"; }

int main(int argc, char **argv)
{
    const char *backend = NULL, *plot = NULL, *table = NULL;
    bool quick = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick"))
            quick = true;
        else if (!strcmp(argv[i], "--backend") && i + 1 < argc)
            backend = argv[++i];
        else if (!strcmp(argv[i], "--plot") && i + 1 < argc)
            plot = argv[++i];
        else if (!strcmp(argv[i], "--table") && i + 1 < argc)
            table = argv[++i];
        else {
            fprintf(stderr, "usage: ae-fork-bench [--quick] [--backend NAME] [--plot FILE.png] [--table FILE.md]\n");
            return 2;
        }
    }
    worker_path = getenv("AE_FORK_BENCH_WORKER") ? getenv("AE_FORK_BENCH_WORKER") : AE_FORK_BENCH_WORKER;
    size_t sizes[MAX_SIZES] = {5, 200, 2048};
    int nsizes = 3;
    if (quick) {
        sample_secs = 0.25;
        reps = 3;
        nsizes = 2;
    }
    loop = ae_loop_new(backend);
    if (!loop) {
        fprintf(stderr, "ae-fork-bench: %s\n", ae_last_error());
        return 1;
    }
    tmpl = ae_fork_exec(loop);
    ae_fork_require(tmpl, worker_path);

    char thp[256], kernel[300];
    read_line("/sys/kernel/mm/transparent_hugepage/enabled", thp, sizeof thp);
    struct utsname u;
    uname(&u);
    snprintf(kernel, sizeof kernel, "%s %s", u.sysname, u.release);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    printf("ae-fork-bench: backend %s, %s, %ld cores, THP \"%s\", ballast MADV_NOHUGEPAGE, %d repetitions "
           "of %.2f s per case, sizes and cases interleaved\n",
           ae_loop_backend(loop), kernel, ncpu, thp, reps, sample_secs);

    static double rate[MAX_SIZES][NCASES][MAX_REPS], blocked[MAX_SIZES][NCASES][MAX_REPS];
    double mrate[MAX_SIZES][NCASES], mblocked[MAX_SIZES][NCASES];
    /* Each repetition visits every size, in turn upwards and downwards, so
     * that the sizes are compared over the same minutes: the flatness target
     * is a ratio between sizes, and this shared machine drifts by more than
     * its 15% between samples taken a minute apart. */
    for (int r = 0; r < reps; r++)
        for (int i = 0; i < nsizes; i++) {
            int s = r % 2 ? nsizes - 1 - i : i;
            set_ballast(sizes[s]);
            for (int c = 0; c < NCASES; c++)
                sample(c, &rate[s][c][r], &blocked[s][c][r]);
        }
    for (int s = 0; s < nsizes; s++) {
        for (int c = 0; c < NCASES; c++) {
            mrate[s][c] = median(rate[s][c], reps);
            mblocked[s][c] = median(blocked[s][c], reps);
        }
    }
    set_ballast(5);

    /* RPC */
    double rpc_lat[MAX_REPS], rpc_one[MAX_REPS], rpc_pool[MAX_REPS], pool_lat[MAX_REPS];
    ae_fork *wp = ae_fork_fork(tmpl);
    ae_rpc *r = ae_rpc_new(wp, "bench_noop");
    /* the manual's throughput recipe: max = cores, load >= 2 (here 32: pipelined) */
    ae_pool *pool = ae_pool_new(tmpl, "bench_noop", &(ae_pool_opts){.idle = (int)ncpu, .load = 32});
    int calls = quick ? 20000 : 100000;
    rpc_sample(r, NULL, 64, 1000, NULL); /* warm up: the worker and the pool's workers started */
    rpc_sample(NULL, pool, 64, 1000, NULL);
    for (int i = 0; i < reps; i++) {
        rpc_one[i] = rpc_sample(r, NULL, 64, calls, NULL);
        rpc_pool[i] = rpc_sample(NULL, pool, 64, calls, NULL);
        rpc_sample(r, NULL, 1, calls / 10, &rpc_lat[i]);
        rpc_sample(NULL, pool, 1, calls / 10, &pool_lat[i]);
    }
    double m_one = median(rpc_one, reps), m_pool = median(rpc_pool, reps);
    double m_lat = median(rpc_lat, reps), m_plat = median(pool_lat, reps);
    ae_rpc_free(r);
    ae_pool_free(pool);
    long rss = template_rss();

    /* the report */
    FILE *out = table ? fopen(table, "w") : NULL;
    FILE *sinks[2] = {stdout, out};
    for (int k = 0; k < 2; k++) {
        FILE *f = sinks[k];
        if (!f)
            continue;
        fprintf(f, "\n| case | parent | processes/s | blocked per spawn |\n|---|---:|---:|---:|\n");
        for (int c = 0; c < NCASES; c++)
            for (int s = 0; s < nsizes; s++)
                fprintf(f, "| %s | %zu MiB | %.0f | %.1f µs |\n", case_names[c], sizes[s], mrate[s][c],
                        mblocked[s][c] * 1e6);
        fprintf(f, "\n| RPC (no-op, empty request) | calls/s (64 in flight) | round trip (1 in flight, median) |\n"
                   "|---|---:|---:|\n");
        fprintf(f, "| one worker | %.0f | %.1f µs |\n", m_one, m_lat * 1e6);
        fprintf(f, "| pool (%ld workers, load 32) | %.0f | %.1f µs |\n", ncpu, m_pool, m_plat * 1e6);
        fprintf(f, "\nTemplate (ae-fork-server before any require) VmRSS: %ld KiB\n", rss);

        int last = nsizes - 1;
        double lo = mrate[0][C_TMPL], hi = mrate[0][C_TMPL], worst_block = 0;
        size_t lo_size = sizes[0];
        for (int s = 0; s < nsizes; s++) {
            if (mrate[s][C_TMPL] < lo)
                lo_size = sizes[s];
            lo = fmin(lo, mrate[s][C_TMPL]);
            hi = fmax(hi, mrate[s][C_TMPL]);
            for (int c = C_NEW; c < NCASES; c++)
                worst_block = fmax(worst_block, mblocked[s][c]);
        }
        fprintf(f, "\n| target | measured | |\n|---|---|---|\n");
        fprintf(f, "| from a template >= 2,307 processes/s | %.0f/s at %zu MiB (the lowest of the sizes) | %s |\n", lo,
                lo_size, verdict(lo >= 2307));
        fprintf(f, "| flat within 15%% from 5 MiB to %zu MiB | lowest/highest %.2f | %s |\n", sizes[last], lo / hi,
                verdict(lo / hi >= 0.85));
        fprintf(f, "| >= 100x plain fork() at %zu MiB | %.0fx | %s |\n", sizes[last],
                mrate[last][C_TMPL] / mrate[last][C_FORK], verdict(mrate[last][C_TMPL] / mrate[last][C_FORK] >= 100));
        fprintf(f, "| loop blocked <= 50 µs per spawn (median; ae_fork_new and _fork, every size) | worst %.1f µs | %s |\n",
                worst_block * 1e6, verdict(worst_block <= 50e-6));
        fprintf(f, "| ae_fork_exec >= 479/s | %.0f/s at %zu MiB | %s |\n", mrate[0][C_EXEC], sizes[0],
                verdict(mrate[0][C_EXEC] >= 479));
        fprintf(f, "| template VmRSS <= 1.5 MiB before requires | %ld KiB | %s |\n", rss, verdict(rss <= 1536));
        fprintf(f, "| RPC through a pool >= 50,000 calls/s | %.0f/s | %s |\n", m_pool, verdict(m_pool >= 50000));
        if (nsizes < 3)
            fprintf(f, "\n(--quick: without the 2 GiB parent)\n");
    }
    if (out)
        fclose(out);

    if (plot) {
        char data[] = "/tmp/ae-fork-bench-XXXXXX";
        int fd = mkstemp(data);
        FILE *d = fd >= 0 ? fdopen(fd, "w") : NULL;
        if (!d) {
            perror("ae-fork-bench: plot data");
            return 1;
        }
        for (int c = 0; c < NCASES; c++) {
            fprintf(d, "# %s\n", case_names[c]);
            for (int s = 0; s < nsizes; s++)
                fprintf(d, "%zu %.1f\n", sizes[s], mrate[s][c]);
            fprintf(d, "\n\n");
        }
        fclose(d);
        char cmd[4096];
        snprintf(cmd, sizeof cmd,
                 "gnuplot -e \"set terminal pngcairo size 900,560 noenhanced; set xrange [3:4000]; set output '%s'; set logscale xy; "
                 "set xlabel 'parent memory (MiB, every page written, 4 KiB pages)'; "
                 "set ylabel 'processes per second'; set key outside right; set grid; "
                 "set title 'ae-fork-bench: processes/s by the size of the parent (%s)'; "
                 "plot '%s' index 0 u 1:2 w lp lw 2 t '%s', '' index 1 u 1:2 w lp lw 2 t '%s', "
                 "'' index 2 u 1:2 w lp lw 2 t '%s', '' index 3 u 1:2 w lp lw 2 t '%s', "
                 "'' index 4 u 1:2 w lp lw 2 t '%s'\"",
                 plot, ae_loop_backend(loop), data, case_names[0], case_names[1], case_names[2], case_names[3],
                 case_names[4]);
        int rc = system(cmd);
        unlink(data);
        if (rc != 0)
            fprintf(stderr, "ae-fork-bench: gnuplot failed (apt-get install gnuplot-nox)\n");
        else
            fprintf(stderr, "ae-fork-bench: plot written to %s\n", plot);
    }
    ae_fork_free(tmpl);
    ae_loop_free(loop);
    return 0;
}
