/*
 * The tests of ae-conformance itself: it is run on plugins built broken on
 * purpose (tests/plugins: an io start that fails, a wait that never returns,
 * a wait that crashes, a wrong ABI version, no entry symbol, an entry or an
 * init that refuses) and on a good plugin file, and each time the exit
 * status, the table row and the reason it prints are checked, as is that the
 * runner itself ended normally.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#if !defined(AE_CONFORMANCE) || !defined(TEST_PLUGIN_DIR) || !defined(GOOD_PLUGIN)
#error "AE_CONFORMANCE, TEST_PLUGIN_DIR and GOOD_PLUGIN name the runner and the plugins under test"
#endif

/* How long one run of the runner may take here; the runs below take seconds. */
#define RUN_LIMIT 120.0
#define OUTPUT_MAX (512 * 1024)

typedef struct outcome {
    int status;     /* from waitpid */
    char *output;   /* stdout and stderr, NUL-terminated */
    size_t length;
    double seconds;
} outcome;

static const char *quoted(const outcome *o);

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Starts the runner with args (NULL-terminated, after the program name),
 * its stdout and stderr into one pipe; returns its pid, *out_fd the pipe. */
static pid_t start_runner(const char *const *args, const char *dir, int *out_fd)
{
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        const char *argv[32] = {AE_CONFORMANCE};
        size_t n = 1;
        for (; args[n - 1] && n < 31; n++)
            argv[n] = args[n - 1];
        argv[n] = NULL;
        if (dup2(p[1], 1) < 0 || dup2(p[1], 2) < 0 || (dir && chdir(dir) < 0))
            _exit(126);
        execv(AE_CONFORMANCE, (char *const *)argv);
        _exit(127);
    }
    close(p[1]);
    *out_fd = p[0];
    return pid;
}

/* Reads what the pipe has; false at end of file. */
static bool read_more(int fd, outcome *o)
{
    if (o->length == OUTPUT_MAX)
        o->length = 0; /* overlong: keep the tail, which has the summary */
    ssize_t n = read(fd, o->output + o->length, OUTPUT_MAX - o->length);
    if (n < 0 && errno == EINTR)
        return true;
    assert_true(n >= 0);
    o->length += (size_t)n;
    o->output[o->length] = '\0';
    return n > 0;
}

/* Runs the runner to its end (cwd dir, if given) and returns its outcome;
 * the runner itself must have exited, not died of a signal. */
static void run(outcome *o, const char *dir, const char *const *args)
{
    memset(o, 0, sizeof *o);
    o->output = malloc(OUTPUT_MAX + 1);
    assert_non_null(o->output);
    o->output[0] = '\0';
    double start = mono();
    int fd;
    pid_t pid = start_runner(args, dir, &fd);
    for (;;) {
        struct pollfd pfd = {fd, POLLIN, 0};
        int left_ms = (int)((start + RUN_LIMIT - mono()) * 1000);
        if (left_ms <= 0) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            close(fd);
            fail_msg("ae-conformance ran longer than %.0f s; it printed:\n%s", RUN_LIMIT, quoted(o));
        }
        int ready = poll(&pfd, 1, left_ms);
        assert_true(ready >= 0 || errno == EINTR);
        if (ready > 0 && !read_more(fd, o))
            break;
    }
    close(fd);
    assert_int_equal(waitpid(pid, &o->status, 0), pid);
    o->seconds = mono() - start;
    if (!WIFEXITED(o->status))
        fail_msg("ae-conformance itself died of signal %d; it printed:\n%s", WTERMSIG(o->status), quoted(o));
}

static void outcome_free(outcome *o)
{
    free(o->output);
}

/* The runner's output, quoted in a failure message: its cmocka-style
 * summary lines ("[  PASSED  ] 3 test(s).") become "(  PASSED  ) ...", so
 * that scripts/test.sh counts only this program's own. */
