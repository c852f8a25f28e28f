/*
 * The plugin loader: missing plugins, plugins that fail to load, the wrong
 * ABI, an unknown name, ANYEVENT_BACKEND, ANYEVENT_PLUGIN_PATH and the
 * skipping of a broken plugin in auto-detection. The loader remembers every
 * plugin per process, so each case runs in a fresh copy of this program
 * (`loader --probe NAME`) with its own environment.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "anyevent.h"

#ifndef TEST_PLUGIN_DIR
#error "TEST_PLUGIN_DIR must name the folder of the test plugins"
#endif

static char self_path[4096]; /* this program (not /proc/self/exe: under valgrind that is valgrind) */

/* ---- the probe: what the child prints ------------------------------------ */

static int probe_main(const char *name)
{
    ae_loop *loop = ae_loop_new(strcmp(name, "-") == 0 ? NULL : name);
    if (!loop) {
        printf("error %d %s\n", ae_last_error_code(), ae_last_error());
        return 0;
    }
    printf("ok %s\n", ae_loop_backend(loop));
    const ae_backend_info *list;
    int n = ae_backends(&list);
    for (int i = 0; i < n; i++)
        printf("backend %s %d %s\n", list[i].name, list[i].available, list[i].detail);
    ae_loop_free(loop);
    return 0;
}

/* ---- the parent -------------------------------------------------------------- */

struct output {
    char out[8192];
    char err[8192];
};

static void read_all(int fd, char *buf, size_t size)
{
    size_t len = 0;
    ssize_t r;
    while (len + 1 < size && (r = read(fd, buf + len, size - 1 - len)) != 0) {
        if (r < 0 && errno == EINTR)
            continue;
        assert_true(r > 0);
        len += (size_t)r;
    }
    buf[len] = '\0';
}

/* Runs `loader --probe name` with env (NULL-terminated "NAME=value" list; the
 * ANYEVENT_ variables not listed are unset). */
