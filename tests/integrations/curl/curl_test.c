/*
 * The libcurl multi integration against a real nginx on loopback, which this
 * program starts (in a fresh temporary folder) and always stops.
 *
 * Built twice over: `integration-curl BACKEND` runs every case on a loop of
 * its own (ae_loop_new(BACKEND)); with CURL_TEST_HOST defined it is linked
 * with tests/adopt/host_<lib>.c and runs every case inside the host program's
 * own native loop, adopted with ae_loop_adopt(). Exits 77 (skipped) only when
 * nginx is not installed.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "anyevent-curl.h"
#include "nginx_server.h"
#include "../quiet.h"
#ifdef CURL_TEST_HOST
#include "host.h"
#endif

#define NFILES 200
#define MAX_CONNECTIONS 8
#define BIG (1024 * 1024)

static struct nginx_server server;
static size_t file_size[NFILES];
static const char *backend_name; /* the backend on its own loop */

/* ---- the loop: our own, or the host's adopted one ---------------------- */

struct harness {
    ae_loop *loop;
    void *native; /* the host's loop, when adopted */
};

static void harness_open(struct harness *h)
{
#ifdef CURL_TEST_HOST
    h->native = host_loop_new();
    assert_non_null(h->native);
    h->loop = ae_loop_adopt(host_backend(), h->native);
    if (!h->loop)
        fail_msg("ae_loop_adopt(%s): %s", host_backend(), ae_last_error());
#else
    h->native = NULL;
    h->loop = ae_loop_new(backend_name);
    if (!h->loop)
        fail_msg("ae_loop_new(%s): %s", backend_name, ae_last_error());
#endif
}

/* Run until nothing is left to do: it must return by itself. */
static void harness_run(struct harness *h)
{
#ifdef CURL_TEST_HOST
    host_run(h->native);
#else
    assert_int_equal(ae_run(h->loop), 0);
#endif
}

static void harness_close(struct harness *h)
{
    ae_loop_free(h->loop);
#ifdef CURL_TEST_HOST
    host_loop_free(h->native);
#endif
}

/* ---- transfers ---------------------------------------------------------- */

struct transfer {
    CURL *easy;
    unsigned file;       /* which "/f<file>" (when fetching one) */
    size_t received;     /* body bytes so far */
    long first_mismatch; /* offset of the first wrong byte, or -1 */
    int pause_mid_body;  /* pause the transfer after its first bytes */
    int done;            /* times the done callback reported it */
    CURLcode result;
    long status; /* HTTP status, 0 if none */
    long connects;
    char url[128];
};

struct run {
    ae_curl *ac;
    CURLM *multi;
    int done;
    int detach_after; /* detach from the done callback after this many; 0: never */
    int chain_left;   /* re-add the finished handle this many more times */
};

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    struct transfer *t = arg;
    size_t len = size * n;
    if (t->pause_mid_body && t->received > 0)
        return CURL_WRITEFUNC_PAUSE; /* libcurl keeps this chunk for later */
    for (size_t i = 0; i < len; i++) {
        if (t->first_mismatch < 0 &&
            (unsigned char)data[i] != nginx_body_byte(t->file, t->received + i))
            t->first_mismatch = (long)(t->received + i);
    }
    t->received += len;
    return len;
}

static void transfer_url(struct transfer *t, const char *url)
{
    snprintf(t->url, sizeof t->url, "%s", url);
    t->received = 0;
    t->first_mismatch = -1;
    if (!t->easy)
        t->easy = curl_easy_init();
    assert_non_null(t->easy);
    assert_int_equal(curl_easy_setopt(t->easy, CURLOPT_URL, t->url), CURLE_OK);
    assert_int_equal(curl_easy_setopt(t->easy, CURLOPT_WRITEFUNCTION, on_body), CURLE_OK);
    assert_int_equal(curl_easy_setopt(t->easy, CURLOPT_WRITEDATA, t), CURLE_OK);
    assert_int_equal(curl_easy_setopt(t->easy, CURLOPT_PRIVATE, t), CURLE_OK);
    assert_int_equal(curl_easy_setopt(t->easy, CURLOPT_NOSIGNAL, 1L), CURLE_OK);
}