static const char *quoted(const outcome *o)
{
    for (char *c = o->output; (c = strstr(c, "[  ")); c++) {
        char *close = strchr(c, ']');
        *c = '(';
        if (close && close - c < 12)
            *close = ')';
    }
    return o->output;
}

/* The exit status must be want; prints the output when it is not. */
static void expect_exit(const outcome *o, int want)
{
    if (WEXITSTATUS(o->status) != want)
        fail_msg("ae-conformance exited with %d, not %d; it printed:\n%s", WEXITSTATUS(o->status), want, quoted(o));
}

static void expect_text(const outcome *o, const char *text)
{
    if (!strstr(o->output, text))
        fail_msg("ae-conformance did not print \"%s\"; it printed:\n%s", text, quoted(o));
}

/* The table's row of check has result ("passed" or "FAILED") and, if
 * reason is not NULL, that text in its last column. */
static void expect_row(const outcome *o, const char *check, const char *result, const char *reason)
{
    size_t n = strlen(check);
    for (const char *line = o->output; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        if (len <= n || strncmp(line, check, n) != 0 || (line[n] != ' ' && line[n] != '|'))
            continue;
        char row[1024];
        snprintf(row, sizeof row, "%.*s", (int)len, line);
        char cell[16];
        snprintf(cell, sizeof cell, "| %s |", result);
        if (!strstr(row, cell) || (reason && !strstr(row, reason)))
            fail_msg("the row of %s is not '%s' with \"%s\": %s", check, result, reason ? reason : "", row);
        return;
    }
    fail_msg("no row for %s in:\n%s", check, quoted(o));
}

/* ---- a good plugin ------------------------------------------------------- */

static void test_good_plugin_by_path_passes(void **state)
{
    (void)state;
    if (!*GOOD_PLUGIN)
        skip(); /* no plugin backend built here */
    outcome o;
    run(&o, NULL, (const char *[]){GOOD_PLUGIN, NULL});
    expect_exit(&o, 0);
    expect_text(&o, ", 0 failed, in ");
    expect_row(&o, "test_loop_debug_says_why", "passed", NULL);
    expect_row(&o, "test_time", "passed", NULL);
    assert_null(strstr(o.output, "| FAILED |"));
    outcome_free(&o);
}

/* A relative path is made absolute; the checks that compare the backend's
 * name see the plugin's own name, not the path. */
static void test_good_plugin_by_relative_path(void **state)
{
    (void)state;
    if (!*GOOD_PLUGIN)
        skip();
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", GOOD_PLUGIN);
    char *slash = strrchr(dir, '/');
    assert_non_null(slash);
    char file[4096];
    snprintf(file, sizeof file, "./%s", slash + 1);
    *slash = '\0';
    outcome o;
    run(&o, dir, (const char *[]){"--only", "loop_backend_name,loop_env_backend", "--only", "test_loop_debug_says_why",
                                  file, NULL});
    expect_exit(&o, 0);
    expect_text(&o, "3 checks, 3 passed, 0 failed");
    expect_text(&o, "[  PASSED  ] 3 test(s).");
    outcome_free(&o);
}

/* ---- plugins that cannot be loaded: exit status 2 and the core's message -- */

static void expect_unloadable(const char *file, const char *message)
{
    outcome o;
    run(&o, NULL, (const char *[]){file, NULL});
    expect_exit(&o, 2);
    expect_text(&o, "ae-conformance: cannot load ");
    expect_text(&o, message);
    assert_null(strstr(o.output, "| passed |")); /* no check ran */
    outcome_free(&o);
}

static void test_wrong_abi(void **state)
{
    (void)state;
    expect_unloadable(TEST_PLUGIN_DIR "/anyevent-wrongabi.so", "backend 'wrongabi': ABI version 999");
}

static void test_no_entry_symbol(void **state)
{
    (void)state;
    expect_unloadable(TEST_PLUGIN_DIR "/anyevent-noentry.so", "exports no anyevent_backend_entry()");
}

