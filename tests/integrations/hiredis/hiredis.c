/*
 * anyevent-hiredis against a real redis-server that each test starts on a
 * unix socket and stops. Built twice: as `hiredis <backend>`, running the
 * loop with ae_run(), and with AE_HIREDIS_TEST_HOST once per native library,
 * where the loop is adopted from the host's native loop (tests/adopt/host.h)
 * and the host runs it. The server binary comes from AE_TEST_REDIS_SERVER;
 * without it the program exits 77 (skipped).
 *
 * Callbacks record failures instead of asserting, so that a failure never
 * jumps out of a running loop; each test asserts after the loop returned.
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

#include <cmocka.h>

#include "anyevent-hiredis.h"
#include "redis_server.h"
#ifdef AE_HIREDIS_TEST_HOST
#include "host.h"
#endif

enum {
    CLIENTS = 4,
    COMMANDS = 10000, /* per client: 40,000 in all */
    WINDOW = 1000,    /* commands outstanding per client */
    KILL_AFTER = 1000 /* replies to client 0 before the server is killed */
};
static const double GUARD_SECONDS = 60;

static const char *backend;
static const char *redis_binary;

struct test;

struct client {
    struct test *t;
    redisAsyncContext *ac;
    int id;
    long sent, answered, null_replies, next_seq;
    int connects, disconnects, disconnect_status;
    int finished_before_kill;
    char disconnect_error[128];
};

struct test {
    struct redis_server srv;
    ae_loop *loop;
    void *native; /* the host's loop, with AE_HIREDIS_TEST_HOST */
    ae_watcher *guard;
    redisAsyncContext *other; /* a test's own context, freed by the guard */
    struct client clients[CLIENTS];
    int live;
    int kill_mode, killed, timed_out;
    int failures;
    char first_failure[512];
};

static void record_failure(struct test *t, const char *fmt, ...)
{
    if (t->failures++)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->first_failure, sizeof t->first_failure, fmt, ap);
    va_end(ap);
}

static void assert_no_failure(struct test *t)
{
    if (t->failures)
        fail_msg("%d failure(s), the first: %s", t->failures, t->first_failure);
}

/* ---- fixture: a server and a loop per test ----------------------------- */

static int setup(void **state)
{
    struct test *t = calloc(1, sizeof *t);
    assert_non_null(t);
    char err[600];
    if (redis_server_start(&t->srv, redis_binary, err, sizeof err) < 0) {
        free(t);
        fail_msg("starting redis-server: %s", err);
    }
#ifdef AE_HIREDIS_TEST_HOST
    t->native = host_loop_new();
    assert_non_null(t->native);
    t->loop = ae_loop_adopt(backend, t->native);
#else
    t->loop = ae_loop_new(backend);
#endif
    if (!t->loop) {
        redis_server_stop(&t->srv);
        fail_msg("loop on %s: %s", backend, ae_last_error());
    }
    alarm(120); /* last resort if the guard timer itself never fires */
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    struct test *t = *state;
    alarm(0);
    ae_loop_free(t->loop);
#ifdef AE_HIREDIS_TEST_HOST
    host_loop_free(t->native);
#endif
    redis_server_stop(&t->srv);
    free(t);
    return 0;
}

static void run_loop(struct test *t)
{
#ifdef AE_HIREDIS_TEST_HOST
    host_run(t->native);
#else
    int rc = ae_run(t->loop);
    if (rc != 0)
        fail_msg("ae_run: %s", ae_last_error());
#endif
}

/* ---- the pipelined workload -------------------------------------------- */

static void on_reply(redisAsyncContext *ac, void *r, void *privdata);

/* Command seq of a client: INCR of the client's counter, SET of a key of
 * its own, GET of that key, and again: every reply can be checked. */
