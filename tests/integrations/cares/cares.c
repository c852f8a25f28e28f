/*
 * anyevent-cares against tools/dns-responder, started by each test on an
 * ephemeral loopback port and always stopped (teardown; and the responder
 * gets SIGTERM if this process dies).
 *
 * Usage: cares BACKEND        the test's own loop of that backend
 * Built with -DAE_CARES_TEST_HOST and a tests/adopt/host_<lib>.c, the same
 * tests run inside a host program's own native loop, adopted with
 * ae_loop_adopt(): the loop is driven by host_run() instead of ae_run().
 *
 * In both cases "the loop returns" is part of every check: once no query is
 * left, neither a socket watcher nor the timer may keep it alive.
 * The responder's path comes from $AE_TEST_DNS_RESPONDER.
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <unistd.h>

#include <cmocka.h>

#include "anyevent-cares.h"
#include <anyevent/stream.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <ares_nameser.h>
#include "responder-process.h"
#include "../quiet.h"
#ifdef AE_CARES_TEST_HOST
#include "host.h"
#endif

static const char *backend_name;
static const char *responder_binary;

struct lookup {
    int index;
    int done;       /* callbacks run: must end up 1 */
    int status, timeouts;
    uint8_t address[4];
    ae_cv *cv;      /* if set: ae_cv_end() on it when done */
    int send_cv;    /* ...or ae_cv_send() */
};

struct fixture {
    struct responder_process responder;
    void *native; /* the host's loop, when adopted */
    ae_loop *loop;
    ae_cares *cares;
    struct lookup *lookups; /* on the heap: a failed test's teardown still
                               runs their callbacks (ARES_EDESTRUCTION) */
    int count;
};

static int setup(void **state)
{
    alarm(60); /* a hang ends the process, and the test fails */
    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->responder.out = -1;
#ifdef AE_CARES_TEST_HOST
    f->native = host_loop_new();
    assert_non_null(f->native);
    f->loop = ae_loop_adopt(host_backend(), f->native);
#else
    f->loop = ae_loop_new(backend_name);
#endif
    if (!f->loop)
        fail_msg("cannot make the loop: %s", ae_last_error());
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    ae_cares_free(f->cares);
    ae_loop_free(f->loop);
#ifdef AE_CARES_TEST_HOST
    host_loop_free(f->native);
#endif
    responder_stop(&f->responder);
    free(f->lookups);
    free(f);
    alarm(0);
    return 0;
}

/* Run the loop until nothing keeps it alive, as its owner would. */
static void drive(struct fixture *f)
{
#ifdef AE_CARES_TEST_HOST
    host_run(f->native);
#else
    assert_int_equal(ae_run(f->loop), 0);
#endif
}

static void start_responder(struct fixture *f, const char *const *args)
{
    char err[256];
    if (responder_start(&f->responder, responder_binary, args, err, sizeof err) < 0)
        fail_msg("%s", err);
}

/* Stop the responder and check that it answered everything it was sent and
 * the kernel dropped nothing. */
static void stop_responder(struct fixture *f)
{
    assert_int_equal(responder_stop(&f->responder), 0);
    print_message("responder: %s\n", f->responder.stats);
    assert_int_equal(responder_stat(&f->responder, "kernel_drops"), 0);
    assert_int_equal(responder_stat(&f->responder, "send_errors"), 0);
    assert_int_equal(responder_stat(&f->responder, "malformed"), 0);
}

/* A channel that asks only the responder, over UDP, with no search domains
 * and no hosts file. */
static void make_channel(struct fixture *f, int timeout_ms, int tries)
{
    struct ares_options o;
    memset(&o, 0, sizeof o);
    o.flags = ARES_FLAG_NOSEARCH;
    o.timeout = timeout_ms;
    o.tries = tries;
    o.ndomains = 0;
    o.lookups = (char *)"b";
    o.socket_receive_buffer_size = 1 << 20;
    int mask = ARES_OPT_FLAGS | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_DOMAINS |
               ARES_OPT_LOOKUPS | ARES_OPT_SOCK_RCVBUF;
    int status = ae_cares_new(f->loop, &o, mask, &f->cares);
    if (status != ARES_SUCCESS)
        fail_msg("ae_cares_new: %s", ares_strerror(status));
    char server[64];
    snprintf(server, sizeof server, "127.0.0.1:%u", f->responder.port);
    status = ares_set_servers_ports_csv(ae_cares_channel(f->cares), server);
    if (status != ARES_SUCCESS)
        fail_msg("ares_set_servers_ports_csv: %s", ares_strerror(status));
}

