/*
 * A host program that uses libev (HOST_LIBEV), libuv (HOST_LIBUV) or GLib
 * (HOST_GLIB) itself and a library built on anyevent (ticker.c), and never
 * calls anyevent: the library's watchers must run inside the host's own
 * ev_run / uv_run / g_main_loop_run on GLib's default context.
 *   host run                 the ticker works inside the host's default loop
 *   host expect DEF NEW      ae_loop_default() and ae_loop_new(NULL) backends
 *   host debug               ANYEVENT_DEBUG=1 says which rule chose
 * Exit status 0 on success; a message on stderr otherwise.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(HOST_LIBEV)
#include <ev.h>
#define HOST_NAME "libev"
static void *host_default(void) { return ev_default_loop(0); }
static void host_run(const int *result) { (void)result; ev_run(ev_default_loop(0), 0); }
#elif defined(HOST_GLIB)
#include <glib.h>
#define HOST_NAME "glib"
static void *host_default(void) { return g_main_context_default(); }
/* A GLib program runs its main loop until it decides to quit: this one
 * once the library has produced its result. */
struct host_wait {
    GMainLoop *main;
    const int *result;
};
static gboolean host_check(gpointer data)
{
    struct host_wait *w = data;
    if (!*w->result)
        return G_SOURCE_CONTINUE;
    g_main_loop_quit(w->main);
    return G_SOURCE_REMOVE;
}
static void host_run(const int *result)
{
    struct host_wait w = {g_main_loop_new(NULL, FALSE), result};
    g_timeout_add(1, host_check, &w);
    g_main_loop_run(w.main);
    g_main_loop_unref(w.main);
}
#else
#include <uv.h>
#define HOST_NAME "libuv"
static void *host_default(void) { return uv_default_loop(); }
static void host_run(const int *result) { (void)result; uv_run(uv_default_loop(), UV_RUN_DEFAULT); }
#endif

#include "ticker.h"

static int fail(const char *what, const char *got)
{
    fprintf(stderr, "hostdetect (%s): %s%s%s\n", HOST_NAME, what, got ? ": " : "", got ? got : "");
    return 1;
}

static int run(void)
{
    int p[2], result = 0;
    if (pipe(p) != 0)
        return fail("pipe", NULL);
    if (ticker_start(p[0], &result) != 0)
        return fail("ticker_start failed", NULL);
    if (strcmp(ticker_default_backend(), HOST_NAME) != 0)
        return fail("default loop backend", ticker_default_backend());
    if (ticker_default_native() != host_default())
        return fail("the default loop is not the host's own default loop", NULL);
    if (write(p[1], "A", 1) != 1)
        return fail("write", NULL);
    host_run(&result); /* returns once the ticker's watchers are gone (GLib: once it has a result) */
    if (result != 'B')
        return fail("the ticker did not run inside the host's loop", NULL);
    return 0;
}

static int debug(void)
{
    char path[] = "/tmp/ae-hostdetect-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        return fail("mkstemp", NULL);
    unlink(path);
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    setenv("ANYEVENT_DEBUG", "1", 1);
    ticker_default_backend();
    ticker_new_loop_backend();
    fflush(stderr);
    dup2(saved, 2);
    char buf[4096];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    close(fd);
    buf[n > 0 ? n : 0] = '\0';
    if (!strstr(buf, "default loop: " HOST_NAME "'s own default loop, adopted (the program uses " HOST_NAME ")"))
        return fail("debug output lacks the default-loop rule", buf);
    if (!strstr(buf, "backend " HOST_NAME " (the program uses " HOST_NAME ": found in its global symbols)"))
        return fail("debug output lacks the new-loop rule", buf);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "run") == 0)
        return run();
    if (argc == 2 && strcmp(argv[1], "debug") == 0)
        return debug();
    if (argc == 4 && strcmp(argv[1], "expect") == 0) {
        if (strcmp(ticker_default_backend(), argv[2]) != 0)
            return fail("default loop backend", ticker_default_backend());
        if (strcmp(ticker_new_loop_backend(), argv[3]) != 0)
            return fail("new loop backend", ticker_new_loop_backend());
        return 0;
    }
    fprintf(stderr, "usage: %s run | debug | expect DEFAULT NEW\n", argv[0]);
    return 2;
}