static int send_next(struct client *c)
{
    long seq = c->sent;
    void *tag = (void *)(intptr_t)seq;
    int rc;
    switch (seq % 3) {
    case 0:
        rc = redisAsyncCommand(c->ac, on_reply, tag, "INCR ae:count:%d", c->id);
        break;
    case 1:
        rc = redisAsyncCommand(c->ac, on_reply, tag, "SET ae:%d:%ld v%d:%ld", c->id, seq, c->id, seq);
        break;
    default:
        rc = redisAsyncCommand(c->ac, on_reply, tag, "GET ae:%d:%ld", c->id, seq - 1);
        break;
    }
    if (rc != REDIS_OK) {
        record_failure(c->t, "client %d: redisAsyncCommand %ld: %s", c->id, seq, c->ac->errstr);
        return -1;
    }
    c->sent++;
    return 0;
}

static void check_reply(struct client *c, long seq, const redisReply *reply)
{
    char want[64];
    switch (seq % 3) {
    case 0:
        if (reply->type != REDIS_REPLY_INTEGER || reply->integer != seq / 3 + 1)
            record_failure(c->t, "client %d: INCR %ld: type %d, %lld, want %ld", c->id, seq,
                           reply->type, reply->integer, seq / 3 + 1);
        break;
    case 1:
        if (reply->type != REDIS_REPLY_STATUS || strcmp(reply->str, "OK") != 0)
            record_failure(c->t, "client %d: SET %ld: type %d", c->id, seq, reply->type);
        break;
    default:
        snprintf(want, sizeof want, "v%d:%ld", c->id, seq - 1);
        if (reply->type != REDIS_REPLY_STRING || strcmp(reply->str, want) != 0)
            record_failure(c->t, "client %d: GET %ld: type %d, '%s', want '%s'", c->id, seq,
                           reply->type, reply->type == REDIS_REPLY_STRING ? reply->str : "", want);
        break;
    }
}

static void kill_server(struct test *t)
{
    for (int i = 0; i < CLIENTS; i++) {
        struct client *c = &t->clients[i];
        c->finished_before_kill = c->answered == COMMANDS;
    }
    redis_server_kill(&t->srv);
    t->killed = 1;
}

static void on_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    struct client *c = ac->data;
    struct test *t = c->t;
    long seq = (long)(intptr_t)privdata;
    if (seq != c->next_seq)
        record_failure(t, "client %d: reply for %ld, want %ld", c->id, seq, c->next_seq);
    c->next_seq = seq + 1;
    if (!r) {
        c->null_replies++;
        if (!t->killed)
            record_failure(t, "client %d: no reply for %ld: %s", c->id, seq, ac->errstr);
        return;
    }
    check_reply(c, seq, r);
    c->answered++;
    if (t->kill_mode && !t->killed && c->id == 0 && c->answered == KILL_AFTER)
        kill_server(t);
    if (c->sent < COMMANDS)
        send_next(c);
    else if (c->answered == COMMANDS)
        redisAsyncDisconnect(ac); /* clean: after this callback returns */
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct client *c = ac->data;
    c->connects++;
    if (status != REDIS_OK)
        record_failure(c->t, "client %d: connect: %s", c->id, ac->errstr);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct client *c = ac->data;
    struct test *t = c->t;
    c->disconnects++;
    c->disconnect_status = status;
    snprintf(c->disconnect_error, sizeof c->disconnect_error, "%s", ac->errstr ? ac->errstr : "");
    c->ac = NULL; /* hiredis frees it after this callback */
    if (--t->live == 0) {
        /* Nothing of ours is left on the loop: it returns. */
        ae_watcher_free(t->guard);
        t->guard = NULL;
    }
}

static void on_guard(ae_watcher *w, void *arg)
{
    struct test *t = arg;
    t->timed_out = 1;
    record_failure(t, "not done after %.0f s", GUARD_SECONDS);
    ae_watcher_free(w);
    t->guard = NULL;
    /* Free what is left so that the loop (also a host's) returns. */
    for (int i = 0; i < CLIENTS; i++)
        if (t->clients[i].ac)
            redisAsyncFree(t->clients[i].ac);
    if (t->other)
        redisAsyncFree(t->other);
}