static struct lookup *make_lookups(struct fixture *f, int count)
{
    f->lookups = calloc((size_t)count, sizeof *f->lookups);
    assert_non_null(f->lookups);
    f->count = count;
    for (int i = 0; i < count; i++)
        f->lookups[i].index = i;
    return f->lookups;
}

/* No assertions here: a failure must not jump out of c-ares. */
static void on_host(void *arg, int status, int timeouts, struct hostent *host)
{
    struct lookup *l = arg;
    l->done++;
    l->status = status;
    l->timeouts = timeouts;
    if (status == ARES_SUCCESS && host && host->h_addrtype == AF_INET && host->h_addr_list[0])
        memcpy(l->address, host->h_addr_list[0], 4);
    if (l->cv && l->send_cv)
        ae_cv_send(l->cv, l);
    else if (l->cv)
        ae_cv_end(l->cv);
}

static void lookup_host(struct fixture *f, struct lookup *l, const char *prefix)
{
    char name[64];
    snprintf(name, sizeof name, "%s%d.example.test", prefix, l->index);
    ae_cares_gethostbyname(f->cares, name, AF_INET, on_host, l);
}

/* The address the responder's --number-address gives name "...<i>...". */
static void assert_numbered_address(const struct lookup *l)
{
    const uint8_t want[4] = {10, (uint8_t)(l->index >> 16), (uint8_t)(l->index >> 8), (uint8_t)l->index};
    assert_memory_equal(l->address, want, 4);
}

static void assert_quiet(struct fixture *f)
{
    assert_int_equal(ae_cares_sockets(f->cares), 0);
    assert_string_equal(ae_cares_error(f->cares), "");
}


/* ---- tests ------------------------------------------------------------ */

static void test_new_checks_its_arguments(void **state)
{
    struct fixture *f = *state;
    struct ares_options o;
    memset(&o, 0, sizeof o);
    ae_cares *c = (ae_cares *)&o;
    assert_int_equal(ae_cares_new(f->loop, &o, ARES_OPT_SOCK_STATE_CB, &c), ARES_EBADFLAGS);
    assert_null(c);
    assert_int_equal(ae_cares_new(NULL, NULL, 0, &c), ARES_EBADFLAGS);
    assert_int_equal(ae_cares_new(f->loop, NULL, ARES_OPT_FLAGS, &c), ARES_EBADFLAGS);
    assert_int_equal(ae_cares_new(f->loop, NULL, 0, NULL), ARES_EBADFLAGS);
    /* A channel without queries holds nothing: the loop returns. */
    assert_int_equal(ae_cares_new(f->loop, NULL, 0, &f->cares), ARES_SUCCESS);
    assert_non_null(f->cares);
    drive(f);
    assert_quiet(f);
}

static void test_many_lookups_at_once(void **state)
{
    struct fixture *f = *state;
    const char *const args[] = {"--delay-ms", "10", "--number-address", NULL};
    start_responder(f, args);
    make_channel(f, 5000, 3);
    enum { N = 300 };
    struct lookup *l = make_lookups(f, N);
    double t0 = ae_time();
    for (int i = 0; i < N; i++)
        lookup_host(f, &l[i], "host");
    assert_true(ae_cares_sockets(f->cares) >= 1);
    drive(f);
    /* Returns once answered: the timer, armed for the 5 s timeout, does not
     * hold the loop. */
    assert_true(ae_time() - t0 < 4.0);
    for (int i = 0; i < N; i++) {
        assert_int_equal(l[i].done, 1);
        if (l[i].status != ARES_SUCCESS)
            fail_msg("lookup %d: %s", i, ares_strerror(l[i].status));
        assert_int_equal(l[i].timeouts, 0);
        assert_numbered_address(&l[i]);
    }
    assert_quiet(f);
    stop_responder(f);
    /* One query per lookup: none was lost and retried. */
    assert_int_equal(responder_stat(&f->responder, "received"), N);
    assert_int_equal(responder_stat(&f->responder, "answered"), N);
}

