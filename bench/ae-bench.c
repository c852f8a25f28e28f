/*
 * ae-bench: compare event loops, through anyevent and natively.
 *
 * Runs the workloads of docs/benchmarks.md on every anyevent backend and on
 * each backend's native reference (its library used directly: libev, libuv,
 * libevent; for the built-in poll and select loops, libevent forced to its
 * poll or select method; for the example epoll plugin, libev forced to
 * epoll), interleaved run by run, several repetitions, and reports the
 * medians and their ratio. Each run is a worker process of its
 * own (ae-bench-anyevent, ae-bench-libev, ...), found beside this program
 * (the build tree) or in libexecdir/anyevent (installed).
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef AE_BENCH_WORKERS
#define AE_BENCH_WORKERS "anyevent"
#endif
#ifndef AE_BENCH_LIBEXEC_ABS
#define AE_BENCH_LIBEXEC_ABS ""
#endif
#ifndef AE_BENCH_LIBEXEC_REL
#define AE_BENCH_LIBEXEC_REL ""
#endif

#define MAX_METRICS 24
#define MAX_REPS 50
#define MAX_ROWS 4096

/* ---- options -------------------------------------------------------------- */

static struct {
    bool quick;
    int reps;
    const char *workloads; /* comma list, NULL: all */
    const char *backends;  /* comma list, NULL: every backend that works */
    enum { OUT_TABLE, OUT_CSV, OUT_JSON } format;
    const char *plot;
    const char *table; /* the full table to this file instead of stdout */
} opt = {.reps = 5};

static char worker_dir[PATH_MAX];

static void usage(FILE *f)
{
    fprintf(f,
            "usage: ae-bench [--quick] [--reps N] [--workloads LIST] [--backends LIST]\n"
            "                [--csv | --json | --table FILE] [--plot FILE.png|FILE.svg]\n"
            "  workloads: lifecycle,pipechain,timers,pingpong,condvar,idle,async (default: all)\n"
            "  backends:  anyevent backends, e.g. libev,libuv,libevent,epoll,poll,select (default: every one that works)\n"
            "  --quick:   smaller sizes and 3 repetitions, under a minute\n"
            "  --table:   the full table to FILE; stdout then has the summary only\n"
            "  --plot:    the time ratios to FILE, the memory ratios to FILE-memory.png (.svg)\n"
            "stdout: a summary per workload family, then the full table (--csv, --json: the\n"
            "full table in that format, the summary on stderr). Progress on stderr.\n");
}

static bool in_list(const char *list, const char *name)
{
    if (!list)
        return true;
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        size_t len = strcspn(p, ",");
        if (len == n && strncmp(p, name, n) == 0)
            return true;
        p += len + (p[len] == ',');
    }
    return false;
}