static void connect_client(struct test *t, struct client *c, int id)
{
    c->t = t;
    c->id = id;
    c->ac = redisAsyncConnectUnix(t->srv.socket);
    assert_non_null(c->ac);
    if (c->ac->err)
        fail_msg("client %d: connect %s: %s", id, t->srv.socket, c->ac->errstr);
    c->ac->data = c;
    assert_int_equal(redisAsyncSetConnectCallback(c->ac, on_connect), REDIS_OK);
    assert_int_equal(redisAsyncSetDisconnectCallback(c->ac, on_disconnect), REDIS_OK);
    int rc = ae_hiredis_attach(c->ac, t->loop);
    if (rc != 0)
        fail_msg("ae_hiredis_attach: %s (%s)", ae_strerror(rc), ae_last_error());
    t->live++;
}

static void start_workload(struct test *t)
{
    t->guard = ae_timer(t->loop, GUARD_SECONDS, 0, on_guard, t);
    assert_non_null(t->guard);
    for (int i = 0; i < CLIENTS; i++) {
        connect_client(t, &t->clients[i], i);
        for (int k = 0; k < WINDOW; k++)
            assert_int_equal(send_next(&t->clients[i]), 0);
    }
}

/* Several clients, every reply checked, in order; each disconnects cleanly
 * when done and the loop returns. */
static void test_pipelined(void **state)
{
    struct test *t = *state;
    start_workload(t);
    run_loop(t);
    assert_no_failure(t);
    for (int i = 0; i < CLIENTS; i++) {
        struct client *c = &t->clients[i];
        assert_int_equal(c->sent, COMMANDS);
        assert_int_equal(c->answered, COMMANDS);
        assert_int_equal(c->null_replies, 0);
        assert_int_equal(c->connects, 1);
        assert_int_equal(c->disconnects, 1);
        assert_int_equal(c->disconnect_status, REDIS_OK);
    }
    assert_int_equal(t->live, 0);
}

/* The server is killed in mid-run (SIGKILL, from a reply callback): every
 * command sent gets its callback, those without a reply with NULL; every
 * client still busy is told of the disconnect with an error; the loop
 * returns. */
static void test_server_killed(void **state)
{
    struct test *t = *state;
    t->kill_mode = 1;
    start_workload(t);
    run_loop(t);
    assert_no_failure(t);
    assert_true(t->killed);
    long null_replies = 0;
    for (int i = 0; i < CLIENTS; i++) {
        struct client *c = &t->clients[i];
        assert_int_equal(c->answered + c->null_replies, c->sent);
        assert_int_equal(c->next_seq, c->sent);
        assert_int_equal(c->disconnects, 1);
        if (!c->finished_before_kill) {
            if (c->disconnect_status != REDIS_ERR || !c->disconnect_error[0])
                fail_msg("client %d: disconnect status %d, error '%s'", i, c->disconnect_status,
                         c->disconnect_error);
        }
        null_replies += c->null_replies;
        print_message("client %d: %ld sent, %ld answered, %ld without reply, disconnect: %s\n", i,
                      c->sent, c->answered, c->null_replies, c->disconnect_error);
    }
    assert_true(null_replies > 0); /* commands were pending when it died */
    assert_int_equal(t->live, 0);
}

/* ---- the API's edges ---------------------------------------------------- */

static void test_attach_errors(void **state)
{
    struct test *t = *state;
    redisAsyncContext *ac = redisAsyncConnectUnix(t->srv.socket);
    assert_non_null(ac);
    assert_int_equal(ac->err, 0);
    assert_int_equal(ae_hiredis_attach(NULL, t->loop), AE_EINVAL);
    assert_int_equal(ae_hiredis_attach(ac, NULL), AE_EINVAL);
    assert_int_equal(ae_hiredis_attach(ac, t->loop), 0);
    assert_int_equal(ae_hiredis_attach(ac, t->loop), AE_ESTATE);
    redisAsyncFree(ac); /* before the loop ever ran: the watcher goes too */
    run_loop(t);        /* nothing left: returns at once */

    /* A failed connect has no fd to watch. */
    char missing[sizeof t->srv.dir + 16];
    snprintf(missing, sizeof missing, "%s/missing.sock", t->srv.dir);
    ac = redisAsyncConnectUnix(missing);
    assert_non_null(ac);
    assert_int_not_equal(ac->err, 0);
    assert_int_equal(ae_hiredis_attach(ac, t->loop), AE_EBADF);
    redisAsyncFree(ac);
}

struct one_shot {
    int replies, null_replies, disconnects, disconnect_status;
};