static void transfer_file(struct transfer *t, unsigned file)
{
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/f%u", server.port, file);
    t->file = file;
    transfer_url(t, url);
}

static void transfer_check_body(const struct transfer *t)
{
    if (t->result != CURLE_OK)
        fail_msg("%s: %s", t->url, curl_easy_strerror(t->result));
    assert_int_equal(t->done, 1);
    assert_int_equal(t->status, 200);
    if (t->first_mismatch >= 0)
        fail_msg("%s: byte %ld differs", t->url, t->first_mismatch);
    if (t->received != file_size[t->file])
        fail_msg("%s: %zu bytes, expected %zu", t->url, t->received, file_size[t->file]);
}

static void on_done(ae_curl *ac, CURL *easy, CURLcode result, void *arg)
{
    struct run *r = arg;
    char *private_data = NULL;
    assert_int_equal(curl_easy_getinfo(easy, CURLINFO_PRIVATE, &private_data), CURLE_OK);
    struct transfer *t = (struct transfer *)private_data;
    t->done++;
    t->result = result;
    assert_int_equal(curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &t->status), CURLE_OK);
    long connects = 0;
    assert_int_equal(curl_easy_getinfo(easy, CURLINFO_NUM_CONNECTS, &connects), CURLE_OK);
    t->connects += connects;
    r->done++;
    if (r->chain_left > 0) {
        /* The handle is ours again: fetch the next file with it. */
        r->chain_left--;
        transfer_check_body(t);
        t->done = 0;
        transfer_file(t, (t->file + 1) % NFILES);
        assert_int_equal(curl_multi_add_handle(r->multi, easy), CURLM_OK);
    }
    if (r->detach_after && r->done == r->detach_after) {
        ae_curl_detach(ac);
        r->ac = NULL;
    }
}

static CURLM *multi_new(void)
{
    CURLM *multi = curl_multi_init();
    assert_non_null(multi);
    assert_int_equal(curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)MAX_CONNECTIONS),
                     CURLM_OK);
    return multi;
}

static void attach(struct run *r, struct harness *h)
{
    r->multi = multi_new();
    r->ac = ae_curl_attach(h->loop, r->multi, on_done, r);
    if (!r->ac)
        fail_msg("ae_curl_attach: %s (%s)", strerror(errno), ae_last_error());
}

/* Remove what is still in the multi, free every handle, then the multi. */
static void transfers_free(struct run *r, struct transfer *ts, int n)
{
    for (int i = 0; i < n; i++) {
        if (!ts[i].easy)
            continue;
        if (!ts[i].done)
            assert_int_equal(curl_multi_remove_handle(r->multi, ts[i].easy), CURLM_OK);
        curl_easy_cleanup(ts[i].easy);
        ts[i].easy = NULL;
    }
    assert_int_equal(curl_multi_cleanup(r->multi), CURLM_OK);
}


/* ---- cases -------------------------------------------------------------- */

static int setup(void **state)
{
    (void)state;
    alarm(120); /* a hang ends the process (nginx dies with it), and the test fails */
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    alarm(0);
    return 0;
}

static void test_attach_errors(void **state)
{
    (void)state;
    struct harness h;
    harness_open(&h);
    CURLM *multi = curl_multi_init();
    errno = 0;
    assert_null(ae_curl_attach(NULL, multi, on_done, NULL));
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_null(ae_curl_attach(h.loop, NULL, on_done, NULL));
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_null(ae_curl_attach(h.loop, multi, NULL, NULL));
    assert_int_equal(errno, EINVAL);
    assert_null(ae_curl_error(NULL));
    ae_curl_detach(NULL);
    /* Attached with nothing to do, then detached: no watcher is left. */
    ae_curl *ac = ae_curl_attach(h.loop, multi, on_done, NULL);
    assert_non_null(ac);
    assert_null(ae_curl_error(ac));
    ae_curl_detach(ac);
    harness_run(&h);
    assert_int_equal(curl_multi_cleanup(multi), CURLM_OK);
    harness_close(&h);
}

