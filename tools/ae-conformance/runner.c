/*
 * ae-conformance: runs anyevent's conformance suite (tests/conformance.c)
 * against one backend, each check in a process of its own.
 *
 * Usage: ae-conformance [OPTIONS] BACKEND
 *   BACKEND         a backend's name (poll, select, libev, ...) or a plugin
 *                   file (./anyevent-mine.so: a path, relative or absolute)
 *   --list          print the names of the checks and exit
 *   --only NAMES    run only these checks: comma-separated, the option may be
 *                   repeated, the "test_" prefix may be left out
 *   --timeout SECS  the limit for one check (default 60)
 *   --verbose       print the output of every check, not only of failed ones
 *   --help
 *
 * First a probe process loads the backend and creates one loop: if that
 * fails (not a plugin, wrong ABI version, no entry symbol, init refused), the
 * core's message is printed and the exit status is 2. Then every check runs
 * in a child process of its own process group, one after another: a failed
 * assertion, a crash (signal) or a hang (killed, with everything the check
 * started, at the deadline) fails that check only, with the reason in the
 * table, and the run goes on. A check passes only if its process then exits
 * with status 0, so a leak found by a memory checker at exit fails it.
 *
 * Output: a table "check | result | time or reason", the output of every
 * failed check, a summary line, and cmocka's summary lines ("[  PASSED  ] N
 * test(s)."), which scripts/test.sh counts.
 * Exit status: 0 every check passed, 1 some failed, 2 usage error or the
 * backend cannot be loaded. docs/conformance.md has the details.
 */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "anyevent.h"
#include "conformance.h"
#include "isolate.h"
#include "verdict.h"

#define DEFAULT_TIMEOUT 60.0
/* The probe only loads the plugin and creates a loop. */
#define PROBE_TIMEOUT 30.0
#define EXIT_USAGE 2

static const char usage[] =
    "usage: ae-conformance [OPTIONS] BACKEND\n"
    "Runs anyevent's conformance suite against one backend, each check in a\n"
    "process of its own, and prints a table of the checks passed and failed.\n"
    "\n"
    "  BACKEND          a backend's name (poll, select, libev, ...) or a plugin\n"
    "                   file (anyevent-NAME.so, relative or absolute path)\n"
    "  --list           print the names of the checks and exit\n"
    "  --only NAMES     run only these checks (comma-separated; repeatable;\n"
    "                   the \"test_\" prefix may be left out)\n"
    "  --timeout SECS   time limit of one check (default 60); a check that\n"
    "                   runs longer is killed with all it started\n"
    "  --verbose        print every check's output, not only failed ones'\n"
    "  --help           print this and exit\n"
    "\n"
    "Exit status: 0 every check passed; 1 a check failed, crashed or timed\n"
    "out; 2 usage error, or the backend cannot be loaded at all.\n";

typedef struct options {
    const char *backend;
    bool list;
    bool verbose;
    double timeout;
    const char *only[256];
    size_t n_only;
} options;

static double monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "ae-conformance: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n(ae-conformance --help tells how to use it)\n");
    return EXIT_USAGE;
}

/* Splits a comma-separated list into o->only (the strings are argv's). */
static int add_only(options *o, char *list)
{
    for (char *name = strtok(list, ","); name; name = strtok(NULL, ",")) {
        if (o->n_only == sizeof o->only / sizeof o->only[0])
            return usage_error("too many names given to --only (at most %s)", "256");
        o->only[o->n_only++] = name;
    }
    return 0;
}

static int parse_options(int argc, char **argv, options *o)
{
    memset(o, 0, sizeof *o);
    o->timeout = DEFAULT_TIMEOUT;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            fputs(usage, stdout);
            exit(0);
        } else if (strcmp(arg, "--list") == 0) {
            o->list = true;
        } else if (strcmp(arg, "--verbose") == 0 || strcmp(arg, "-v") == 0) {
            o->verbose = true;
        } else if (strcmp(arg, "--only") == 0 || strcmp(arg, "--timeout") == 0) {
            if (i + 1 == argc)
                return usage_error("%s needs a value", arg);
            char *value = argv[++i];
            if (arg[2] == 'o') {
                if (add_only(o, value) != 0)
                    return EXIT_USAGE;
            } else {
                char *end;
                o->timeout = strtod(value, &end);
                if (end == value || *end || !(o->timeout > 0) || o->timeout > 86400)
                    return usage_error("--timeout wants seconds, more than 0 and at most a day, not '%s'", value);
            }
        } else if (arg[0] == '-' && arg[1]) {
            return usage_error("unknown option %s", arg);
        } else if (o->backend) {
            return usage_error("one backend at a time (also given: %s)", arg);
        } else {
            o->backend = arg;
        }
    }
    if (!o->backend && !o->list)
        return usage_error("%s", "which backend? Give its name or a plugin file");
    return 0;
}

/* Whether check is what the user named (with or without "test_"). */
static bool names(const char *wanted, const char *check)
{
    return strcmp(wanted, check) == 0 || (strncmp(check, "test_", 5) == 0 && strcmp(wanted, check + 5) == 0);
}

