/*
 * ae-bench: compare event loops, through anyevent and natively.
 *
 * Runs the workloads of docs/benchmarks.md on every anyevent backend and on
 * each backend's native reference (its library used directly: libev, libuv,
 * libevent; for the built-in poll and select loops, libevent forced to its
 * poll or select method; for the example epoll plugin, libev forced to
 * epoll), interleaved run by run, several repetitions, and reports the
 * medians and their ratio. Each run is a worker process of its
 * own (ae-bench-anyevent, ae-bench-libev, ...), found beside this program.
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
} opt = {.reps = 5};

static char worker_dir[PATH_MAX];

static void usage(FILE *f)
{
    fprintf(f,
            "usage: ae-bench [--quick] [--reps N] [--workloads LIST] [--backends LIST]\n"
            "                [--csv | --json] [--plot FILE.png|FILE.svg]\n"
            "  workloads: lifecycle,pipechain,timers,pingpong,condvar,idle (default: all)\n"
            "  backends:  anyevent backends, e.g. libev,libuv,libevent,epoll,poll,select (default: every one that works)\n"
            "  --quick:   smaller sizes and 3 repetitions, under a minute\n"
            "The table goes to stdout; progress to stderr.\n");
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

static void print_table(void)
{
    printf("%-10s %-26s %-9s %-15s %12s %12s  %-17s %6s  %s\n", "workload", "case", "backend", "metric", "anyevent",
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
            putchar('\n');
        last = r->workload;
        printf("%-10s %-26s %-9s %-15s %12s %12s  %-17s %6s  %s\n", r->workload, r->params, r->backend, r->metric, a,
               n, r->native, q, r->note);
    }
    printf("\nratio: anyevent's cost over native (time / time; for *_per_s rates native / anyevent): "
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

static const char *const all_backends[] = {"libev", "libuv", "libevent", "epoll", "poll", "select"};
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

/* One case: every backend, reps times, anyevent and native interleaved. */
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
            run_result a = run_worker(NULL, "anyevent", workload, ae_args);
            run_result n = {0};
            if (nimpl)
                n = run_worker(nenv, nimpl, workload, args);
            done_runs++;
            if (isatty(2)) /* progress on a terminal only, not in logs */
                fprintf(stderr, "\r[%d/%d] %s %s %s        ", done_runs, total_runs, workload, params, be);
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

/* ---- the plot ------------------------------------------------------------------------ */

static int plot(const char *file)
{
    const char *ext = strrchr(file, '.');
    bool svg = ext && !strcmp(ext, ".svg");
    if (!svg && !(ext && !strcmp(ext, ".png"))) {
        fprintf(stderr, "ae-bench: --plot needs a .png or .svg file name\n");
        return -1;
    }
    char data[] = "/tmp/ae-bench-XXXXXX";
    int fd = mkstemp(data);
    if (fd < 0)
        return -1;
    FILE *f = fdopen(fd, "w");
    /* One group per (workload, case, metric), one bar per backend: the ratio. */
    fprintf(f, "case");
    for (int b = 0; b < n_backends; b++)
        fprintf(f, "\t%s", backends[b]);
    fprintf(f, "\n");
    int groups = 0;
    for (int i = 0; i < n_rows; i++) {
        if (strncmp(rows[i].metric, "allocs", 6) == 0 || !strcmp(rows[i].metric, "mem_bytes") ||
            strcmp(rows[i].backend, backends[0]) != 0)
            continue;
        fprintf(f, "\"%s %s %s\"", rows[i].workload, rows[i].params, rows[i].metric);
        for (int b = 0; b < n_backends; b++) {
            double x = NAN;
            for (int j = 0; j < n_rows; j++)
                if (!strcmp(rows[j].workload, rows[i].workload) && !strcmp(rows[j].params, rows[i].params) &&
                    !strcmp(rows[j].metric, rows[i].metric) && !strcmp(rows[j].backend, backends[b]))
                    x = ratio(&rows[j]);
            if (isnan(x))
                fprintf(f, "\t-");
            else
                fprintf(f, "\t%.4f", x);
        }
        fprintf(f, "\n");
        groups++;
    }
    fclose(f);
    char script[] = "/tmp/ae-bench-XXXXXX";
    fd = mkstemp(script);
    if (fd < 0)
        return -1;
    f = fdopen(fd, "w");
    int width = 300 + groups * 28;
    fprintf(f, "set terminal %s size %d,720 %s\n", svg ? "svg" : "pngcairo", width < 1200 ? 1200 : width,
            svg ? "dynamic" : "");
    fprintf(f, "set output '%s'\nset termoption noenhanced\n", file);
    fprintf(f, "set title 'anyevent / native cost ratio per workload (1.0 = the native library alone; lower is better)'\n");
    fprintf(f, "set style data histograms\nset style histogram clustered gap 1\nset style fill solid 0.8 border -1\n");
    fprintf(f, "set datafile missing '-'\nset datafile separator '\\t'\nset key top left\n");
    fprintf(f, "set xtics rotate by -60 font ',8'\nset yrange [0:*]\nset grid ytics\n");
    fprintf(f, "set arrow from graph 0, first 1 to graph 1, first 1 nohead dt 2 lw 2\n");
    fprintf(f, "set ylabel 'ratio'\nset bmargin 16\n");
    fprintf(f, "plot ");
    for (int b = 0; b < n_backends; b++)
        fprintf(f, "%s'%s' using %d:xtic(1) title columnheader(%d)", b ? ", " : "", data, b + 2, b + 2);
    fprintf(f, "\n");
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
    fprintf(stderr, "ae-bench: plot written to %s\n", file);
    return 0;
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
    ssize_t len = readlink("/proc/self/exe", worker_dir, sizeof worker_dir - 1);
    if (len <= 0) {
        fprintf(stderr, "ae-bench: cannot find my own folder\n");
        return 1;
    }
    worker_dir[len] = '\0';
    *strrchr(worker_dir, '/') = '\0';

    find_backends();
    if (!n_backends) {
        fprintf(stderr, "ae-bench: no backend to run\n");
        return 1;
    }
    for (size_t c = 0; c < N_CASES; c++)
        if (in_list(opt.workloads, cases[c].workload) && (!opt.quick || cases[c].quick))
            total_runs += opt.reps * n_backends;
    double start = (double)time(NULL);
    for (size_t c = 0; c < N_CASES; c++) {
        const case_def *cd = &cases[c];
        if (!in_list(opt.workloads, cd->workload) || (opt.quick && !cd->quick))
            continue;
        int nm = 0;
        while (nm < 8 && cd->metrics[nm])
            nm++;
        run_case(cd->workload, cd->params, cd->args, cd->metrics, nm);
    }
    fprintf(stderr, "%sae-bench: %d runs in %.0f s%30s\n", isatty(2) ? "\r" : "", done_runs,
            (double)time(NULL) - start, "");
    if (opt.format == OUT_CSV)
        print_csv();
    else if (opt.format == OUT_JSON)
        print_json();
    else
        print_table();
    if (opt.plot && plot(opt.plot) < 0)
        return 1;
    return 0;
}