/* Copies as much of src as fits, always terminated. */
static void copy(char *dst, size_t size, const char *src)
{
    size_t n = strnlen(src, size - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static bool safe_name(const char *s)
{
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_' && *s != ',')
            return false;
    return true;
}

/* Whether folder holds the anyevent worker. */
static bool has_workers(const char *folder)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/ae-bench-anyevent", folder);
    return access(path, X_OK) == 0;
}

/* The workers are beside this program in the build tree; installed, they are
 * in libexecdir/anyevent: first relative to this program's folder (a moved or
 * DESTDIR-staged tree), then at the configured path. */
static int find_worker_dir(void)
{
    char self[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0) {
        fprintf(stderr, "ae-bench: cannot find my own folder: %s\n", len < 0 ? strerror(errno) : "empty");
        return -1;
    }
    self[len] = '\0';
    *strrchr(self, '/') = '\0';
    const char *tried[3];
    int n = 0;
    char relative[PATH_MAX + sizeof AE_BENCH_LIBEXEC_REL + 1];
    tried[n++] = self;
    if (AE_BENCH_LIBEXEC_REL[0]) {
        snprintf(relative, sizeof relative, "%s/%s", self, AE_BENCH_LIBEXEC_REL);
        tried[n++] = relative;
    }
    if (AE_BENCH_LIBEXEC_ABS[0])
        tried[n++] = AE_BENCH_LIBEXEC_ABS;
    for (int i = 0; i < n; i++)
        if (has_workers(tried[i]) && strlen(tried[i]) < sizeof worker_dir) {
            copy(worker_dir, sizeof worker_dir, tried[i]);
            return 0;
        }
    fprintf(stderr, "ae-bench: no ae-bench-anyevent worker in");
    for (int i = 0; i < n; i++)
        fprintf(stderr, "%s %s", i ? "," : "", tried[i]);
    fprintf(stderr, "\n");
    return -1;
}

/* ---- one worker run -------------------------------------------------------- */

typedef struct run_result {
    bool ok;
    char unsupported[256]; /* why, if the library has no such thing */
    int n;
    char keys[MAX_METRICS][32];
    double values[MAX_METRICS];
} run_result;

/* Runs `[env] ae-bench-IMPL WORKLOAD ARGS` and parses its line. */
static run_result run_worker(const char *env, const char *impl, const char *workload, const char *args)
{
    run_result r = {0};
    char cmd[PATH_MAX + 1024];
    if (snprintf(cmd, sizeof cmd, "%s timeout 300 '%s/ae-bench-%s' %s %s", env ? env : "", worker_dir, impl,
                 workload, args) >= (int)sizeof cmd) {
        fprintf(stderr, "ae-bench: command too long\n");
        return r;
    }
    FILE *p = popen(cmd, "r");
    if (!p) {
        fprintf(stderr, "ae-bench: cannot run %s: %s\n", cmd, strerror(errno));
        return r;
    }
    char line[4096] = "";
    char buf[4096];
    while (fgets(buf, sizeof buf, p))
        if (!strncmp(buf, "ok ", 3) || !strncmp(buf, "unsupported ", 12))
            copy(line, sizeof line, buf);
    int status = pclose(p);
    line[strcspn(line, "\n")] = '\0';
    if (!strncmp(line, "unsupported ", 12)) {
        copy(r.unsupported, sizeof r.unsupported, line + 12);
        return r;
    }
    if (status != 0 || strncmp(line, "ok ", 3) != 0) {
        fprintf(stderr, "ae-bench: failed: %s\n", cmd);
        return r;
    }
    r.ok = true;
    for (char *tok = strtok(line + 3, " "); tok && r.n < MAX_METRICS; tok = strtok(NULL, " ")) {
        char *eq = strchr(tok, '=');
        if (!eq)
            continue;
        *eq = '\0';
        char *end;
        double v = strtod(eq + 1, &end);
        if (*end) /* workload=, impl=, kind=: not metrics */
            continue;
        copy(r.keys[r.n], sizeof r.keys[r.n], tok);
        r.values[r.n++] = v;
    }
    return r;
}

static double lookup(const run_result *r, const char *key)
{
    for (int i = 0; i < r->n; i++)
        if (!strcmp(r->keys[i], key))
            return r->values[i];
    return NAN;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    int k = 0;
    for (int i = 0; i < n; i++)
        if (!isnan(v[i]))
            v[k++] = v[i];
    if (!k)
        return NAN;
    qsort(v, (size_t)k, sizeof *v, cmp_double);
    return k % 2 ? v[k / 2] : (v[k / 2 - 1] + v[k / 2]) / 2;
}

/* ---- the report ---------------------------------------------------------------- */

typedef struct row {
    char workload[16], params[64], backend[16], native[24], metric[24];
    double ae, nat; /* medians; NAN: none */
    char note[128];
} row;

static row rows[MAX_ROWS];
static int n_rows;

/* Higher is better only for rates. */
static bool higher_is_better(const char *metric) { return strstr(metric, "_per_s") != NULL; }

/* anyevent's cost relative to native: > 1 means anyevent is slower. */
static double ratio(const row *r)
{
    if (isnan(r->ae) || isnan(r->nat) || r->ae <= 0 || r->nat <= 0)
        return NAN;
    return higher_is_better(r->metric) ? r->nat / r->ae : r->ae / r->nat;
}

static void fmt_value(char *buf, size_t size, double v)
{
    if (isnan(v))
        snprintf(buf, size, "-");
    else if (fabs(v) >= 1e6)
        snprintf(buf, size, "%.4g", v);
    else if (fabs(v) >= 100 || v == 0)
        snprintf(buf, size, "%.0f", v);
    else
        snprintf(buf, size, "%.3g", v);
}

static void print_table(FILE *out)
{
    fprintf(out, "%-10s %-26s %-9s %-15s %12s %12s  %-17s %6s  %s\n", "workload", "case", "backend", "metric", "anyevent",
           "native", "native is", "ratio", "note");
    const char *last = "";
    for (int i = 0; i < n_rows; i++) {
        row *r = &rows[i];
        char a[32], n[32], q[32];
        fmt_value(a, sizeof a, r->ae);
        fmt_value(n, sizeof n, r->nat);
        double x = ratio(r);
        if (isnan(x))
            snprintf(q, sizeof q, "-");
        else
            snprintf(q, sizeof q, "%.2f", x);
        if (strcmp(last, r->workload) != 0 && i)
            fputc('\n', out);
        last = r->workload;
        fprintf(out, "%-10s %-26s %-9s %-15s %12s %12s  %-17s %6s  %s\n", r->workload, r->params, r->backend, r->metric, a,
               n, r->native, q, r->note);
    }
    fprintf(out, "\nratio: anyevent's cost over native (time / time; for *_per_s rates native / anyevent): "
           "1.00 = same, 1.10 = anyevent 10%% slower.\n");
}

static void print_csv(void)
{
    printf("workload,case,backend,metric,anyevent,native,native_impl,ratio,note\n");
    for (int i = 0; i < n_rows; i++) {
        row *r = &rows[i];
        printf("%s,\"%s\",%s,%s,%.6g,%.6g,\"%s\",%.4f,\"%s\"\n", r->workload, r->params, r->backend, r->metric, r->ae,
               r->nat, r->native, ratio(r), r->note);
    }
}

static void json_num(double v)
{
    if (isnan(v))
        printf("null");
    else
        printf("%.6g", v);
}

static void print_json(void)
{
    printf("[\n");
    for (int i = 0; i < n_rows; i++) {
        row *r = &rows[i];
        printf("  {\"workload\": \"%s\", \"case\": \"%s\", \"backend\": \"%s\", \"metric\": \"%s\", \"anyevent\": ",
               r->workload, r->params, r->backend, r->metric);
        json_num(r->ae);
        printf(", \"native\": ");
        json_num(r->nat);
        printf(", \"native_impl\": \"%s\", \"ratio\": ", r->native);
        json_num(ratio(r));
        printf(", \"note\": \"%s\"}%s\n", r->note, i + 1 < n_rows ? "," : "");
    }
    printf("]\n");
}

/* ---- running the cases ------------------------------------------------------------ */

static const char *const all_backends[] = {"libev", "libuv", "libevent", "glib", "epoll", "poll", "select"};
#define N_BACKENDS (sizeof all_backends / sizeof all_backends[0])
static const char *backends[N_BACKENDS];
static int n_backends;

/* The native reference of each backend: its own library, or, for the
 * built-in loops, libevent forced to the same system call; for the example
 * epoll plugin, libev forced to its epoll method. */
static void native_of(const char *backend, const char **impl, const char **env, const char **label)
{
    *env = NULL;
    *impl = NULL;
    if (!strcmp(backend, "poll") || !strcmp(backend, "select")) {
        if (in_list(AE_BENCH_WORKERS, "libevent")) {
            *impl = "libevent";
            bool poll = !strcmp(backend, "poll");
            *env = poll ? "EVENT_NOEPOLL=1" : "EVENT_NOEPOLL=1 EVENT_NOPOLL=1";
            *label = poll ? "libevent(poll)" : "libevent(select)";
        }
    } else if (!strcmp(backend, "epoll")) {
        if (in_list(AE_BENCH_WORKERS, "libev")) {
            *impl = "libev";
            *env = "LIBEV_FLAGS=4"; /* EVBACKEND_EPOLL */
            *label = "libev(epoll)";
        }
    } else if (in_list(AE_BENCH_WORKERS, backend)) {
        *impl = backend;
        *label = backend;
    }
}

static int total_runs, done_runs;
static double started;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One case: every backend, reps times, anyevent and native interleaved
 * (in turn first). */
static void run_case(const char *workload, const char *params, const char *args, const char *const *metrics,
                     int n_metrics)
{
    for (int b = 0; b < n_backends; b++) {
        const char *be = backends[b];
        const char *nimpl, *nenv, *nlabel = "-";
        native_of(be, &nimpl, &nenv, &nlabel);
        double ae[MAX_METRICS][MAX_REPS], nat[MAX_METRICS][MAX_REPS];
        char ae_unsup[256] = "", nat_unsup[256] = "";
        int reps = opt.reps;
        char ae_args[512];
        snprintf(ae_args, sizeof ae_args, "--backend %s %s", be, args);
        for (int rep = 0; rep < reps; rep++) {
            /* Which runs first alternates: a run can find the machine still
             * busy with what the one before left behind (the kernel freeing
             * a previous worker's thousands of sockets), and neither side
             * must always be the one that follows the other. */
            run_result a, n = {0};
            bool native_first = nimpl && rep % 2 == 1;
            if (native_first)
                n = run_worker(nenv, nimpl, workload, args);
            a = run_worker(NULL, "anyevent", workload, ae_args);
            if (nimpl && !native_first)
                n = run_worker(nenv, nimpl, workload, args);
            done_runs++;
            if (isatty(2)) { /* progress on a terminal only, not in logs */
                double spent = now_s() - started;
                fprintf(stderr, "\r[%d/%d, %.0f s, about %.0f s left] %s %s %s\033[K", done_runs, total_runs, spent,
                        spent / done_runs * (total_runs - done_runs), workload, params, be);
            }
            if (a.unsupported[0])
                copy(ae_unsup, sizeof ae_unsup, a.unsupported);
            if (n.unsupported[0])
                copy(nat_unsup, sizeof nat_unsup, n.unsupported);
            for (int m = 0; m < n_metrics; m++) {
                ae[m][rep] = a.ok ? lookup(&a, metrics[m]) : NAN;
                nat[m][rep] = n.ok ? lookup(&n, metrics[m]) : NAN;
            }
        }
        for (int m = 0; m < n_metrics && n_rows < MAX_ROWS; m++) {
            row *r = &rows[n_rows++];
            memset(r, 0, sizeof *r);
            copy(r->workload, sizeof r->workload, workload);
            copy(r->params, sizeof r->params, params);
            copy(r->backend, sizeof r->backend, be);
            copy(r->metric, sizeof r->metric, metrics[m]);
            copy(r->native, sizeof r->native, nimpl ? nlabel : "-");
            r->ae = median(ae[m], reps);
            r->nat = nimpl ? median(nat[m], reps) : NAN;
            if (nat_unsup[0] && nimpl) {
                copy(r->note, sizeof r->note, "native: ");
                copy(r->note + 8, sizeof r->note - 8, nat_unsup);
            } else if (ae_unsup[0]) {
                copy(r->note, sizeof r->note, ae_unsup);
            }
        }
    }
}

typedef struct case_def {
    const char *workload;
    const char *params; /* shown */
    const char *args;   /* for the worker */
    const char *metrics[8];
    bool quick;         /* also in --quick */
} case_def;

#define M(...) {__VA_ARGS__}
static const case_def cases[] = {
    {"lifecycle", "io n=10000", "--kind io --n 10000", M("create_ns", "invoke_ns", "destroy_ns", "mem_bytes", "allocs_invoke", "peak_rss_kb"), true},
    {"lifecycle", "io n=100000", "--kind io --n 100000", M("create_ns", "invoke_ns", "destroy_ns", "mem_bytes", "allocs_invoke", "peak_rss_kb"), false},
    {"lifecycle", "timer n=10000", "--kind timer --n 10000", M("create_ns", "invoke_ns", "destroy_ns", "mem_bytes", "allocs_invoke", "peak_rss_kb"), true},
    {"lifecycle", "timer n=100000", "--kind timer --n 100000", M("create_ns", "invoke_ns", "destroy_ns", "mem_bytes", "allocs_invoke", "peak_rss_kb"), false},
    {"lifecycle", "signal n=10000", "--kind signal --n 10000", M("create_ns", "invoke_ns", "destroy_ns", "mem_bytes", "allocs_invoke", "peak_rss_kb"), true},
    {"lifecycle", "signal n=100000", "--kind signal --n 100000", M("create_ns", "invoke_ns", "destroy_ns", "mem_bytes", "allocs_invoke", "peak_rss_kb"), false},
    {"lifecycle", "child n=10000", "--kind child --n 10000", M("create_ns", "invoke_ns", "destroy_ns", "mem_bytes", "allocs_invoke", "peak_rss_kb"), true},
    {"lifecycle", "child n=100000", "--kind child --n 100000", M("create_ns", "invoke_ns", "destroy_ns", "mem_bytes", "allocs_invoke", "peak_rss_kb"), false},
    {"lifecycle", "idle n=10000", "--kind idle --n 10000", M("create_ns", "invoke_ns", "destroy_ns", "mem_bytes", "allocs_invoke", "peak_rss_kb"), true},
    {"lifecycle", "idle n=100000", "--kind idle --n 100000", M("create_ns", "invoke_ns", "destroy_ns", "mem_bytes", "allocs_invoke", "peak_rss_kb"), false},
    {"pipechain", "n=100 a=1 w=100", "--n 100 --active 1 --writes 100", M("setup_us", "run_us", "allocs_run", "peak_rss_kb"), false},
    {"pipechain", "n=100 a=100 w=100", "--n 100 --active 100 --writes 100", M("setup_us", "run_us", "allocs_run", "peak_rss_kb"), true},
    {"pipechain", "n=1000 a=1 w=100", "--n 1000 --active 1 --writes 100", M("setup_us", "run_us", "allocs_run", "peak_rss_kb"), false},
    {"pipechain", "n=1000 a=100 w=100", "--n 1000 --active 100 --writes 100", M("setup_us", "run_us", "allocs_run", "peak_rss_kb"), true},
    {"pipechain", "n=1000 a=1000 w=100", "--n 1000 --active 1000 --writes 100", M("setup_us", "run_us", "allocs_run", "peak_rss_kb"), false},
    {"pipechain", "n=10000 a=1 w=100", "--n 10000 --active 1 --writes 100", M("setup_us", "run_us", "allocs_run", "peak_rss_kb"), false},
    {"pipechain", "n=10000 a=100 w=100", "--n 10000 --active 100 --writes 100", M("setup_us", "run_us", "allocs_run", "peak_rss_kb"), false},
    {"pipechain", "n=10000 a=1000 w=100", "--n 10000 --active 1000 --writes 100", M("setup_us", "run_us", "allocs_run", "peak_rss_kb"), false},
    {"timers", "fire n=1000000", "--kind fire --n 1000000", M("create_ns", "fire_ns", "peak_rss_kb"), false},
    {"timers", "fire n=100000", "--kind fire --n 100000", M("create_ns", "fire_ns", "peak_rss_kb"), true},
    {"timers", "cancel n=1000000", "--kind cancel --n 1000000", M("create_ns", "cancel_ns", "peak_rss_kb"), false},
    {"timers", "cancel n=100000", "--kind cancel --n 100000", M("create_ns", "cancel_ns", "peak_rss_kb"), true},
    {"timers", "rearm count=1000000", "--kind rearm --count 1000000", M("rearm_ns", "peak_rss_kb"), true},
    {"timers", "repeat count=1000", "--kind repeat --count 1000", M("fire_ns", "peak_rss_kb"), false},
    {"pingpong", "size=1 count=100000", "--size 1 --count 100000", M("rt_per_s", "allocs_rt", "peak_rss_kb"), false},
    {"pingpong", "size=1 count=20000", "--size 1 --count 20000", M("rt_per_s", "allocs_rt", "peak_rss_kb"), true},
    {"pingpong", "size=4096 count=100000", "--size 4096 --count 100000", M("rt_per_s", "allocs_rt", "peak_rss_kb"), false},
    {"pingpong", "size=4096 count=20000", "--size 4096 --count 20000", M("rt_per_s", "allocs_rt", "peak_rss_kb"), true},
    {"condvar", "n=100000", "--n 100000", M("item_ns", "peak_rss_kb"), true},
    {"idle", "count=1000000", "--count 1000000", M("call_ns", "allocs_call", "peak_rss_kb"), false},
    {"idle", "count=100000", "--count 100000", M("call_ns", "allocs_call", "peak_rss_kb"), true},
    {"async", "n=10000 count=1000000", "--n 10000 --count 1000000", M("lat_med_ns", "lat_p99_ns", "sends_per_s", "allocs_send", "peak_rss_kb"), false},
    {"async", "n=2000 count=100000", "--n 2000 --count 100000", M("lat_med_ns", "lat_p99_ns", "sends_per_s", "allocs_send", "peak_rss_kb"), true},
};
#define N_CASES (sizeof cases / sizeof cases[0])

/* Which anyevent backends work here: a tiny run of each. */
static void find_backends(void)
{
    for (size_t i = 0; i < N_BACKENDS; i++) {
        if (!in_list(opt.backends, all_backends[i]))
            continue;
        char args[64];
        snprintf(args, sizeof args, "--backend %s --count 10", all_backends[i]);
        run_result r = run_worker(NULL, "anyevent", "idle", args);
        if (r.ok || r.unsupported[0])
            backends[n_backends++] = all_backends[i];
        else
            fprintf(stderr, "ae-bench: backend %s is not available here; skipped\n", all_backends[i]);
    }
}

/* ---- the summary ------------------------------------------------------------------ */

/* What a metric measures, from its name alone, so that a new workload's
 * metrics are summed up without a change here: allocs_* are allocation
 * counts, *_kb and *_bytes memory, *_ns, *_us, *_ms and *_per_s time. */
typedef enum { KIND_TIME, KIND_MEMORY, KIND_ALLOCS, KIND_OTHER } metric_kind;

static bool ends_with(const char *s, const char *tail)
{
    size_t n = strlen(s), t = strlen(tail);
    return n >= t && !strcmp(s + n - t, tail);
}

static metric_kind kind_of(const char *metric)
{
    if (!strncmp(metric, "allocs", 6))
        return KIND_ALLOCS;
    if (ends_with(metric, "_kb") || ends_with(metric, "_bytes"))
        return KIND_MEMORY;
    if (ends_with(metric, "_ns") || ends_with(metric, "_us") || ends_with(metric, "_ms") || ends_with(metric, "_per_s"))
        return KIND_TIME;
    return KIND_OTHER;
}

/* The time targets of docs/benchmarks.md ("Analysis against the targets"):
 * the geometric mean of anyevent's time over native's across a family's
 * cases. A family not listed has no target and is reported unmarked. */
static const struct {
    const char *workload;
    double time;
} targets[] = {
    {"lifecycle", 1.25},
    {"pipechain", 1.10},
    {"pingpong", 1.10},
    {"async", 1.10},
};

static double target_of(const char *workload)
{
    for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++)
        if (!strcmp(targets[i].workload, workload))
            return targets[i].time;
    return NAN;
}