/* This program's absolute path, for the checks that run it again. Not
 * /proc/self/exe: under valgrind that is valgrind. */
static int find_self(const char *argv0, char *out)
{
    if (strchr(argv0, '/'))
        return realpath(argv0, out) ? 0 : -1;
    const char *path = getenv("PATH");
    while (path && *path) {
        size_t len = strcspn(path, ":");
        char candidate[PATH_MAX];
        if (len > 0 && len + strlen(argv0) + 2 < sizeof candidate) {
            snprintf(candidate, sizeof candidate, "%.*s/%s", (int)len, path, argv0);
            if (access(candidate, X_OK) == 0 && realpath(candidate, out))
                return 0;
        }
        path += len + (path[len] == ':');
    }
    return realpath("/proc/self/exe", out) ? 0 : -1;
}

/* A backend argument with a slash or ending in ".so" is a plugin file; the
 * core loads a file given by absolute path. */
static int resolve_backend(const char *arg, char *out, size_t size)
{
    size_t len = strlen(arg);
    bool is_file = strchr(arg, '/') || (len > 3 && strcmp(arg + len - 3, ".so") == 0);
    if (!is_file) {
        snprintf(out, size, "%s", arg);
        return 0;
    }
    char real[PATH_MAX];
    if (!realpath(arg, real)) {
        fprintf(stderr, "ae-conformance: cannot load %s: %s\n", arg, strerror(errno));
        return EXIT_USAGE;
    }
    len = strlen(real);
    if (len <= 3 || strcmp(real + len - 3, ".so") != 0) {
        fprintf(stderr, "ae-conformance: cannot load %s: a plugin file's name ends in .so\n", arg);
        return EXIT_USAGE;
    }
    snprintf(out, size, "%s", real);
    return 0;
}

/* The probe process: one loop on the backend; prints "backend NAME" or
 * "error MESSAGE". */
static int probe(void *arg)
{
    const char *given = arg;
    ae_loop *loop = ae_loop_new(given);
    if (!loop) {
        printf("error %s\n", ae_last_error());
        return 3;
    }
    printf("backend %s\n", ae_loop_backend(loop));
    ae_loop_free(loop);
    return 0;
}

/* Loads the backend in a probe process; its own name into own_name. */
static int probe_backend(const char *given, const char *shown, char *own_name, size_t size)
{
    isolated_run run;
    if (isolate_run(probe, (void *)given, PROBE_TIMEOUT, &run) < 0) {
        fprintf(stderr, "ae-conformance: cannot start a process: %s\n", strerror(errno));
        return EXIT_USAGE;
    }
    int rc = 0;
    const char *name = strstr(run.output, "backend ");
    const char *error = strstr(run.output, "error ");
    /* Loaded and started once the name is printed, whatever the exit (a
     * leak at exit is for the checks to report). */
    if (name && (name == run.output || name[-1] == '\n')) {
        name += 8;
        snprintf(own_name, size, "%.*s", (int)strcspn(name, "\n"), name);
    } else if (run.end == ISOLATED_EXITED && error && (error == run.output || error[-1] == '\n')) {
        error += 6;
        fprintf(stderr, "ae-conformance: cannot load %s: %.*s\n", shown, (int)strcspn(error, "\n"), error);
        rc = EXIT_USAGE;
    } else {
        check_verdict v;
        verdict_judge("probe", &run, PROBE_TIMEOUT, &v);
        fprintf(stderr, "ae-conformance: cannot load %s: loading it and creating a loop %s\n", shown, v.reason);
        if (run.length)
            fprintf(stderr, "%s%s", run.output, run.output[run.length - 1] == '\n' ? "" : "\n");
        rc = EXIT_USAGE;
    }
    isolated_run_free(&run);
    return rc;
}

typedef struct one_check {
    const struct CMUnitTest *test;
    const char *group;
} one_check;

/* A check's process: cmocka runs this one test, in its subunit output (one
 * line per result, the failure's message between brackets). */
static int run_check(void *arg)
{
    const one_check *c = arg;
    const struct CMUnitTest one[1] = {*c->test};
    /* Both would change what verdict.c reads: another output format, or
     * abort() on a failed assertion. */
    unsetenv("CMOCKA_MESSAGE_OUTPUT");
    unsetenv("CMOCKA_TEST_ABORT");
    cmocka_set_message_output(CM_OUTPUT_SUBUNIT);
    return cmocka_run_group_tests_name(c->group, one, NULL, NULL) == 0 ? 0 : 1;
}

/* The captured output of a check, indented, after the table. */
static void print_output(const char *name, const isolated_run *run)
{
    printf("\n---- output of %s%s ----\n", name, run->truncated ? " (truncated)" : "");
    const char *line = run->output;
    while (line && *line) {
        const char *end = strchr(line, '\n');
        int len = end ? (int)(end - line) : (int)strlen(line);
        printf("    %.*s\n", len, line);
        line = end ? end + 1 : NULL;
    }
}