/* Once the last answer is in, the channel holds nothing: its timer, armed
 * for the queries' 5 s timeout, is disarmed rather than left to fire once
 * more, and c-ares closed its socket. Stepping the loop one iteration at a
 * time, the iteration that ran the last callback must already report that no
 * active watcher is left, and a further one must run no callback. */
static void test_idle_once_the_last_answer_is_in(void **state)
{
    struct fixture *f = *state;
    const char *const args[] = {"--delay-ms", "5", "--number-address", NULL};
    start_responder(f, args);
    make_channel(f, 5000, 3);
    /* A fresh channel arms nothing: its loop's next iteration runs no
     * callback. */
    assert_true(next_iteration_runs_nothing(f->loop));
    enum { N = 20 };
    struct lookup *l = make_lookups(f, N);
    for (int i = 0; i < N; i++)
        lookup_host(f, &l[i], "host");
    int answered = 0;
    int left = 1;
    while (answered < N) {
        assert_int_equal(left, 1); /* never idle while lookups remain */
        left = ae_run_once(f->loop, 0);
        assert_true(left >= 0);
        answered = 0;
        for (int i = 0; i < N; i++)
            answered += l[i].done;
    }
    assert_int_equal(left, 0);
    assert_true(next_iteration_runs_nothing(f->loop));
    for (int i = 0; i < N; i++) {
        assert_int_equal(l[i].done, 1);
        if (l[i].status != ARES_SUCCESS)
            fail_msg("lookup %d: %s", i, ares_strerror(l[i].status));
        assert_numbered_address(&l[i]);
    }
    assert_quiet(f);
    stop_responder(f);
    assert_int_equal(responder_stat(&f->responder, "answered"), N);
}

/* The domain-check pattern: all at once with begin/end on one condvar, then
 * one at a time, each waiting on its own condvar. */
static void test_condvar_fan_out_and_one_at_a_time(void **state)
{
    struct fixture *f = *state;
    const char *const args[] = {"--delay-ms", "5", "--number-address", NULL};
    start_responder(f, args);
    make_channel(f, 2000, 3);
    enum { ALL = 100, ONE_BY_ONE = 5 };
    struct lookup *l = make_lookups(f, ALL + ONE_BY_ONE);
    ae_cv *all = ae_cv_new(f->loop);
    assert_non_null(all);
    for (int i = 0; i < ALL; i++) {
        assert_int_equal(ae_cv_begin(all), 0);
        l[i].cv = all;
        lookup_host(f, &l[i], "host");
    }
    assert_int_equal(ae_cv_recv(all, NULL), 0);
    ae_cv_free(all);
    for (int i = 0; i < ALL; i++) {
        assert_int_equal(l[i].status, ARES_SUCCESS);
        assert_numbered_address(&l[i]);
    }
    for (int i = ALL; i < ALL + ONE_BY_ONE; i++) {
        l[i].cv = ae_cv_new(f->loop);
        l[i].send_cv = 1;
        assert_non_null(l[i].cv);
        lookup_host(f, &l[i], "host");
        void *value = NULL;
        assert_int_equal(ae_cv_recv(l[i].cv, &value), 0);
        assert_ptr_equal(value, &l[i]);
        ae_cv_free(l[i].cv);
        l[i].cv = NULL;
        assert_int_equal(l[i].status, ARES_SUCCESS);
        assert_numbered_address(&l[i]);
    }
    drive(f); /* nothing left: returns at once */
    assert_quiet(f);
    stop_responder(f);
    assert_int_equal(responder_stat(&f->responder, "answered"), ALL + ONE_BY_ONE);
}