static void probe(const char *name, const char *const *env, struct output *o)
{
    int out[2], err[2];
    assert_int_equal(pipe(out), 0);
    assert_int_equal(pipe(err), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(out[1], 1);
        dup2(err[1], 2);
        close(out[0]);
        close(err[0]);
        unsetenv("ANYEVENT_BACKEND");
        unsetenv("ANYEVENT_DEBUG");
        unsetenv("ANYEVENT_PLUGIN_PATH");
        for (; env && *env; env++)
            putenv((char *)*env);
        execl(self_path, "loader", "--probe", name, (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    close(err[1]);
    /* The probe writes little; read stdout, then stderr. */
    read_all(out[0], o->out, sizeof o->out);
    read_all(err[0], o->err, sizeof o->err);
    close(out[0]);
    close(err[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void expect_error(const struct output *o, const char *fragment)
{
    if (strncmp(o->out, "error -4 ", 9) != 0 || !strstr(o->out, fragment))
        fail_msg("expected AE_ENOENT mentioning \"%s\", got: %s", fragment, o->out);
}

static void test_missing_plugin(void **state)
{
    (void)state;
    struct output o;
    probe("nosuch", NULL, &o);
    expect_error(&o, "unknown backend 'nosuch' (named by the caller)");
    expect_error(&o, "anyevent-nosuch.so: not found");
    expect_error(&o, "available: ");
    expect_error(&o, "poll,select");
}

static void test_bad_name(void **state)
{
    (void)state;
    struct output o;
    probe("../../tmp/evil", NULL, &o);
    expect_error(&o, "is not a plugin name");
}

static void test_plugin_fails_to_dlopen(void **state)
{
    (void)state;
    char dir[] = "/tmp/ae-loader-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/anyevent-garbage.so", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (int i = 0; i < 20; i++)
        fputs("this is not a shared object\n", f);
    fclose(f);
    char env[300];
    snprintf(env, sizeof env, "ANYEVENT_PLUGIN_PATH=%s", dir);
    const char *vars[] = {env, NULL};
    struct output o;
    probe("garbage", vars, &o);
    expect_error(&o, path);
    expect_error(&o, "invalid ELF header"); /* dlopen's own message */
    unlink(path);
    rmdir(dir);
}

static const char *const test_plugins[] = {"ANYEVENT_PLUGIN_PATH=" TEST_PLUGIN_DIR, NULL};

static void test_wrong_abi(void **state)
{
    (void)state;
    struct output o;
    probe("wrongabi", test_plugins, &o);
    expect_error(&o, "ABI version 999, this anyevent speaks 1 to");
}

static void test_bad_fd_data_align(void **state)
{
    (void)state;
    struct output o;
    probe("badalign", test_plugins, &o);
    expect_error(&o, "fd_data_align 24 is not a power of two up to");
}

static void test_missing_entry(void **state)
{
    (void)state;
    struct output o;
    probe("noentry", test_plugins, &o);
    expect_error(&o, "exports no anyevent_backend_entry()");
}

static void test_entry_refuses(void **state)
{
    (void)state;
    struct output o;
    probe("refuses", test_plugins, &o);
    expect_error(&o, "this machine has no frobnicator");
}

static void test_env_backend(void **state)
{
    (void)state;
    struct output o;
    const char *select_env[] = {"ANYEVENT_BACKEND=select", NULL};
    probe("-", select_env, &o);
    assert_non_null(strstr(o.out, "ok select\n"));
    /* A forced name that cannot load is an error, not a fallback. */
    const char *broken_env[] = {"ANYEVENT_BACKEND=wrongabi", "ANYEVENT_PLUGIN_PATH=" TEST_PLUGIN_DIR, NULL};
    probe("-", broken_env, &o);
    expect_error(&o, "named by ANYEVENT_BACKEND");
    expect_error(&o, "ABI version 999");
}

static void test_auto_skips_broken_plugin(void **state)
{
    (void)state;
    /* A loadable "libev" whose loops cannot start comes first on the path. */
    const char *env[] = {"ANYEVENT_PLUGIN_PATH=" TEST_PLUGIN_DIR "/init_fails", "ANYEVENT_DEBUG=1", NULL};
    struct output o;
    probe("-", env, &o);
    assert_true(strncmp(o.out, "ok ", 3) == 0);
    assert_null(strstr(o.out, "ok libev\n"));
    if (!strstr(o.err, "anyevent: backend libev skipped: ") || !strstr(o.err, "cannot start on purpose"))
        fail_msg("no skip message on stderr: %s", o.err);
    assert_non_null(strstr(o.err, "(first that works in the order libev,libuv,libevent,poll,select)"));
}

static void test_plugin_path_first(void **state)
{
    (void)state;
    /* Folders of ANYEVENT_PLUGIN_PATH come first, in their order; missing
     * folders are passed over. */
    const char *env[] = {"ANYEVENT_PLUGIN_PATH=/nonexistent:" TEST_PLUGIN_DIR "/init_fails", NULL};
    struct output o;
    probe("libev", env, &o);
    expect_error(&o, "could not start: init_fails: cannot start on purpose");
}

static void test_backends_listed(void **state)
{
    (void)state;
    const ae_backend_info *list;
    int n = ae_backends(&list);
    assert_true(n >= 5);
    int seen = 0;
    for (int i = 0; i < n; i++) {
        assert_non_null(list[i].name);
        assert_non_null(list[i].detail);
        if (strcmp(list[i].name, "poll") == 0 || strcmp(list[i].name, "select") == 0) {
            assert_int_equal(list[i].available, 1);
            assert_string_equal(list[i].detail, "built in");
            seen++;
        } else if (list[i].available) {
            assert_non_null(strstr(list[i].detail, "anyevent-")); /* the plugin's path */
        } else {
            assert_true(strlen(list[i].detail) > 0); /* why not */
        }
    }
    assert_int_equal(seen, 2);
    assert_non_null(strstr(ae_backend_names(), "poll,select"));
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--probe") == 0)
        return probe_main(argv[2]);
    if (!realpath(argv[0], self_path))
        snprintf(self_path, sizeof self_path, "%s", argv[0]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_missing_plugin),
        cmocka_unit_test(test_bad_name),
        cmocka_unit_test(test_plugin_fails_to_dlopen),
        cmocka_unit_test(test_wrong_abi),
        cmocka_unit_test(test_bad_fd_data_align),
        cmocka_unit_test(test_missing_entry),
        cmocka_unit_test(test_entry_refuses),
        cmocka_unit_test(test_env_backend),
        cmocka_unit_test(test_auto_skips_broken_plugin),
        cmocka_unit_test(test_plugin_path_first),
        cmocka_unit_test(test_backends_listed),
    };
    return cmocka_run_group_tests_name("loader", tests, NULL, NULL);
}