/* Allocations per event or per iteration above this are not "arrays growing
 * once" but an allocation per event: the target is none. */
#define ALLOCS_TARGET 0.01

/* The families (workloads), in the order they ran. */
static const char *families[64];
static int n_families;

static void find_families(void)
{
    n_families = 0;
    for (int i = 0; i < n_rows; i++) {
        int f = 0;
        while (f < n_families && strcmp(families[f], rows[i].workload))
            f++;
        if (f == n_families && n_families < (int)(sizeof families / sizeof families[0]))
            families[n_families++] = rows[i].workload;
    }
}

/* One backend in one family, for one kind of metric. */
typedef struct aggregate {
    int n;          /* ratios summed up */
    int no_native;  /* rows without a ratio */
    double log_sum; /* of the ratios */
    int worst;      /* the row with the highest ratio, -1 if none */
    double max_value; /* for KIND_ALLOCS: anyevent's highest count; NAN if none */
} aggregate;

static aggregate aggregate_of(const char *family, const char *backend, metric_kind kind)
{
    aggregate a = {.worst = -1, .max_value = NAN};
    for (int i = 0; i < n_rows; i++) {
        const row *r = &rows[i];
        if (strcmp(r->workload, family) || strcmp(r->backend, backend) || kind_of(r->metric) != kind)
            continue;
        if (kind == KIND_ALLOCS) {
            if (!isnan(r->ae) && (isnan(a.max_value) || r->ae > a.max_value))
                a.max_value = r->ae;
            continue;
        }
        double x = ratio(r);
        if (isnan(x)) {
            a.no_native++;
            continue;
        }
        a.n++;
        a.log_sum += log(x);
        if (a.worst < 0 || x > ratio(&rows[a.worst]))
            a.worst = i;
    }
    return a;
}