/* Every file at once over at most MAX_CONNECTIONS kept-alive connections. */
static void test_fetch_all_concurrently(void **state)
{
    (void)state;
    struct harness h;
    harness_open(&h);
    struct run r = {0};
    attach(&r, &h);
    static struct transfer ts[NFILES];
    memset(ts, 0, sizeof ts);
    for (unsigned i = 0; i < NFILES; i++) {
        transfer_file(&ts[i], i);
        assert_int_equal(curl_multi_add_handle(r.multi, ts[i].easy), CURLM_OK);
    }
    harness_run(&h);
    assert_int_equal(r.done, NFILES);
    long connects = 0;
    for (unsigned i = 0; i < NFILES; i++) {
        transfer_check_body(&ts[i]);
        connects += ts[i].connects;
    }
    /* Keep-alive: the connections were reused. */
    assert_true(connects >= 1);
    assert_true(connects <= MAX_CONNECTIONS);
    assert_null(ae_curl_error(r.ac));
    ae_curl_detach(r.ac);
    transfers_free(&r, ts, NFILES);
    harness_close(&h);
}

/* One handle, re-added from the done callback for the next file: one
 * connection for all of them. */
static void test_fetch_chain_from_done_callback(void **state)
{
    (void)state;
    struct harness h;
    harness_open(&h);
    struct run r = {.chain_left = 29};
    attach(&r, &h);
    struct transfer t = {0};
    transfer_file(&t, 0);
    assert_int_equal(curl_multi_add_handle(r.multi, t.easy), CURLM_OK);
    harness_run(&h);
    assert_int_equal(r.done, 30);
    assert_int_equal(t.file, 29);
    transfer_check_body(&t);
    assert_int_equal(t.connects, 1);
    assert_null(ae_curl_error(r.ac));
    ae_curl_detach(r.ac);
    transfers_free(&r, &t, 1);
    harness_close(&h);
}

/* Easy handles added before attaching start in the loop's first iteration. */
static void test_handles_added_before_attach(void **state)
{
    (void)state;
    struct harness h;
    harness_open(&h);
    struct run r = {0};
    r.multi = multi_new();
    enum { COUNT = 10 };
    struct transfer ts[COUNT];
    memset(ts, 0, sizeof ts);
    for (unsigned i = 0; i < COUNT; i++) {
        transfer_file(&ts[i], i);
        assert_int_equal(curl_multi_add_handle(r.multi, ts[i].easy), CURLM_OK);
    }
    r.ac = ae_curl_attach(h.loop, r.multi, on_done, &r);
    assert_non_null(r.ac);
    harness_run(&h);
    assert_int_equal(r.done, COUNT);
    for (unsigned i = 0; i < COUNT; i++)
        transfer_check_body(&ts[i]);
    assert_null(ae_curl_error(r.ac));
    ae_curl_detach(r.ac);
    transfers_free(&r, ts, COUNT);
    harness_close(&h);
}

/* Once the last transfer is done, the integration holds nothing: libcurl's
 * "no timeout" disarms the timer (rather than letting it fire once more) and
 * every socket watcher is gone. Stepping the loop one iteration at a time,
 * the iteration that finished the last transfer must already report that no
 * active watcher is left, and a further one must run no callback. */
static void test_idle_once_the_last_transfer_is_done(void **state)
{
    (void)state;
    struct harness h;
    harness_open(&h);
    struct run r = {0};
    attach(&r, &h);
    enum { COUNT = 12 };
    struct transfer ts[COUNT];
    memset(ts, 0, sizeof ts);
    for (unsigned i = 0; i < COUNT; i++) {
        transfer_file(&ts[i], i);
        /* A deadline far ahead stays armed in libcurl while transfers run. */
        assert_int_equal(curl_easy_setopt(ts[i].easy, CURLOPT_TIMEOUT_MS, 60000L), CURLE_OK);
        assert_int_equal(curl_multi_add_handle(r.multi, ts[i].easy), CURLM_OK);
    }
    int left = 1;
    while (r.done < COUNT) {
        assert_int_equal(left, 1); /* never idle while transfers remain */
        left = ae_run_once(h.loop, 0);
        assert_true(left >= 0);
    }
    assert_int_equal(left, 0);
    assert_true(next_iteration_runs_nothing(h.loop));
    assert_int_equal(r.done, COUNT);
    for (unsigned i = 0; i < COUNT; i++)
        transfer_check_body(&ts[i]);
    assert_null(ae_curl_error(r.ac));
    ae_curl_detach(r.ac);
    transfers_free(&r, ts, COUNT);
    harness_close(&h);
}

