/*
 * ae_cmd_run: one test per rule of include/anyevent/stream.h, on every
 * backend and inside adopted host loops (see harness.h). Repeated runs
 * are a tenth as many under valgrind.
 */
#include <sys/wait.h>
#ifdef HAVE_VALGRIND_H
#include <valgrind/valgrind.h>
#endif

#include "harness.h"

static int scale(int n)
{
#ifdef HAVE_VALGRIND_H
    if (RUNNING_ON_VALGRIND)
        return n / 10;
#endif
    return n;
}

static ae_cmd *run(const ae_cmd_opts *o)
{
    ae_cmd *c = CALL(ae_cmd_run(F->loop, o));
    if (!c)
        fail_msg("ae_cmd_run(%s): %s", o->argv[0], ae_last_error());
    return c;
}

/* Wait for the command's condvar; its value is the wait status. */
static int wait_status(ae_cmd *c)
{
    ae_cv *cv = ae_cmd_cv(c);
    WAIT(ae_cv_ready(cv));
    void *v = NULL;
    assert_int_equal(ae_cv_recv(cv, &v), 0);
    return (int)(intptr_t)v;
}

static void test_bad_input(void **state)
{
    (void)state;
    const char *argv[] = {"true", NULL};
    ae_cmd_opts o = {.argv = argv};
    assert_null(ae_cmd_run(NULL, &o));
    assert_int_equal(ae_last_error_code(), AE_EINVAL);
    assert_null(ae_cmd_run(F->loop, NULL));
    assert_int_equal(ae_last_error_code(), AE_EINVAL);
    assert_null(ae_cmd_run(F->loop, &(ae_cmd_opts){0}));
    assert_int_equal(ae_last_error_code(), AE_EINVAL);
    assert_null(ae_cmd_run(F->loop, &(ae_cmd_opts){.argv = (const char *const[]){NULL}}));
    assert_int_equal(ae_last_error_code(), AE_EINVAL);
    o.out = 7;
    assert_null(ae_cmd_run(F->loop, &o));
    assert_int_equal(ae_last_error_code(), AE_EINVAL);
    o.out = AE_CMD_FD;
    o.out_fd = -1;
    assert_null(ae_cmd_run(F->loop, &o));
    assert_int_equal(ae_last_error_code(), AE_EBADF);
    o = (ae_cmd_opts){.argv = (const char *const[]){"/no/such/program", NULL}, .out = AE_CMD_CAPTURE};
    assert_null(ae_cmd_run(F->loop, &o));
    assert_int_equal(ae_last_error_code(), AE_ENOENT);
    o.argv = (const char *const[]){"no-such-program-anywhere", NULL};
    assert_null(ae_cmd_run(F->loop, &o));
    assert_int_equal(ae_last_error_code(), AE_ENOENT);
    assert_null(ae_cmd_cv(NULL));
    assert_int_equal(ae_cmd_pid(NULL), -1);
    assert_null(ae_cmd_output(NULL, 1, NULL));
    ae_cmd_free(NULL);
    assert_no_failure();
}

static void test_capture_and_status(void **state)
{
    (void)state;
    const char *argv[] = {"sh", "-c", "echo out; echo err >&2; exit 3", NULL};
    ae_cmd *c = run(&(ae_cmd_opts){.argv = argv, .out = AE_CMD_CAPTURE, .err = AE_CMD_CAPTURE});
    assert_true(ae_cmd_pid(c) > 0);
    assert_int_equal(ae_cv_ready(ae_cmd_cv(c)), 0); /* never inside the call */
    int st = wait_status(c);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 3);
    size_t len;
    assert_string_equal(ae_cmd_output(c, 1, &len), "out\n");
    assert_int_equal(len, 4);
    assert_string_equal(ae_cmd_output(c, 2, NULL), "err\n");
    assert_null(ae_cmd_output(c, 3, NULL));
    CALLV(ae_cmd_free(c));
    /* Not captured: no output. */
    c = run(&(ae_cmd_opts){.argv = (const char *const[]){"true", NULL}});
    wait_status(c);
    assert_null(ae_cmd_output(c, 1, NULL));
    ae_cmd_free(c);
    assert_no_failure();
}