static double geomean(const aggregate *a) { return a->n ? exp(a->log_sum / a->n) : NAN; }

/* "2.94 io n=10000 destroy_ns", or "-". */
static void fmt_worst(char *buf, size_t size, const aggregate *a)
{
    if (a->worst < 0) {
        snprintf(buf, size, "-");
        return;
    }
    const row *r = &rows[a->worst];
    snprintf(buf, size, "%.2f %s %s", ratio(r), r->params, r->metric);
}

static void print_summary(FILE *out)
{
    find_families();
    fprintf(out, "Summary: anyevent's cost over the native library's, per workload family: the geometric mean of\n"
                 "the ratios over its cases (1.00 = the same, 1.10 = anyevent 10%% slower or bigger), the worst\n"
                 "case, and the most allocations anyevent made per event. Targets: docs/benchmarks.md.\n");
    for (int f = 0; f < n_families; f++) {
        const char *fam = families[f];
        double target = target_of(fam);
        char tgt[64];
        if (isnan(target))
            snprintf(tgt, sizeof tgt, "no time target");
        else
            snprintf(tgt, sizeof tgt, "time target <= %.2f", target);
        fprintf(out, "\n%s (%s; allocations per event: none)\n", fam, tgt);
        fprintf(out, "  %-9s %-11s %-36s %-7s %-36s %s\n", "backend", "time", "worst time case", "memory",
                "worst memory case", "allocs");
        for (int b = 0; b < n_backends; b++) {
            aggregate t = aggregate_of(fam, backends[b], KIND_TIME);
            aggregate m = aggregate_of(fam, backends[b], KIND_MEMORY);
            aggregate al = aggregate_of(fam, backends[b], KIND_ALLOCS);
            if (!t.n && !t.no_native && !m.n && !m.no_native && isnan(al.max_value))
                continue; /* this backend ran nothing of this family */
            char tcol[32], tw[96], mcol[16], mw[96], acol[32];
            double tg = geomean(&t);
            if (isnan(tg))
                snprintf(tcol, sizeof tcol, "-");
            else if (isnan(target))
                snprintf(tcol, sizeof tcol, "%.2f", tg);
            else
                snprintf(tcol, sizeof tcol, "%.2f %s", tg, tg <= target ? "met" : "MISSED");
            fmt_worst(tw, sizeof tw, &t);
            double mg = geomean(&m);
            if (isnan(mg))
                snprintf(mcol, sizeof mcol, "-");
            else
                snprintf(mcol, sizeof mcol, "%.2f", mg);
            fmt_worst(mw, sizeof mw, &m);
            if (isnan(al.max_value))
                snprintf(acol, sizeof acol, "-");
            else
                snprintf(acol, sizeof acol, "%.3g %s", al.max_value, al.max_value <= ALLOCS_TARGET ? "met" : "MISSED");
            fprintf(out, "  %-9s %-11s %-36s %-7s %-36s %s", backends[b], tcol, tw, mcol, mw, acol);
            if (t.no_native)
                fprintf(out, "  (%d time case%s without a native figure)", t.no_native, t.no_native > 1 ? "s" : "");
            fputc('\n', out);
        }
    }
    fputc('\n', out);
}