/* A TCP listener that never accepts: connections complete in the kernel's
 * backlog, and requests are never answered. */
static int silent_listener(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(fd, 8), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    *port = ntohs(sa.sin_port);
    return fd;
}

/* Failures come through the done callback like successes. */
static void test_errors_reported(void **state)
{
    (void)state;
    struct harness h;
    harness_open(&h);
    struct run r = {0};
    attach(&r, &h);
    enum { GOOD, NOT_FOUND, REFUSED, TIMED_OUT, COUNT };
    struct transfer ts[COUNT];
    memset(ts, 0, sizeof ts);
    char url[128];

    transfer_file(&ts[GOOD], 3);

    snprintf(url, sizeof url, "http://127.0.0.1:%d/no-such-file", server.port);
    transfer_url(&ts[NOT_FOUND], url);
    assert_int_equal(curl_easy_setopt(ts[NOT_FOUND].easy, CURLOPT_FAILONERROR, 1L), CURLE_OK);

    int closed_port = nginx_free_port();
    assert_true(closed_port > 0);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", closed_port);
    transfer_url(&ts[REFUSED], url);

    int silent_port;
    int silent = silent_listener(&silent_port);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", silent_port);
    transfer_url(&ts[TIMED_OUT], url);
    assert_int_equal(curl_easy_setopt(ts[TIMED_OUT].easy, CURLOPT_TIMEOUT_MS, 300L), CURLE_OK);

    for (int i = 0; i < COUNT; i++)
        assert_int_equal(curl_multi_add_handle(r.multi, ts[i].easy), CURLM_OK);
    double t0 = ae_time();
    harness_run(&h);
    double took = ae_time() - t0;
    close(silent);

    assert_int_equal(r.done, COUNT);
    transfer_check_body(&ts[GOOD]);
    assert_int_equal(ts[NOT_FOUND].done, 1);
    assert_int_equal(ts[NOT_FOUND].result, CURLE_HTTP_RETURNED_ERROR);
    assert_int_equal(ts[NOT_FOUND].status, 404);
    assert_int_equal(ts[REFUSED].done, 1);
    assert_int_equal(ts[REFUSED].result, CURLE_COULDNT_CONNECT);
    assert_int_equal(ts[TIMED_OUT].done, 1);
    assert_int_equal(ts[TIMED_OUT].result, CURLE_OPERATION_TIMEDOUT);
    /* The timeout came from the integration's timer, on time. */
    assert_true(took >= 0.3 - 0.01);
    assert_true(took < 5.0);
    assert_null(ae_curl_error(r.ac));
    ae_curl_detach(r.ac);
    transfers_free(&r, ts, COUNT);
    harness_close(&h);
}

/* Detach from the done callback with most transfers still in flight: no
 * further callback, the loop returns, and everything is freed. */
static void test_detach_from_done_callback(void **state)
{
    (void)state;
    struct harness h;
    harness_open(&h);
    struct run r = {.detach_after = 10};
    attach(&r, &h);
    static struct transfer ts[NFILES];
    memset(ts, 0, sizeof ts);
    for (unsigned i = 0; i < NFILES; i++) {
        transfer_file(&ts[i], i);
        assert_int_equal(curl_multi_add_handle(r.multi, ts[i].easy), CURLM_OK);
    }
    harness_run(&h);
    assert_int_equal(r.done, 10);
    assert_null(r.ac);
    transfers_free(&r, ts, NFILES);
    harness_close(&h);
}

struct detach_watch {
    struct run *run;
    struct transfer *slow;
    int ticks;
};

/* Detach, from a timer of the same loop, once the slow transfer is mid-body. */
static void on_detach_tick(ae_watcher *w, void *arg)
{
    struct detach_watch *d = arg;
    d->ticks++;
    if (d->slow->received == 0 && !d->slow->done)
        return; /* not started yet (if it finished, the test's checks say so) */
    ae_curl_detach(d->run->ac);
    d->run->ac = NULL;
    ae_watcher_free(w);
}