/* The responder ignores each name's first query: c-ares must time out on
 * its timer, send again, and succeed, after exactly one timeout. */
static void test_retry_after_timeout(void **state)
{
    struct fixture *f = *state;
    const char *const args[] = {"--drop-attempts", "1", "--number-address", NULL};
    start_responder(f, args);
    /* Long enough that the answer to the second try is never late, also
     * under valgrind on a loaded machine. */
    make_channel(f, 250, 3);
    enum { N = 20 };
    struct lookup *l = make_lookups(f, N);
    double t0 = ae_time();
    for (int i = 0; i < N; i++)
        lookup_host(f, &l[i], "retry");
    drive(f);
    double elapsed = ae_time() - t0;
    for (int i = 0; i < N; i++) {
        assert_int_equal(l[i].done, 1);
        if (l[i].status != ARES_SUCCESS)
            fail_msg("lookup %d: %s", i, ares_strerror(l[i].status));
        assert_int_equal(l[i].timeouts, 1);
        assert_numbered_address(&l[i]);
    }
    assert_true(elapsed >= 0.25 - 0.005);
    assert_quiet(f);
    stop_responder(f);
    assert_int_equal(responder_stat(&f->responder, "dropped"), N);
    assert_int_equal(responder_stat(&f->responder, "answered"), N);
}

/* A name the responder never answers fails with ARES_ETIMEOUT after every
 * try; a name it answers, asked at the same time, succeeds; then the loop
 * returns. */
static void test_timeout_when_never_answered(void **state)
{
    struct fixture *f = *state;
    const char *const args[] = {"--silent", "silent", "--number-address", NULL};
    start_responder(f, args);
    make_channel(f, 50, 2);
    struct lookup *l = make_lookups(f, 2);
    double t0 = ae_time();
    lookup_host(f, &l[0], "silent");
    lookup_host(f, &l[1], "host");
    drive(f);
    double elapsed = ae_time() - t0;
    assert_int_equal(l[0].done, 1);
    assert_int_equal(l[0].status, ARES_ETIMEOUT);
    assert_int_equal(l[0].timeouts, 2);
    assert_int_equal(l[1].done, 1);
    assert_int_equal(l[1].status, ARES_SUCCESS);
    assert_numbered_address(&l[1]);
    /* Two tries: 50 ms, then 100 ms (c-ares doubles it per round). */
    assert_true(elapsed >= 0.15 - 0.005);
    assert_quiet(f);
    stop_responder(f);
    assert_int_equal(responder_stat(&f->responder, "silent"), 2);
}

static void test_nxdomain(void **state)
{
    struct fixture *f = *state;
    const char *const args[] = {"--nxdomain", "missing", NULL};
    start_responder(f, args);
    make_channel(f, 2000, 2);
    struct lookup *l = make_lookups(f, 1);
    lookup_host(f, &l[0], "missing");
    drive(f);
    assert_int_equal(l[0].done, 1);
    assert_int_equal(l[0].status, ARES_ENOTFOUND);
    assert_quiet(f);
    stop_responder(f);
    assert_int_equal(responder_stat(&f->responder, "nxdomain"), 1);
}

struct interrupt {
    struct fixture *f;
    int cancel; /* 1: ae_cares_cancel(), 0: ae_cares_free() */
    int sockets_before;
};

static void on_interrupt(ae_watcher *w, void *arg)
{
    struct interrupt *in = arg;
    ae_watcher_free(w);
    in->sockets_before = ae_cares_sockets(in->f->cares);
    if (in->cancel) {
        ae_cares_cancel(in->f->cares);
    } else {
        ae_cares_free(in->f->cares);
        in->f->cares = NULL;
    }
}

/* Queries the responder never answers, and a long timeout: cancelling or
 * destroying the channel runs every callback with ECANCELLED or EDESTRUCTION
 * and releases every watcher, so the loop returns at once. */