static void test_input(void **state)
{
    (void)state;
    enum { N = 1 << 20 };
    char *in = malloc(N);
    for (size_t i = 0; i < N; i++)
        in[i] = (char)('a' + i % 26);
    const char *argv[] = {"cat", NULL};
    ae_cmd *c = run(&(ae_cmd_opts){.argv = argv, .input = in, .input_len = N, .out = AE_CMD_CAPTURE});
    free(in); /* the command has its own copy */
    int st = wait_status(c);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    size_t len;
    const char *out = ae_cmd_output(c, 1, &len);
    assert_int_equal(len, N);
    for (size_t i = 0; i < N; i += 4099)
        assert_int_equal(out[i], 'a' + i % 26);
    ae_cmd_free(c);
    /* A child that does not read its input: no SIGPIPE, just the end. */
    c = run(&(ae_cmd_opts){.argv = (const char *const[]){"true", NULL}, .input = "x", .input_len = 1});
    wait_status(c);
    ae_cmd_free(c);
    /* No input: stdin is /dev/null. */
    c = run(&(ae_cmd_opts){.argv = argv, .out = AE_CMD_CAPTURE});
    wait_status(c);
    assert_string_equal(ae_cmd_output(c, 1, NULL), "");
    ae_cmd_free(c);
    assert_no_failure();
}

/* The condvar waits for the end of every captured pipe: a background job
 * that writes after the shell exited is not lost. */
static void test_output_after_exit(void **state)
{
    (void)state;
    const char *argv[] = {"sh", "-c", "echo a; (sleep 0.2; echo b) &", NULL};
    ae_cmd *c = run(&(ae_cmd_opts){.argv = argv, .out = AE_CMD_CAPTURE});
    wait_status(c);
    assert_string_equal(ae_cmd_output(c, 1, NULL), "a\nb\n");
    ae_cmd_free(c);
    assert_no_failure();
}

/* Many short "print then exit" runs at once: no output lost. */
static void test_no_output_lost(void **state)
{
    (void)state;
    enum { MAX = 200, AT_ONCE = 20 };
    int n = scale(MAX);
    ae_cmd *cmds[AT_ONCE];
    char arg[AT_ONCE][32];
    for (int done = 0; done < n;) {
        int k = n - done < AT_ONCE ? n - done : AT_ONCE;
        for (int i = 0; i < k; i++) {
            snprintf(arg[i], sizeof arg[i], "line %d", done + i);
            const char *argv[] = {"echo", arg[i], NULL};
            cmds[i] = run(&(ae_cmd_opts){.argv = argv, .out = AE_CMD_CAPTURE});
        }
        for (int i = 0; i < k; i++) {
            wait_status(cmds[i]);
            char want[40];
            snprintf(want, sizeof want, "%s\n", arg[i]);
            assert_string_equal(ae_cmd_output(cmds[i], 1, NULL), want);
            ae_cmd_free(cmds[i]);
        }
        done += k;
    }
    assert_no_failure();
}

/* The signal set of a /proc/self/status field, without the signals the C
 * library reserves for itself (glibc's posix_spawn sets those itself). */
static unsigned long long sigset_field(const char *status, const char *field)
{
    const char *p = strstr(status, field);
    if (!p)
        return ~0ULL;
    unsigned long long v = strtoull(p + strlen(field), NULL, 16);
    for (int sig = 32; sig < SIGRTMIN; sig++)
        v &= ~(1ULL << (sig - 1));
    return v;
}

/* Default dispositions and an empty mask, whatever the program had. */
static void test_signals_reset(void **state)
{
    (void)state;
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    sigprocmask(SIG_BLOCK, &block, &old);
    void (*was)(int) = signal(SIGUSR2, SIG_IGN); /* SIGPIPE is ignored by the harness too */
    const char *argv[] = {"cat", "/proc/self/status", NULL};
    ae_cmd *c = run(&(ae_cmd_opts){.argv = argv, .out = AE_CMD_CAPTURE});
    sigprocmask(SIG_SETMASK, &old, NULL);
    signal(SIGUSR2, was);
    wait_status(c);
    const char *st = ae_cmd_output(c, 1, NULL);
    assert_int_equal(sigset_field(st, "SigBlk:"), 0);
    assert_int_equal(sigset_field(st, "SigIgn:"), 0);
    ae_cmd_free(c);
    assert_no_failure();
}