static void on_free_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    struct one_shot *s = privdata;
    if (!r) {
        s->null_replies++;
        return;
    }
    s->replies++;
    redisAsyncFree(ac); /* from inside a reply: hiredis frees after it */
}

static void on_free_disconnect(const redisAsyncContext *ac, int status)
{
    struct one_shot *s = ac->data;
    s->disconnects++;
    s->disconnect_status = status;
}

/* Commands queued on a context freed before the loop runs get NULL replies;
 * a context freed from inside a reply callback is cleaned up from inside
 * the io watcher's own callback, and the loop returns. */
static void test_context_free(void **state)
{
    struct test *t = *state;
    struct one_shot early = {0}, inside = {0};

    redisAsyncContext *ac = redisAsyncConnectUnix(t->srv.socket);
    assert_non_null(ac);
    assert_int_equal(ae_hiredis_attach(ac, t->loop), 0);
    assert_int_equal(redisAsyncCommand(ac, on_free_reply, &early, "PING"), REDIS_OK);
    redisAsyncFree(ac);
    assert_int_equal(early.null_replies, 1);

    ac = redisAsyncConnectUnix(t->srv.socket);
    assert_non_null(ac);
    ac->data = &inside;
    assert_int_equal(redisAsyncSetDisconnectCallback(ac, on_free_disconnect), REDIS_OK);
    assert_int_equal(ae_hiredis_attach(ac, t->loop), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(redisAsyncCommand(ac, on_free_reply, &inside, "PING"), REDIS_OK);
    run_loop(t);
    assert_int_equal(inside.replies, 1);
    assert_int_equal(inside.null_replies, 2); /* the two after the free */
    assert_int_equal(inside.disconnects, 1);
    assert_int_equal(inside.disconnect_status, REDIS_OK);
}

/* Values far larger than a socket buffer: writes and reads take many
 * iterations. The SETs are sent from a reply callback, so their first write
 * is tried at once and the rest waits for write readiness. */
enum { BIG_VALUES = 4, BIG_SIZE = 512 << 10 };

struct big {
    char *value[BIG_VALUES];
    int set_ok, get_ok, disconnects, disconnect_status;
    struct test *t;
};

static void on_big_get(redisAsyncContext *ac, void *r, void *privdata)
{
    struct big *b = ac->data;
    int i = (int)(intptr_t)privdata;
    const redisReply *reply = r;
    if (!reply || reply->type != REDIS_REPLY_STRING || reply->len != BIG_SIZE ||
        memcmp(reply->str, b->value[i], BIG_SIZE) != 0) {
        record_failure(b->t, "GET big %d: wrong or no reply", i);
        return;
    }
    if (++b->get_ok == BIG_VALUES)
        redisAsyncDisconnect(ac);
}

static void on_big_set(redisAsyncContext *ac, void *r, void *privdata)
{
    struct big *b = ac->data;
    const redisReply *reply = r;
    if (!reply || reply->type != REDIS_REPLY_STATUS)
        record_failure(b->t, "SET big %d: wrong or no reply", (int)(intptr_t)privdata);
    else
        b->set_ok++;
}

static void on_big_start(redisAsyncContext *ac, void *r, void *privdata)
{
    (void)privdata;
    struct big *b = ac->data;
    if (!r) {
        record_failure(b->t, "PING: no reply: %s", ac->errstr);
        return;
    }
    for (int i = 0; i < BIG_VALUES; i++) {
        void *tag = (void *)(intptr_t)i;
        if (redisAsyncCommand(ac, on_big_set, tag, "SET big:%d %b", i, b->value[i], (size_t)BIG_SIZE) != REDIS_OK ||
            redisAsyncCommand(ac, on_big_get, tag, "GET big:%d", i) != REDIS_OK)
            record_failure(b->t, "redisAsyncCommand big %d: %s", i, ac->errstr);
    }
}

static void on_big_disconnect(const redisAsyncContext *ac, int status)
{
    struct big *b = ac->data;
    b->disconnects++;
    b->disconnect_status = status;
    b->t->other = NULL;
    ae_watcher_free(b->t->guard);
    b->t->guard = NULL;
}

static void test_large_values(void **state)
{
    struct test *t = *state;
    struct big b = {.t = t};
    for (int i = 0; i < BIG_VALUES; i++) {
        b.value[i] = malloc(BIG_SIZE);
        assert_non_null(b.value[i]);
        for (int k = 0; k < BIG_SIZE; k++)
            b.value[i][k] = (char)('a' + (k * 7 + i) % 26);
    }
    redisAsyncContext *ac = redisAsyncConnectUnix(t->srv.socket);
    assert_non_null(ac);
    ac->data = &b;
    assert_int_equal(redisAsyncSetDisconnectCallback(ac, on_big_disconnect), REDIS_OK);
    assert_int_equal(ae_hiredis_attach(ac, t->loop), 0);
    assert_int_equal(redisAsyncCommand(ac, on_big_start, NULL, "PING"), REDIS_OK);
    t->other = ac;
    t->guard = ae_timer(t->loop, GUARD_SECONDS, 0, on_guard, t);
    assert_non_null(t->guard);
    run_loop(t);
    for (int i = 0; i < BIG_VALUES; i++)
        free(b.value[i]);
    assert_no_failure(t);
    assert_int_equal(b.set_ok, BIG_VALUES);
    assert_int_equal(b.get_ok, BIG_VALUES);
    assert_int_equal(b.disconnects, 1);
    assert_int_equal(b.disconnect_status, REDIS_OK);
}

#if HIREDIS_MAJOR >= 1
static void on_timeout_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    (void)ac;
    struct one_shot *s = privdata;
    if (r)
        s->replies++;
    else
        s->null_replies++;
}

