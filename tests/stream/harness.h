/* The fixture of the stream tests (stream.c, socket.c, cmd.c): a loop per
 * test (adopted from a host loop with AE_STREAM_TEST_HOST), a socketpair,
 * and callbacks that record what they saw. Callbacks record failures instead
 * of asserting, so that a failure never jumps out of a running loop; every
 * call into the library is made through CALL(), and a callback that runs
 * while one is under way is a failure ("no callback inside a call"). */
#ifndef AE_TESTS_STREAM_HARNESS_H
#define AE_TESTS_STREAM_HARNESS_H

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "anyevent/stream.h"
#ifdef AE_STREAM_TEST_HOST
#include "host.h"
#endif

#define HARNESS_FN __attribute__((unused)) static

static const char *backend;

/* ---- fixture -------------------------------------------------------------- */

#define MAX_EVENTS 64
#define MAX_DATA 64

struct fx {
    ae_loop *loop;
    void *native;
    int fd[2]; /* fd[0]: the stream's, fd[1]: the test's end */
    ae_stream *s;
    ae_watcher *tick; /* keeps every iteration short */
    int in_call; /* a library call is under way */
    int failures;
    char first_failure[512];
    /* what the callbacks saw */
    int events[MAX_EVENTS], errs[MAX_EVENTS], nevents;
    double event_time[MAX_EVENTS], put_then[MAX_EVENTS], last_put;
    char data[MAX_DATA][256];
    size_t data_len[MAX_DATA];
    int ndata;
    int done_calls;
    int free_in; /* free the stream from the callback of this event bit (or -1: a data callback) */
};

static struct fx *F;

HARNESS_FN void failure(const char *fmt, ...)
{
    if (F->failures++)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(F->first_failure, sizeof F->first_failure, fmt, ap);
    va_end(ap);
}

#define CALL(expr) (F->in_call++, __extension__({ __typeof__(expr) r_ = (expr); F->in_call--; r_; }))
#define CALLV(expr)                                                                                             \
    do {                                                                                                       \
        F->in_call++;                                                                                          \
        expr;                                                                                                  \
        F->in_call--;                                                                                          \
    } while (0)

HARNESS_FN void in_callback(const char *what)
{
    if (F->in_call)
        failure("%s ran inside a library call", what);
}

HARNESS_FN void assert_no_failure(void)
{
    if (F->failures)
        fail_msg("%d failure(s), the first: %s", F->failures, F->first_failure);
}

/* Run n iterations that do not wait for long (a 10 ms tick keeps each short). */
HARNESS_FN void on_tick(ae_watcher *w, void *arg)
{
    (void)w;
    (void)arg;
}

HARNESS_FN int setup(void **state)
{
    F = calloc(1, sizeof *F);
    assert_non_null(F);
#ifdef AE_STREAM_TEST_HOST
    F->native = host_loop_new();
    assert_non_null(F->native);
    F->loop = ae_loop_adopt(backend, F->native);
#else
    F->loop = ae_loop_new(backend);
#endif
    if (!F->loop)
        fail_msg("loop on %s: %s", backend, ae_last_error());
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, F->fd), 0);
    F->free_in = 0;
    F->tick = ae_timer(F->loop, 0.01, 0.01, on_tick, NULL);
    assert_non_null(F->tick);
    alarm(30); /* a hang ends the process, and the test fails */
    *state = F;
    return 0;
}

HARNESS_FN int teardown(void **state)
{
    (void)state;
    alarm(0);
    if (F->s)
        ae_stream_free(F->s);
    ae_watcher_free(F->tick);
    ae_loop_free(F->loop);
#ifdef AE_STREAM_TEST_HOST
    host_loop_free(F->native);
#endif
    if (F->fd[0] >= 0)
        close(F->fd[0]);
    if (F->fd[1] >= 0)
        close(F->fd[1]);
    free(F);
    F = NULL;
    return 0;
}

HARNESS_FN void run_once(void)
{
#ifdef AE_STREAM_TEST_HOST
    host_run_once(F->native);
#else
    if (ae_run_once(F->loop, 0) < 0)
        fail_msg("ae_run_once: %s", ae_last_error());
#endif
}