static void test_entry_refuses(void **state)
{
    (void)state;
    expect_unloadable(TEST_PLUGIN_DIR "/anyevent-refuses.so", "refuses: this machine has no frobnicator");
}

static void test_init_fails(void **state)
{
    (void)state;
    expect_unloadable(TEST_PLUGIN_DIR "/init_fails/anyevent-libev.so", "init_fails: cannot start on purpose");
}

static void test_not_a_plugin_file(void **state)
{
    (void)state;
    expect_unloadable(TEST_PLUGIN_DIR "/no-such-plugin.so", "No such file or directory");
    expect_unloadable(AE_CONFORMANCE, "a plugin file's name ends in .so");
}

/* ---- plugins that load, then fail checks: exit status 1, reasons --------- */

static void test_io_start_fails(void **state)
{
    (void)state;
    outcome o;
    run(&o, NULL,
        (const char *[]){"--only", "io_read_write_independent,timer_not_early", TEST_PLUGIN_DIR "/anyevent-iofails.so",
                         NULL});
    expect_exit(&o, 1);
    /* The core's message, which the plugin set: fd numbers vary. */
    expect_row(&o, "test_io_read_write_independent", "FAILED", ", events 1): iofails: cannot watch fd ");
    expect_row(&o, "test_io_read_write_independent", "FAILED", "(events 0 to 1): fd_update fails on purpose");
    expect_row(&o, "test_timer_not_early", "passed", NULL);
    expect_text(&o, "[  PASSED  ] 1 test(s).");
    expect_text(&o, "[  FAILED  ] 1 test(s), listed below:");
    outcome_free(&o);
}

static void test_wait_hangs(void **state)
{
    (void)state;
    outcome o;
    run(&o, NULL,
        (const char *[]){"--timeout", "1", "--only", "timer_not_early,errors_named",
                         TEST_PLUGIN_DIR "/anyevent-hangs.so", NULL});
    expect_exit(&o, 1);
    expect_row(&o, "test_timer_not_early", "FAILED", "timed out after 1 s");
    expect_row(&o, "test_errors_named", "passed", NULL); /* and it went on */
    expect_text(&o, "[  FAILED  ] 1 test(s), listed below:");
    assert_true(o.seconds < 30);
    outcome_free(&o);
}

static void test_wait_crashes(void **state)
{
    (void)state;
    outcome o;
    run(&o, NULL,
        (const char *[]){"--only", "timer_not_early,errors_named", TEST_PLUGIN_DIR "/anyevent-crashes.so", NULL});
    expect_exit(&o, 1);
    expect_row(&o, "test_timer_not_early", "FAILED", "crashed: SIGSEGV");
    expect_row(&o, "test_errors_named", "passed", NULL);
    outcome_free(&o);
}