static void interrupt_pending(void **state, int cancel)
{
    struct fixture *f = *state;
    const char *const args[] = {"--silent", "silent", "--number-address", NULL};
    start_responder(f, args);
    make_channel(f, 5000, 1);
    enum { N = 10 };
    struct lookup *l = make_lookups(f, N + 1); /* and one after a cancel */
    for (int i = 0; i < N; i++)
        lookup_host(f, &l[i], "silent");
    struct interrupt in = {.f = f, .cancel = cancel};
    assert_non_null(ae_timer(f->loop, 0.02, 0, on_interrupt, &in));
    double t0 = ae_time();
    drive(f);
    assert_true(ae_time() - t0 < 2.0); /* not the 5 s timeout */
    assert_int_equal(in.sockets_before, 1);
    for (int i = 0; i < N; i++) {
        assert_int_equal(l[i].done, 1);
        assert_int_equal(l[i].status, cancel ? ARES_ECANCELLED : ARES_EDESTRUCTION);
    }
    if (cancel) {
        /* The channel still works afterwards. */
        assert_quiet(f);
        struct lookup *again = &l[N];
        lookup_host(f, again, "host");
        drive(f);
        assert_int_equal(again->done, 1);
        assert_int_equal(again->status, ARES_SUCCESS);
        assert_numbered_address(again);
        assert_quiet(f);
    }
    stop_responder(f);
    assert_int_equal(responder_stat(&f->responder, "silent"), N);
}

static void test_cancel_with_queries_pending(void **state) { interrupt_pending(state, 1); }
static void test_destroy_with_queries_pending(void **state) { interrupt_pending(state, 0); }

static void on_query(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    struct lookup *l = arg;
    (void)timeouts;
    l->done++;
    l->status = status;
    struct ares_addrttl addr[2];
    int naddr = 2;
    if (status == ARES_SUCCESS)
        l->status = ares_parse_a_reply(abuf, alen, NULL, addr, &naddr);
    if (l->status == ARES_SUCCESS && naddr == 1)
        memcpy(l->address, &addr[0].ipaddr, 4);
}

static void on_addrinfo(void *arg, int status, int timeouts, struct ares_addrinfo *ai)
{
    struct lookup *l = arg;
    (void)timeouts;
    l->done++;
    l->status = status;
    if (status == ARES_SUCCESS && ai->nodes && ai->nodes->ai_family == AF_INET)
        memcpy(l->address, &((struct sockaddr_in *)(void *)ai->nodes->ai_addr)->sin_addr, 4);
    ares_freeaddrinfo(ai);
}

static void test_query_search_and_getaddrinfo(void **state)
{
    struct fixture *f = *state;
    const char *const args[] = {"--delay-ms", "2", "--number-address", NULL};
    start_responder(f, args);
    make_channel(f, 2000, 2);
    struct lookup *l = make_lookups(f, 3);
    l[0].index = 4242;
    l[1].index = 77;
    l[2].index = 65000;
    ae_cares_query(f->cares, "query4242.example.test", ns_c_in, ns_t_a, on_query, &l[0]);
    ae_cares_search(f->cares, "search77.example.test", ns_c_in, ns_t_a, on_query, &l[1]);
    struct ares_addrinfo_hints hints = {.ai_family = AF_INET};
    ae_cares_getaddrinfo(f->cares, "addrinfo65000.example.test", NULL, &hints, on_addrinfo, &l[2]);
    drive(f);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(l[i].done, 1);
        if (l[i].status != ARES_SUCCESS)
            fail_msg("lookup %d: %s", i, ares_strerror(l[i].status));
        assert_numbered_address(&l[i]);
    }
    assert_quiet(f);
    stop_responder(f);
}

struct connected {
    int fd, err, calls;
};

static void on_connected(int fd, int err, void *arg)
{
    struct connected *r = arg;
    r->fd = fd;
    r->err = err;
    r->calls++;
}

static void never_connected(int fd, int err, void *arg)
{
    (void)fd, (void)err;
    ++*(int *)arg;
}

/* ae_tcp_connect() looks its name up through c-ares once
 * ae_cares_resolve_connects() was called: a name only the responder knows
 * (it answers 127.0.0.1 for every name; getaddrinfo() would not know it)
 * reaches a local listener; a connect cancelled while its lookup is under
 * way never calls back (its answer is dropped when it comes); after
 * ae_cares_free() connects use the getaddrinfo() thread again. */