HARNESS_FN void on_limit(ae_watcher *w, void *arg)
{
    (void)w;
    *(int *)arg = 1;
}

HARNESS_FN void run_for(double seconds)
{
    int expired = 0;
    ae_watcher *limit = ae_timer(F->loop, seconds, 0, on_limit, &expired);
    while (!expired)
        run_once();
    ae_watcher_free(limit);
}

/* Run the loop until cond holds; 5 s in vain is a failure. */
#define WAIT(cond)                                                                                             \
    do {                                                                                                       \
        double until_ = ae_time() + 5;                                                                         \
        while (!(cond)) {                                                                                      \
            if (ae_time() > until_)                                                                            \
                fail_msg("waited 5 s in vain for %s; failures: %d %s", #cond, F->failures, F->first_failure); \
            run_once();                                                                                        \
        }                                                                                                      \
    } while (0)

HARNESS_FN int count_event(int what)
{
    int n = 0;
    for (int i = 0; i < F->nevents; i++)
        n += F->events[i] == what;
    return n;
}

HARNESS_FN void on_event(ae_stream *s, int what, int err, void *arg)
{
    (void)arg;
    in_callback("an event callback");
    if (s != F->s)
        failure("event for another stream");
    if (what & (what - 1))
        failure("event %#x carries more than one bit", what);
    if (F->nevents < MAX_EVENTS) {
        F->events[F->nevents] = what;
        F->event_time[F->nevents] = ae_time();
        F->put_then[F->nevents] = F->last_put;
        F->errs[F->nevents++] = err;
    }
    if (F->free_in == what) {
        ae_stream_free(s);
        F->s = NULL;
    }
}

HARNESS_FN void on_data(ae_stream *s, const char *data, size_t len, void *arg)
{
    (void)arg;
    in_callback("a data callback");
    if (s != F->s)
        failure("data for another stream");
    if (F->ndata < MAX_DATA) {
        size_t n = len < 255 ? len : 255;
        memcpy(F->data[F->ndata], data, n);
        F->data[F->ndata][n] = 0;
        F->data_len[F->ndata++] = len;
    }
    if (F->free_in == -1) {
        ae_stream_free(s);
        F->s = NULL;
    }
}

HARNESS_FN void make_stream(const ae_stream_opts *o)
{
    F->s = CALL(ae_stream_new(F->loop, F->fd[0], o, on_event, NULL));
    if (!F->s)
        fail_msg("ae_stream_new: %s", ae_last_error());
}

HARNESS_FN void peer_write(const void *p, size_t n)
{
    assert_int_equal(write(F->fd[1], p, n), (ssize_t)n);
}

HARNESS_FN void peer_puts(const char *p) { peer_write(p, strlen(p)); }

HARNESS_FN size_t peer_pending(int fd)
{
    int n = 0;
    assert_int_equal(ioctl(fd, FIONREAD, &n), 0);
    return (size_t)n;
}

/* Read from the peer end until n bytes came or nothing more arrives. */
HARNESS_FN size_t peer_read(char *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = recv(F->fd[1], buf + got, n - got, MSG_DONTWAIT);
        if (r > 0) {
            got += (size_t)r;
            continue;
        }
        if (r == 0)
            break;
        if (errno != EAGAIN)
            break;
        run_for(0.01);
        if (peer_pending(F->fd[1]) == 0 && ae_stream_queued(F->s) == 0)
            break;
    }
    return got;
}

HARNESS_FN int data_count(void) { return F->ndata; }

/* main(): the backend from argv (or the host's), then the tests. */
HARNESS_FN int harness_run(int argc, char **argv, const struct CMUnitTest *tests, size_t n, const char *suite)
{
#ifdef AE_STREAM_TEST_HOST
    (void)argc;
    (void)argv;
    backend = host_backend();
    const char *adopted = "-adopted";
#else
    if (argc != 2) {
        fprintf(stderr, "usage: %s BACKEND\n", argv[0]);
        return 2;
    }
    backend = argv[1];
    const char *adopted = "";
#endif
    signal(SIGPIPE, SIG_IGN);
    char group[64];
    snprintf(group, sizeof group, "%s-%s%s", suite, backend, adopted);
    return _cmocka_run_group_tests(group, tests, n, NULL, NULL);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

#endif