/* Whether process pid is gone (or a zombie no one has reaped yet). */
static bool gone(pid_t pid)
{
    if (kill(pid, 0) < 0 && errno == ESRCH)
        return true;
    char path[64], stat[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return true;
    size_t n = fread(stat, 1, sizeof stat - 1, f);
    fclose(f);
    stat[n] = '\0';
    const char *paren = strrchr(stat, ')');
    return paren && paren[1] == ' ' && paren[2] == 'Z';
}

/* A child process of parent, or 0. */
static pid_t child_of(pid_t parent)
{
    DIR *proc = opendir("/proc");
    assert_non_null(proc);
    pid_t found = 0;
    struct dirent *e;
    while (!found && (e = readdir(proc))) {
        if (!isdigit((unsigned char)e->d_name[0]))
            continue;
        char path[300], stat[512];
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue; /* gone meanwhile */
        size_t n = fread(stat, 1, sizeof stat - 1, f);
        fclose(f);
        stat[n] = '\0';
        const char *paren = strrchr(stat, ')');
        int ppid = 0;
        char state_char;
        if (paren && sscanf(paren + 1, " %c %d", &state_char, &ppid) == 2 && ppid == parent)
            found = (pid_t)atoi(e->d_name);
    }
    closedir(proc);
    return found;
}

/* ---- working plugins with one defect each (tests/plugins/broken_wrap.c):
 * the check of that defect fails, with its reason. */

/* A check that hangs on its defect is cut at 2 s; one that fails an
 * assertion gets 30 s, so that a slow machine does not turn its failure
 * into a timeout. */
#define HANGS "timed out after 2 s"
static void expect_check_bites(const char *defect, const char *check, const char *reason)
{
    const char *limit = strcmp(reason, HANGS) == 0 ? "2" : "30";
    char file[4096];
    snprintf(file, sizeof file, "%s/anyevent-broken-%s.so", TEST_PLUGIN_DIR, defect);
    if (access(file, F_OK) != 0)
        skip(); /* the plugin it wraps is not built here */
    outcome o;
    run(&o, NULL, (const char *[]){"--timeout", limit, "--only", check, file, NULL});
    expect_exit(&o, 1);
    expect_row(&o, check, "FAILED", reason);
    outcome_free(&o);
}

static void test_broken_rounding(void **state)
{
    (void)state;
    expect_check_bites("rounding", "test_wait_never_ends_before_timeout", "the wait ended before its timeout");
}

static void test_broken_nesting(void **state)
{
    (void)state;
    expect_check_bites("nesting", "test_nested_wait_when_reentrant", HANGS);
}

static void test_broken_fork(void **state)
{
    (void)state;
    /* The child's changes reach the parent's epoll set: the parent's pipe
     * is never reported again. */
    expect_check_bites("fork", "test_fork_noticed_by_itself", HANGS);
    expect_check_bites("fork", "test_fork_explicit", HANGS);
}

/* Sanitizer builds cannot count allocations (their allocator must see
 * every block): there the check says so and passes. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define KIT_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define KIT_SANITIZED 1
#endif
#endif

#if defined(__SANITIZE_ADDRESS__)
#define KIT_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KIT_ASAN 1
#endif
#endif

static void test_broken_alloc(void **state)
{
    (void)state;
#ifdef KIT_SANITIZED
    skip();
#else
    expect_check_bites("alloc", "test_fd_update_allocates_nothing", "allocations in 400 rounds");
#endif
}

static void test_broken_adopt(void **state)
{
    (void)state;
    /* ae_loop_native gives the plugin's own loop, not the host's. */
    expect_check_bites("adopt", "test_adopt_watchers_fire_in_host_loop", "conformance_plugin.c");
    expect_check_bites("adopt", "test_adopt_timer_zero_next_host_iteration", "0 != 0x1");
}

static void test_broken_rearm(void **state)
{
    (void)state;
    expect_check_bites("rearm", "test_adopt_timer_update_rearms", HANGS);
}

/* A plugin that reads its state after a timer callback freed the loop:
 * only a memory checker sees it, so only AddressSanitizer builds check
 * that the check fails. */
static void test_broken_touch(void **state)
{
    (void)state;
#ifdef KIT_ASAN
    expect_check_bites("touch", "test_adopt_free_from_host_callbacks", "heap-use-after-free");
#else
    skip();
#endif
}

static void test_broken_nohost(void **state)
{
    (void)state;
    expect_check_bites("nohost", "test_adopt_watchers_fire_in_host_loop",
                       "exports no anyevent_backend_test_host(): its adoption cannot be checked");
}

/* Ended by SIGTERM in the middle of a check, the runner takes the check's
 * process with it. */