int main(int argc, char **argv)
{
    /* Some checks run this program again to see what a fresh process does. */
    if (argc > 1 && strcmp(argv[1], "--debug-probe") == 0)
        return conformance_debug_probe();

    options o;
    int rc = parse_options(argc, argv, &o);
    if (rc != 0)
        return rc;
    size_t n_checks;
    const struct CMUnitTest *checks = conformance_checks(&n_checks);
    size_t width = 5;
    for (size_t i = 0; i < n_checks; i++)
        if (strlen(checks[i].name) > width)
            width = strlen(checks[i].name);
    bool *selected = calloc(n_checks, sizeof *selected);
    if (!selected) {
        fprintf(stderr, "ae-conformance: out of memory\n");
        return EXIT_USAGE;
    }
    size_t n_selected = 0;
    for (size_t i = 0; i < n_checks; i++) {
        selected[i] = o.n_only == 0;
        for (size_t j = 0; j < o.n_only && !selected[i]; j++)
            selected[i] = names(o.only[j], checks[i].name);
        n_selected += selected[i];
    }
    for (size_t j = 0; j < o.n_only; j++) {
        bool known = false;
        for (size_t i = 0; i < n_checks && !known; i++)
            known = names(o.only[j], checks[i].name);
        if (!known) {
            free(selected);
            return usage_error("no check is named '%s' (ae-conformance --list names them)", o.only[j]);
        }
    }
    if (o.list) {
        for (size_t i = 0; i < n_checks; i++)
            if (selected[i])
                printf("%s\n", checks[i].name);
        free(selected);
        return 0;
    }

    static char self[PATH_MAX], given[PATH_MAX], own_name[256];
    if (find_self(argv[0], self) < 0) {
        fprintf(stderr, "ae-conformance: cannot find this program's own file (%s): %s\n", argv[0], strerror(errno));
        free(selected);
        return EXIT_USAGE;
    }
    if ((rc = resolve_backend(o.backend, given, sizeof given)) != 0 || isolate_init() < 0 ||
        (rc = probe_backend(given, o.backend, own_name, sizeof own_name)) != 0) {
        if (rc == 0)
            fprintf(stderr, "ae-conformance: cannot set up signal handling: %s\n", strerror(errno));
        free(selected);
        return EXIT_USAGE;
    }
    conformance_configure(given, own_name, self);
    /* The checks choose backends themselves. */
    unsetenv("ANYEVENT_BACKEND");

    char group[PATH_MAX + 32];
    snprintf(group, sizeof group, "conformance[%s]", own_name);
    printf("ae-conformance: backend %s%s%s, %zu check%s, at most %g s each\n\n", own_name,
           strcmp(given, own_name) ? " from " : "", strcmp(given, own_name) ? given : "", n_selected,
           n_selected == 1 ? "" : "s", o.timeout);
    printf("%-*s | result | time or reason\n", (int)width, "check");
    for (size_t i = 0; i < width; i++)
        putchar('-');
    printf("-+--------+---------------\n");

    isolated_run *runs = calloc(n_checks, sizeof *runs);
    check_verdict *verdicts = calloc(n_checks, sizeof *verdicts);
    if (!runs || !verdicts) {
        fprintf(stderr, "ae-conformance: out of memory\n");
        free(selected);
        free(runs);
        free(verdicts);
        return EXIT_USAGE;
    }
    size_t passed = 0, failed = 0;
    double start = monotonic();
    for (size_t i = 0; i < n_checks; i++) {
        if (!selected[i])
            continue;
        one_check c = {&checks[i], group};
        if (isolate_run(run_check, &c, o.timeout, &runs[i]) < 0) {
            verdicts[i].passed = false;
            snprintf(verdicts[i].reason, sizeof verdicts[i].reason, "could not start its process: %s",
                     strerror(errno));
        } else {
            verdict_judge(checks[i].name, &runs[i], o.timeout, &verdicts[i]);
        }
        if (verdicts[i].passed) {
            passed++;
            printf("%-*s | passed | %.2f s\n", (int)width, checks[i].name, runs[i].seconds);
        } else {
            failed++;
            printf("%-*s | FAILED | %s\n", (int)width, checks[i].name, verdicts[i].reason);
        }
        fflush(stdout);
    }
    double total = monotonic() - start;

    for (size_t i = 0; i < n_checks; i++)
        if (selected[i] && runs[i].output && (o.verbose || !verdicts[i].passed) && runs[i].length)
            print_output(checks[i].name, &runs[i]);
    printf("\nae-conformance: backend %s: %zu check%s, %zu passed, %zu failed, in %.1f s\n", own_name, n_selected,
           n_selected == 1 ? "" : "s", passed, failed, total);
    /* cmocka's own summary lines, which scripts/test.sh counts. */
    printf("[==========] %zu test(s) run.\n", n_selected);
    printf("[  PASSED  ] %zu test(s).\n", passed);
    if (failed) {
        printf("[  FAILED  ] %zu test(s), listed below:\n", failed);
        for (size_t i = 0; i < n_checks; i++)
            if (selected[i] && !verdicts[i].passed)
                printf("[  FAILED  ] %s\n", checks[i].name);
    }
    for (size_t i = 0; i < n_checks; i++)
        isolated_run_free(&runs[i]);
    free(runs);
    free(verdicts);
    free(selected);
    return failed ? 1 : 0;
}