static void test_tcp_connect_resolves_through_cares(void **state)
{
    struct fixture *f = *state;
    const char *const args[] = {"--address", "127.0.0.1", "--delay-ms", "2", NULL};
    start_responder(f, args);
    make_channel(f, 2000, 2);
    assert_int_equal(ae_cares_resolve_connects(f->cares), 0);
    assert_int_equal(ae_cares_resolve_connects(NULL), AE_EINVAL);

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(lfd, 8), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&a, &alen), 0);
    char port[16];
    snprintf(port, sizeof port, "%u", ntohs(a.sin_port));

    ae_connect_opts o = {.family = AF_INET, .timeout = 30};
    struct connected r = {.fd = -2};
    int cancelled_calls = 0;
    assert_non_null(ae_tcp_connect(f->loop, "only-the-responder-knows.example.test", port, &o, on_connected, &r));
    ae_connect *gone = ae_tcp_connect(f->loop, "cancelled.example.test", port, &o, never_connected, &cancelled_calls);
    assert_non_null(gone);
    assert_int_equal(r.calls, 0); /* never inside the call */
    ae_connect_cancel(gone);
    drive(f);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.err, 0);
    assert_true(r.fd >= 0);
    assert_int_equal(cancelled_calls, 0);
    int peer = accept(lfd, NULL, NULL);
    assert_true(peer >= 0);
    close(peer);
    close(r.fd);
    assert_quiet(f);
    stop_responder(f);

    /* Back to the getaddrinfo() thread (/etc/hosts' localhost): nothing of
     * the freed channel is used. */
    ae_cares_free(f->cares);
    f->cares = NULL;
    r = (struct connected){.fd = -2};
    assert_non_null(ae_tcp_connect(f->loop, "localhost", port, &o, on_connected, &r));
    drive(f);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.err, 0);
    assert_true(r.fd >= 0);
    close(r.fd);
    close(lfd);
}

/* Two channels resolve connects in turn: the second took the loop over, so
 * freeing the first leaves it in place; freeing the second puts the
 * getaddrinfo() thread back. ae_connect_get_resolver() tells which is set. */
static void test_free_keeps_another_channels_resolver(void **state)
{
    struct fixture *f = *state;
    ae_cares *first, *second;
    assert_int_equal(ae_cares_new(f->loop, NULL, 0, &first), ARES_SUCCESS);
    assert_int_equal(ae_cares_new(f->loop, NULL, 0, &second), ARES_SUCCESS);
    void *ctx = &ctx;
    assert_null(ae_connect_get_resolver(f->loop, &ctx));
    assert_null(ctx);
    assert_null(ae_connect_get_resolver(NULL, &ctx));
    assert_int_equal(ae_last_error_code(), AE_EINVAL);

    assert_int_equal(ae_cares_resolve_connects(first), 0);
    assert_non_null(ae_connect_get_resolver(f->loop, &ctx));
    assert_ptr_equal(ctx, first);
    assert_int_equal(ae_cares_resolve_connects(second), 0);
    assert_non_null(ae_connect_get_resolver(f->loop, &ctx));
    assert_ptr_equal(ctx, second);

    ae_cares_free(first);
    assert_non_null(ae_connect_get_resolver(f->loop, &ctx));
    assert_ptr_equal(ctx, second);
    ae_cares_free(second);
    assert_null(ae_connect_get_resolver(f->loop, NULL));
}

/* Occupy every free fd below FD_SETSIZE + 8, so that the next socket c-ares
 * opens is numbered past select()'s limit. Returns how many were taken
 * (each a dup of fd 0, listed in taken), or -1 if the fd limit is too low. */