static void test_terminated_runner_leaves_no_check_behind(void **state)
{
    (void)state;
    int fd;
    pid_t runner = start_runner(
        (const char *[]){"--only", "timer_not_early", TEST_PLUGIN_DIR "/anyevent-hangs.so", NULL}, NULL, &fd);
    outcome o = {.output = malloc(OUTPUT_MAX + 1)};
    assert_non_null(o.output);
    o.output[0] = '\0';
    pid_t check = 0;
    double start = mono();
    while (!check && mono() - start < 30) {
        struct pollfd pfd = {fd, POLLIN, 0};
        if (poll(&pfd, 1, 50) > 0)
            read_more(fd, &o);
        if (strstr(o.output, "time or reason"))
            check = child_of(runner);
    }
    if (!check) {
        kill(runner, SIGKILL);
        waitpid(runner, NULL, 0);
        fail_msg("found no check process of the runner; it printed:\n%s", quoted(&o));
    }
    assert_int_equal(kill(runner, SIGTERM), 0);
    int status;
    assert_int_equal(waitpid(runner, &status, 0), runner);
    close(fd);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGTERM);
    start = mono();
    while (!gone(check) && mono() - start < 10) {
        struct timespec tick = {0, 20 * 1000000L};
        nanosleep(&tick, NULL);
    }
    if (!gone(check)) {
        kill(check, SIGKILL);
        fail_msg("the check's process %d outlived the runner", (int)check);
    }
    free(o.output);
}

/* ---- the command line ---------------------------------------------------- */

static void test_usage_errors(void **state)
{
    (void)state;
    const char *const *const cases[] = {
        (const char *[]){NULL},
        (const char *[]){"--bogus", "poll", NULL},
        (const char *[]){"--only", "no_such_check", "poll", NULL},
        (const char *[]){"--timeout", "0", "poll", NULL},
        (const char *[]){"--timeout", "soon", "poll", NULL},
        (const char *[]){"--timeout", NULL},
        (const char *[]){"poll", "select", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        outcome o;
        run(&o, NULL, cases[i]);
        expect_exit(&o, 2);
        expect_text(&o, "ae-conformance --help");
        outcome_free(&o);
    }
    outcome o;
    run(&o, NULL, (const char *[]){"--help", NULL});
    expect_exit(&o, 0);
    expect_text(&o, "usage: ae-conformance [OPTIONS] BACKEND");
    expect_text(&o, "--timeout SECS");
    outcome_free(&o);
}

static void test_list(void **state)
{
    (void)state;
    outcome o;
    run(&o, NULL, (const char *[]){"--list", NULL});
    expect_exit(&o, 0);
    expect_text(&o, "test_loop_backend_name\n");
    expect_text(&o, "test_time\n");
    size_t lines = 0;
    for (const char *c = o.output; *c; c++)
        lines += *c == '\n';
    assert_true(lines > 50); /* the whole suite, one name a line */
    outcome_free(&o);
    run(&o, NULL, (const char *[]){"--list", "--only", "time,io_bad_fd", NULL});
    expect_exit(&o, 0);
    assert_string_equal(o.output, "test_io_bad_fd\ntest_time\n");
    outcome_free(&o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_plugin_by_path_passes),
        cmocka_unit_test(test_good_plugin_by_relative_path),
        cmocka_unit_test(test_wrong_abi),
        cmocka_unit_test(test_no_entry_symbol),
        cmocka_unit_test(test_entry_refuses),
        cmocka_unit_test(test_init_fails),
        cmocka_unit_test(test_not_a_plugin_file),
        cmocka_unit_test(test_io_start_fails),
        cmocka_unit_test(test_wait_hangs),
        cmocka_unit_test(test_wait_crashes),
        cmocka_unit_test(test_broken_rounding),
        cmocka_unit_test(test_broken_nesting),
        cmocka_unit_test(test_broken_fork),
        cmocka_unit_test(test_broken_alloc),
        cmocka_unit_test(test_broken_adopt),
        cmocka_unit_test(test_broken_rearm),
        cmocka_unit_test(test_broken_touch),
        cmocka_unit_test(test_broken_nohost),
        cmocka_unit_test(test_terminated_runner_leaves_no_check_behind),
        cmocka_unit_test(test_usage_errors),
        cmocka_unit_test(test_list),
    };
    return cmocka_run_group_tests_name("conformance-kit", tests, NULL, NULL);
}