/* Detach from outside any curl callback while transfers are in flight, one
 * of them (paused by its write callback) certainly mid-body. */
static void test_detach_mid_transfer(void **state)
{
    (void)state;
    struct harness h;
    harness_open(&h);
    struct run r = {0};
    attach(&r, &h);
    enum { COUNT = 20 };
    struct transfer ts[COUNT];
    memset(ts, 0, sizeof ts);
    for (unsigned i = 0; i < COUNT; i++)
        transfer_file(&ts[i], i);
    assert_int_equal(file_size[7], BIG);
    ts[7].pause_mid_body = 1;
    for (unsigned i = 0; i < COUNT; i++)
        assert_int_equal(curl_multi_add_handle(r.multi, ts[i].easy), CURLM_OK);
    struct detach_watch d = {.run = &r, .slow = &ts[7]};
    assert_non_null(ae_timer(h.loop, 0.005, 0.005, on_detach_tick, &d));
    harness_run(&h);
    assert_null(r.ac);
    assert_true(ts[7].received > 0);
    assert_int_equal(ts[7].done, 0);
    transfers_free(&r, ts, COUNT);
    harness_close(&h);
}

/* Detach before the loop ever ran: the transfers never start. */
static void test_detach_before_running(void **state)
{
    (void)state;
    struct harness h;
    harness_open(&h);
    struct run r = {0};
    attach(&r, &h);
    enum { COUNT = 5 };
    struct transfer ts[COUNT];
    memset(ts, 0, sizeof ts);
    for (unsigned i = 0; i < COUNT; i++) {
        transfer_file(&ts[i], i);
        assert_int_equal(curl_multi_add_handle(r.multi, ts[i].easy), CURLM_OK);
    }
    ae_curl_detach(r.ac);
    harness_run(&h);
    assert_int_equal(r.done, 0);
    transfers_free(&r, ts, COUNT);
    harness_close(&h);
}

/* ---- the server for the whole group ------------------------------------ */

static int server_start(void **state)
{
    (void)state;
    for (unsigned i = 0; i < NFILES; i++) {
        if (i % 50 == 7)
            file_size[i] = BIG; /* many readiness events per body */
        else if (i % 10 == 3)
            file_size[i] = 64 * 1024 + i;
        else
            file_size[i] = 1 + (i * 131) % 4000;
    }
    file_size[11] = 0; /* an empty body */
    char err[2048];
    if (nginx_start(&server, NGINX_PATH, file_size, NFILES, 1, err, sizeof err) != 0) {
        fprintf(stderr, "cannot start nginx: %s\n", err);
        return -1;
    }
    return 0;
}

static int server_stop(void **state)
{
    (void)state;
    nginx_stop(&server);
    return 0;
}

int main(int argc, char **argv)
{
#ifdef CURL_TEST_HOST
    (void)argc;
    (void)argv;
    backend_name = host_backend();
#else
    if (argc < 2) {
        fprintf(stderr, "usage: %s BACKEND\n", argv[0]);
        return 2;
    }
    backend_name = argv[1];
#endif
    if (NGINX_PATH[0] == '\0' || access(NGINX_PATH, X_OK) != 0) {
        printf("SKIP: nginx is not installed (looked for it when configuring: '%s')\n", NGINX_PATH);
        return 77;
    }
    signal(SIGPIPE, SIG_IGN);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "curl_global_init failed\n");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_attach_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fetch_all_concurrently, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fetch_chain_from_done_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_handles_added_before_attach, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_once_the_last_transfer_is_done, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(test_detach_from_done_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_detach_mid_transfer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_detach_before_running, setup, teardown),
    };
    char group[64];
    snprintf(group, sizeof group, "curl on %s%s", backend_name,
#ifdef CURL_TEST_HOST
             " (adopted host loop)"
#else
             ""
#endif
    );
    int failed = _cmocka_run_group_tests(group, tests, sizeof tests / sizeof tests[0], server_start,
                                         server_stop);
    curl_global_cleanup();
    return failed;
}