static void test_cwd_env_fd_null(void **state)
{
    (void)state;
    ae_cmd *c = run(&(ae_cmd_opts){.argv = (const char *const[]){"pwd", NULL}, .cwd = "/", .out = AE_CMD_CAPTURE});
    wait_status(c);
    assert_string_equal(ae_cmd_output(c, 1, NULL), "/\n");
    ae_cmd_free(c);
    c = run(&(ae_cmd_opts){.argv = (const char *const[]){"sh", "-c", "echo $AE_X", NULL},
                           .envp = (const char *const[]){"AE_X=42", NULL}, .out = AE_CMD_CAPTURE});
    wait_status(c);
    assert_string_equal(ae_cmd_output(c, 1, NULL), "42\n");
    ae_cmd_free(c);
    /* AE_CMD_FD: stdout into our socket; AE_CMD_NULL: stderr gone. */
    c = run(&(ae_cmd_opts){.argv = (const char *const[]){"sh", "-c", "echo to-fd; echo gone >&2", NULL},
                           .out = AE_CMD_FD, .out_fd = F->fd[0], .err = AE_CMD_NULL});
    wait_status(c);
    char buf[16] = {0};
    assert_int_equal(recv(F->fd[1], buf, sizeof buf - 1, MSG_DONTWAIT), 6);
    assert_string_equal(buf, "to-fd\n");
    ae_cmd_free(c);
    assert_no_failure();
}

static void test_out_max(void **state)
{
    (void)state;
    const char *argv[] = {"head", "-c", "1000000", "/dev/zero", NULL};
    ae_cmd *c = run(&(ae_cmd_opts){.argv = argv, .out = AE_CMD_CAPTURE, .out_max = 1000});
    ae_cv *cv = ae_cmd_cv(c);
    WAIT(ae_cv_ready(cv));
    assert_int_equal(ae_cv_recv(cv, NULL), AE_ECROAKED);
    assert_non_null(strstr(ae_cv_error(cv), "out_max"));
    ae_cmd_free(c);
    assert_no_failure();
}

/* Freed while running: the process goes on and is still reaped. */
static void test_free_running(void **state)
{
    (void)state;
    const char *argv[] = {"sleep", "0.2", NULL};
    ae_cmd *c = run(&(ae_cmd_opts){.argv = argv, .out = AE_CMD_CAPTURE});
    pid_t pid = ae_cmd_pid(c);
    CALLV(ae_cmd_free(c));
    assert_int_equal(kill(pid, 0), 0); /* running */
    double until = ae_time() + 5;
    while (kill(pid, 0) == 0 && ae_time() < until) /* a zombie still answers: reaped means gone */
        run_for(0.01);
    assert_int_equal(kill(pid, 0), -1);
    assert_no_failure();
}

static void free_from_cv(ae_cv *cv, void *arg)
{
    (void)cv;
    in_callback("a condvar callback");
    ae_cmd_free(*(ae_cmd **)arg);
    *(ae_cmd **)arg = NULL;
}

static void test_free_from_cv_callback(void **state)
{
    (void)state;
    const char *argv[] = {"echo", "x", NULL};
    ae_cmd *c = run(&(ae_cmd_opts){.argv = argv, .out = AE_CMD_CAPTURE});
    ae_cv_cb(ae_cmd_cv(c), free_from_cv, &c);
    WAIT(!c);
    assert_no_failure();
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        T(test_bad_input),
        T(test_capture_and_status),
        T(test_input),
        T(test_output_after_exit),
        T(test_no_output_lost),
        T(test_signals_reset),
        T(test_cwd_env_fd_null),
        T(test_out_max),
        T(test_free_running),
        T(test_free_from_cv_callback),
    };
    return harness_run(argc, argv, tests, sizeof tests / sizeof tests[0], "cmd");
}