/* ---- the plots ---------------------------------------------------------------------- */

/* Tics for a log axis from lo to hi that a reader can place at a glance:
 * finer steps for a narrow range, fewer for a wide one. */
static void write_log_tics(FILE *f, double lo, double hi)
{
    static const double fine[] = {0.5, 0.6, 0.7, 0.8, 0.9, 1, 1.1, 1.2, 1.3, 1.5, 1.75, 2, 2.5, 3};
    static const double medium[] = {0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 20, 30, 50};
    static const double coarse[] = {0.001, 0.01, 0.1, 1, 10, 100, 1000};
    double span = log10(hi / lo);
    const double *tics = span < 0.7 ? fine : span < 1.7 ? medium : coarse;
    size_t n = span < 0.7 ? sizeof fine / sizeof *fine
             : span < 1.7 ? sizeof medium / sizeof *medium
                          : sizeof coarse / sizeof *coarse;
    fprintf(f, "set ytics (");
    bool first = true;
    for (size_t i = 0; i < n; i++)
        if (tics[i] >= lo && tics[i] <= hi) {
            fprintf(f, "%s\"%g\" %g", first ? "" : ", ", tics[i], tics[i]);
            first = false;
        }
    fprintf(f, ")\n");
}

/* One panel per family: per backend, a dot per case (one metric of one
 * case) and a bar at the geometric mean; 1.0 and the target as lines. */