static int fill_low_fds(int *taken, int room)
{
    struct rlimit lim;
    if (getrlimit(RLIMIT_NOFILE, &lim) < 0)
        return -1;
    if (lim.rlim_cur < FD_SETSIZE + 64) {
        if (lim.rlim_max < FD_SETSIZE + 64)
            return -1;
        lim.rlim_cur = FD_SETSIZE + 64;
        if (setrlimit(RLIMIT_NOFILE, &lim) < 0)
            return -1;
    }
    int n = 0;
    for (;;) {
        int fd = dup(0);
        if (fd < 0 || n == room) {
            if (fd >= 0)
                close(fd);
            while (n > 0)
                close(taken[--n]);
            return -1;
        }
        taken[n++] = fd;
        if (fd >= FD_SETSIZE + 8)
            return n;
    }
}

/* A socket anyevent cannot watch (select past FD_SETSIZE) is refused when
 * c-ares opens it: the lookup fails at once instead of never completing, and
 * ae_cares_error() says why. Every other backend watches it. */
static void test_socket_past_fd_setsize(void **state)
{
    struct fixture *f = *state;
    const char *const args[] = {"--number-address", NULL};
    start_responder(f, args);
    make_channel(f, 2000, 2);
    struct lookup *l = make_lookups(f, 1);
    l[0].index = 1024;
    enum { ROOM = FD_SETSIZE + 16 };
    int *taken = malloc(ROOM * sizeof *taken);
    assert_non_null(taken);
    int n = fill_low_fds(taken, ROOM);
    if (n < 0) {
        free(taken);
        skip(); /* cannot get an fd that high here (e.g. under valgrind) */
    }
    double t0 = ae_time();
    lookup_host(f, &l[0], "high");
    drive(f);
    double elapsed = ae_time() - t0;
    while (n > 0)
        close(taken[--n]);
    free(taken);
    assert_int_equal(l[0].done, 1);
    if (strcmp(backend_name, "select") == 0) {
        assert_int_equal(l[0].status, ARES_ECONNREFUSED);
        assert_true(elapsed < 1.0); /* not after the timeouts */
        assert_non_null(strstr(ae_cares_error(f->cares), "cannot watch"));
        print_message("%s\n", ae_cares_error(f->cares));
    } else {
        assert_int_equal(l[0].status, ARES_SUCCESS);
        assert_numbered_address(&l[0]);
        assert_string_equal(ae_cares_error(f->cares), "");
    }
    assert_int_equal(ae_cares_sockets(f->cares), 0);
    stop_responder(f);
}

int main(int argc, char **argv)
{
#ifdef AE_CARES_TEST_HOST
    (void)argv;
    if (argc != 1) {
        fprintf(stderr, "usage: %s\n", argv[0]);
        return 2;
    }
    backend_name = host_backend();
    char group[64];
    snprintf(group, sizeof group, "cares, adopted %s", backend_name);
#else
    if (argc != 2) {
        fprintf(stderr, "usage: %s BACKEND\n", argv[0]);
        return 2;
    }
    backend_name = argv[1];
    char group[64];
    snprintf(group, sizeof group, "cares on %s", backend_name);
#endif
    responder_binary = getenv("AE_TEST_DNS_RESPONDER");
    if (!responder_binary || !*responder_binary) {
        fprintf(stderr, "%s: $AE_TEST_DNS_RESPONDER must name tools/dns-responder\n", argv[0]);
        return 2;
    }
    int status = ares_library_init(ARES_LIB_INIT_ALL);
    if (status != ARES_SUCCESS) {
        fprintf(stderr, "ares_library_init: %s\n", ares_strerror(status));
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_new_checks_its_arguments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_lookups_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_once_the_last_answer_is_in, setup, teardown),
        cmocka_unit_test_setup_teardown(test_condvar_fan_out_and_one_at_a_time, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_after_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_when_never_answered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nxdomain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_with_queries_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_destroy_with_queries_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_query_search_and_getaddrinfo, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tcp_connect_resolves_through_cares, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_keeps_another_channels_resolver, setup, teardown),
        cmocka_unit_test_setup_teardown(test_socket_past_fd_setsize, setup, teardown),
    };
    int failed = _cmocka_run_group_tests(group, tests, sizeof tests / sizeof tests[0], NULL, NULL);
    ares_library_cleanup();
    return failed;
}