/* hiredis >= 1.0 only: its command timeout runs on the integration's timer.
 * A command the server holds (BLPOP on an empty list) times out: its
 * callback gets NULL, the context disconnects with an error. */
static void test_command_timeout(void **state)
{
    struct test *t = *state;
    struct one_shot s = {0};
    redisAsyncContext *ac = redisAsyncConnectUnix(t->srv.socket);
    assert_non_null(ac);
    ac->data = &s;
    assert_int_equal(redisAsyncSetDisconnectCallback(ac, on_free_disconnect), REDIS_OK);
    assert_int_equal(ae_hiredis_attach(ac, t->loop), 0);
    assert_int_equal(redisAsyncSetTimeout(ac, (struct timeval){0, 100000}), REDIS_OK);
    assert_int_equal(redisAsyncCommand(ac, on_timeout_reply, &s, "BLPOP ae:never 0"), REDIS_OK);
    double start = ae_time();
    run_loop(t);
    double took = ae_time() - start;
    assert_int_equal(s.replies, 0);
    assert_int_equal(s.null_replies, 1);
    assert_int_equal(s.disconnects, 1);
    assert_int_equal(s.disconnect_status, REDIS_ERR);
    assert_true(took >= 0.099 && took < 5);
}
#endif

int main(int argc, char **argv)
{
#ifdef AE_HIREDIS_TEST_HOST
    (void)argc;
    (void)argv;
    backend = host_backend();
#else
    if (argc != 2) {
        fprintf(stderr, "usage: %s BACKEND\n", argv[0]);
        return 2;
    }
    backend = argv[1];
#endif
    redis_binary = getenv("AE_TEST_REDIS_SERVER");
    if (!redis_binary || !*redis_binary || access(redis_binary, X_OK) != 0) {
        printf("skipped: no redis-server (AE_TEST_REDIS_SERVER is '%s'); install redis-server\n",
               redis_binary ? redis_binary : "");
        return 77;
    }
    /* A killed server makes hiredis's writes fail with EPIPE instead of
     * killing this process. */
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_pipelined, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_killed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attach_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_context_free, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_values, setup, teardown),
#if HIREDIS_MAJOR >= 1
        cmocka_unit_test_setup_teardown(test_command_timeout, setup, teardown),
#endif
    };
    char group[64];
    snprintf(group, sizeof group, "hiredis-%s%s", backend,
#ifdef AE_HIREDIS_TEST_HOST
             "-adopted"
#else
             ""
#endif
    );
    return cmocka_run_group_tests_name(group, tests, NULL, NULL);
}