static int plot_kind(const char *file, metric_kind kind)
{
    const char *ext = strrchr(file, '.');
    bool svg = ext && !strcmp(ext, ".svg");
    find_families();
    int panels = 0;
    for (int fam = 0; fam < n_families; fam++)
        for (int b = 0; b < n_backends; b++)
            if (aggregate_of(families[fam], backends[b], kind).n) {
                panels++;
                break;
            }
    if (!panels)
        return 0;
    char data[] = "/tmp/ae-bench-XXXXXX";
    int fd = mkstemp(data);
    if (fd < 0)
        return -1;
    FILE *d = fdopen(fd, "w");
    char script[] = "/tmp/ae-bench-XXXXXX";
    fd = mkstemp(script);
    if (fd < 0 || !d) {
        if (d)
            fclose(d);
        unlink(data);
        return -1;
    }
    FILE *f = fdopen(fd, "w");
    int cols = panels < 3 ? panels : 3, nrows = (panels + cols - 1) / cols;
    fprintf(f, "set terminal %s size %d,%d font ',11' %s\n", svg ? "svg" : "pngcairo", 40 + 440 * cols,
            80 + 330 * nrows, svg ? "dynamic" : "");
    fprintf(f, "set output '%s'\nset termoption noenhanced\nset datafile separator '\\t'\n", file);
    fprintf(f, "set multiplot layout %d,%d title \"anyevent / native %s, log scale: 1 = the native library "
               "(lower is better)\\ndots: one case each; bar: their geometric mean%s\" font ',13'\n",
            nrows, cols, kind == KIND_TIME ? "time" : "memory", kind == KIND_TIME ? "; dashed: the target" : "");
    fprintf(f, "set logscale y\nset grid ytics\nset xrange [-0.6:%d.6]\nset xtics (", n_backends - 1);
    for (int b = 0; b < n_backends; b++)
        fprintf(f, "%s\"%s\" %d", b ? ", " : "", backends[b], b);
    fprintf(f, ")\nset lmargin 7\nset bmargin 2\n");
    int block = 0;
    for (int fam = 0; fam < n_families; fam++) {
        const char *name = families[fam];
        double lo = 1, hi = 1;
        int dots = 0;
        for (int i = 0; i < n_rows; i++) {
            double x = ratio(&rows[i]);
            if (strcmp(rows[i].workload, name) || kind_of(rows[i].metric) != kind || isnan(x))
                continue;
            int b = 0;
            while (b < n_backends && strcmp(backends[b], rows[i].backend))
                b++;
            /* Spread the dots of one backend sideways so that equal ratios stay visible. */
            fprintf(d, "%.3f\t%.5g\n", b + 0.07 * ((dots++ % 7) - 3), x);
            lo = x < lo ? x : lo;
            hi = x > hi ? x : hi;
        }
        if (!dots)
            continue;
        fprintf(d, "\n\n");
        for (int b = 0; b < n_backends; b++) {
            aggregate a = aggregate_of(name, backends[b], kind);
            if (a.n)
                fprintf(d, "%d\t%.5g\n", b, geomean(&a));
        }
        fprintf(d, "\n\n");
        double target = kind == KIND_TIME ? target_of(name) : NAN;
        if (!isnan(target))
            hi = target > hi ? target : hi;
        lo /= 1.3;
        hi *= 1.3;
        if (isnan(target))
            fprintf(f, "set title '%s' font ',12'\n", name);
        else
            fprintf(f, "set title '%s (target %.2f)' font ',12'\n", name, target);
        fprintf(f, "set yrange [%g:%g]\n", lo, hi);
        write_log_tics(f, lo, hi);
        fprintf(f, "unset arrow\nunset label\n"
                   "set arrow from graph 0, first 1 to graph 1, first 1 nohead lw 2 lc rgb 'black' back\n");
        for (int b = 0; b < n_backends; b++) {
            aggregate a = aggregate_of(name, backends[b], kind);
            if (!a.n && a.no_native)
                fprintf(f, "set label 'no native' at %d, graph 0.5 center rotate by 90 tc rgb '#777777'\n", b);
        }
        if (!isnan(target))
            fprintf(f, "set arrow from graph 0, first %g to graph 1, first %g nohead lw 2 dt 2 lc rgb '#cc3311' back\n",
                    target, target);
        fprintf(f,
                "plot '%s' index %d using 1:2 with points pt 7 ps 0.7 lc rgb '#4477aa' notitle, "
                "'' index %d using ($1-0.32):2:(0.64):(0) with vectors nohead lw 4 lc rgb '#222222' notitle\n",
                data, block, block + 1);
        block += 2;
    }
    fprintf(f, "unset multiplot\n");
    fclose(d);
    fclose(f);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "gnuplot '%s'", script);
    int rc = system(cmd);
    unlink(data);
    unlink(script);
    if (rc != 0) {
        fprintf(stderr, "ae-bench: gnuplot failed (is it installed? apt-get install gnuplot-nox)\n");
        return -1;
    }
    fprintf(stderr, "ae-bench: plot of the %s ratios written to %s\n", kind == KIND_TIME ? "time" : "memory", file);
    return 0;
}

/* FILE.png: the time ratios; FILE-memory.png: the memory ratios. */
static int plot(const char *file)
{
    const char *ext = strrchr(file, '.');
    if (!ext || (strcmp(ext, ".png") && strcmp(ext, ".svg"))) {
        fprintf(stderr, "ae-bench: --plot needs a .png or .svg file name\n");
        return -1;
    }
    char memory_file[PATH_MAX];
    if (snprintf(memory_file, sizeof memory_file, "%.*s-memory%s", (int)(ext - file), file, ext) >=
        (int)sizeof memory_file) {
        fprintf(stderr, "ae-bench: --plot: file name too long\n");
        return -1;
    }
    if (strchr(file, '\'')) {
        fprintf(stderr, "ae-bench: --plot: no quote in the file name, please\n");
        return -1;
    }
    return plot_kind(file, KIND_TIME) < 0 || plot_kind(memory_file, KIND_MEMORY) < 0 ? -1 : 0;
}

/* ---- main ---------------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_value = i + 1 < argc;
        if (!strcmp(a, "--quick"))
            opt.quick = true;
        else if (!strcmp(a, "--csv"))
            opt.format = OUT_CSV;
        else if (!strcmp(a, "--json"))
            opt.format = OUT_JSON;
        else if (!strcmp(a, "--reps") && has_value)
            opt.reps = atoi(argv[++i]);
        else if (!strcmp(a, "--workloads") && has_value)
            opt.workloads = argv[++i];
        else if (!strcmp(a, "--backends") && has_value)
            opt.backends = argv[++i];
        else if (!strcmp(a, "--plot") && has_value)
            opt.plot = argv[++i];
        else if (!strcmp(a, "--table") && has_value)
            opt.table = argv[++i];
        else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (opt.quick && opt.reps == 5)
        opt.reps = 3;
    if (opt.reps < 1 || opt.reps > MAX_REPS) {
        fprintf(stderr, "ae-bench: --reps must be 1 to %d\n", MAX_REPS);
        return 2;
    }
    if ((opt.backends && !safe_name(opt.backends)) || (opt.workloads && !safe_name(opt.workloads))) {
        fprintf(stderr, "ae-bench: names may only use letters, digits, '-', '_' and ','\n");
        return 2;
    }
    if (find_worker_dir() < 0)
        return 1;

    find_backends();
    if (!n_backends) {
        fprintf(stderr, "ae-bench: no backend to run\n");
        return 1;
    }
    for (size_t c = 0; c < N_CASES; c++)
        if (in_list(opt.workloads, cases[c].workload) && (!opt.quick || cases[c].quick))
            total_runs += opt.reps * n_backends;
    started = now_s();
    for (size_t c = 0; c < N_CASES; c++) {
        const case_def *cd = &cases[c];
        if (!in_list(opt.workloads, cd->workload) || (opt.quick && !cd->quick))
            continue;
        int nm = 0;
        while (nm < 8 && cd->metrics[nm])
            nm++;
        run_case(cd->workload, cd->params, cd->args, cd->metrics, nm);
    }
    fprintf(stderr, "%sae-bench: %d runs in %.0f s\n", isatty(2) ? "\r\033[K" : "", done_runs, now_s() - started);
    if (opt.format != OUT_TABLE) {
        print_summary(stderr);
        if (opt.format == OUT_CSV)
            print_csv();
        else
            print_json();
    } else if (opt.table) {
        FILE *t = fopen(opt.table, "w");
        if (!t) {
            fprintf(stderr, "ae-bench: cannot write %s: %s\n", opt.table, strerror(errno));
            return 1;
        }
        print_table(t);
        if (fclose(t) != 0) {
            fprintf(stderr, "ae-bench: cannot write %s: %s\n", opt.table, strerror(errno));
            return 1;
        }
        print_summary(stdout);
        printf("The full table: %s\n", opt.table);
    } else {
        print_summary(stdout);
        print_table(stdout);
    }
    fflush(stdout);
    if (opt.plot && plot(opt.plot) < 0)
        return 1;
    return 0;
}
