/*
 * ae_stream: every semantic rule of include/anyevent/stream.h, one test each.
 * One source, run once per backend (`stream BACKEND`), and built with
 * AE_STREAM_TEST_HOST once per native library, where the loop is adopted
 * from the host's own loop (tests/adopt/host.h) and the host runs it.
 *
 * The other end of a stream is usually a plain socket of a socketpair that
 * the test reads and writes itself. Callbacks record failures instead of
 * asserting, so that a failure never jumps out of a running loop; every
 * call into the library is made through CALL(), and a callback that runs
 * while one is under way is a failure ("no callback inside a call").
 */
#include <malloc.h>

#include "harness.h"

/* ---- bad input ------------------------------------------------------------ */

static void test_bad_input(void **state)
{
    (void)state;
    assert_null(ae_stream_new(NULL, F->fd[0], NULL, on_event, NULL));
    assert_int_equal(ae_last_error_code(), AE_EINVAL);
    assert_null(ae_stream_new(F->loop, F->fd[0], NULL, NULL, NULL));
    assert_int_equal(ae_last_error_code(), AE_EINVAL);
    assert_null(ae_stream_new(F->loop, -1, NULL, on_event, NULL));
    assert_int_equal(ae_last_error_code(), AE_EBADF);
    int closed = dup(F->fd[0]);
    close(closed);
    assert_null(ae_stream_new(F->loop, closed, NULL, on_event, NULL));
    assert_int_equal(ae_last_error_code(), AE_EBADF);
    ae_stream_opts o = {.rtimeout = -1};
    assert_null(ae_stream_new(F->loop, F->fd[0], &o, on_event, NULL));
    assert_int_equal(ae_last_error_code(), AE_EINVAL);
    o = (ae_stream_opts){.wbuf_low = 10, .wbuf_high = 5};
    assert_null(ae_stream_new(F->loop, F->fd[0], &o, on_event, NULL));
    assert_int_equal(ae_last_error_code(), AE_EINVAL);
    o = (ae_stream_opts){.flags = 0x100};
    assert_null(ae_stream_new(F->loop, F->fd[0], &o, on_event, NULL));
    assert_int_equal(ae_last_error_code(), AE_EINVAL);

    make_stream(NULL);
    assert_int_equal(ae_stream_read(F->s, AE_PREFIXED(3, 0), on_data, NULL), AE_EINVAL);
    assert_int_equal(ae_stream_read(F->s, AE_EXACTLY(0), on_data, NULL), AE_EINVAL);
    assert_int_equal(ae_stream_read(F->s, AE_UPTO(0), on_data, NULL), AE_EINVAL);
    assert_int_equal(ae_stream_read(F->s, AE_LINE(""), on_data, NULL), AE_EINVAL);
    assert_int_equal(ae_stream_read(F->s, AE_FRAMED(NULL, NULL), on_data, NULL), AE_EINVAL);
    assert_int_equal(ae_stream_read(F->s, AE_LINE(NULL), NULL, NULL), AE_EINVAL);
    assert_int_equal(ae_stream_read(F->s, AE_EXACTLY((size_t)1 << 40), on_data, NULL), AE_EINVAL);
    assert_int_equal(ae_stream_read(NULL, AE_LINE(NULL), on_data, NULL), AE_EINVAL);
    assert_int_equal(ae_stream_write(NULL, "x", 1), AE_EINVAL);
    assert_int_equal(ae_stream_write(F->s, NULL, 1), AE_EINVAL);
    assert_int_equal(ae_stream_writev(F->s, NULL, 1), AE_EINVAL);
    assert_int_equal(ae_stream_writev(F->s, NULL, -1), AE_EINVAL);
    assert_int_equal(ae_stream_close(F->s, -1), AE_EINVAL);
    assert_int_equal(ae_stream_close(NULL, 0), AE_EINVAL);
    assert_int_equal(ae_stream_shutdown(NULL), AE_EINVAL);
    assert_int_equal(ae_stream_on_read(NULL, NULL, NULL), AE_EINVAL);
    assert_int_equal(ae_stream_fd(NULL), -1);
    assert_int_equal(ae_stream_queued(NULL), 0);
    assert_null(ae_stream_error(NULL));
    assert_null(ae_stream_error(F->s));
    assert_int_equal(ae_stream_fd(F->s), F->fd[0]);
    ae_stream_free(NULL);
    /* The fd was made non-blocking. */
    assert_true(fcntl(F->fd[0], F_GETFL) & O_NONBLOCK);
    /* A pipe cannot be shut down. */
    int p[2];
    assert_int_equal(pipe(p), 0);
    ae_stream *ps = ae_stream_new(F->loop, p[1], NULL, on_event, NULL);
    assert_non_null(ps);
    assert_int_equal(ae_stream_shutdown(ps), AE_ENOTSUP);
    ae_stream_free(ps);
    close(p[0]);
    close(p[1]);
    assert_int_equal(F->nevents, 0);
}

/* ---- read requests -------------------------------------------------------- */

static void test_lines(void **state)
{
    (void)state;
    make_stream(NULL);
    peer_puts("a\r\nbb\n\nccc\nx\r");
    for (int i = 0; i < 4; i++)
        assert_int_equal(CALL(ae_stream_read(F->s, AE_LINE(NULL), on_data, NULL)), 0);
    /* A custom delimiter, arriving a byte at a time. */
    assert_int_equal(CALL(ae_stream_read(F->s, AE_LINE("\r\n\r\n"), on_data, NULL)), 0);
    WAIT(data_count() >= 4);
    const char *head = "\nHost: x\r\n\r\nrest";
    for (const char *p = head; *p; p++) {
        peer_write(p, 1);
        run_once();
    }
    WAIT(data_count() >= 5);
    assert_int_equal(data_count(), 5);
    assert_string_equal(F->data[0], "a");
    assert_string_equal(F->data[1], "bb");
    assert_string_equal(F->data[2], "");
    assert_string_equal(F->data[3], "ccc");
    /* "x\r" + "\nHost: x" then the delimiter: the \r\n of the first bytes is data here */
    assert_string_equal(F->data[4], "x\r\nHost: x");
    assert_int_equal(F->nevents, 0);
    assert_no_failure();
}

static size_t frame_colon(ae_stream *s, const char *data, size_t len, int eof, void *arg)
{
    (void)s;
    (void)eof;
    in_callback("a frame function");
    ++*(int *)arg;
    const char *c = memchr(data, ':', len);
    return c ? (size_t)(c - data) + 1 : 0;
}

/* The kinds one by one, so that each sees exactly its input. */
static void read_one(ae_rspec r, const void *input, size_t n)
{
    peer_write(input, n);
    int before = data_count();
    assert_int_equal(CALL(ae_stream_read(F->s, r, on_data, NULL)), 0);
    WAIT(!(data_count() == before && !F->failures && F->nevents == 0));
}

static void test_kinds_each(void **state)
{
    (void)state;
    make_stream(NULL);
    int frame_calls = 0;
    read_one(AE_EXACTLY(3), "12345", 5);
    assert_string_equal(F->data[0], "123");
    read_one(AE_UPTO(100), "", 0);
    assert_string_equal(F->data[1], "45");
    read_one(AE_UPTO(2), "xyz", 3);
    assert_string_equal(F->data[2], "xy");
    read_one(AE_EXACTLY(1), "", 0);
    assert_string_equal(F->data[3], "z");
    read_one(AE_PREFIXED(1, 0), "\003abc", 4);
    assert_string_equal(F->data[4], "abc");
    read_one(AE_PREFIXED(2, 0), "\000\002de", 4);
    assert_string_equal(F->data[5], "de");
    read_one(AE_PREFIXED(4, 10), "\000\000\000\001f", 5);
    assert_string_equal(F->data[6], "f");
    read_one(AE_PREFIXED(2, 0), "\000\000", 2);
    assert_int_equal(F->data_len[7], 0);
    read_one(AE_FRAMED(frame_colon, &frame_calls), "abc:def", 7);
    assert_string_equal(F->data[8], "abc:");
    assert_true(frame_calls >= 1);
    read_one(AE_UPTO(10), "", 0);
    assert_string_equal(F->data[9], "def");
    assert_int_equal(F->nevents, 0);
    assert_no_failure();
}

/* Order, and a request queued from a data callback served from the buffer. */
static void on_data_then_first(ae_stream *s, const char *data, size_t len, void *arg)
{
    on_data(s, data, len, arg);
    /* Queued at the front from inside: served next, before "B". */
    if (ae_stream_read_first(s, AE_EXACTLY(1), on_data, NULL) != 0)
        failure("read_first: %s", ae_last_error());
    /* And at the end: after "B". */
    if (ae_stream_read(s, AE_UPTO(10), on_data, NULL) != 0)
        failure("read: %s", ae_last_error());
}

static void test_order(void **state)
{
    (void)state;
    make_stream(NULL);
    peer_puts("A\nCB\nrest");
    assert_int_equal(CALL(ae_stream_read(F->s, AE_LINE(NULL), on_data_then_first, NULL)), 0);
    assert_int_equal(CALL(ae_stream_read(F->s, AE_LINE(NULL), on_data, NULL)), 0);
    /* read_first from outside goes before both. */
    assert_int_equal(CALL(ae_stream_read_first(F->s, AE_EXACTLY(0 + 1), on_data, NULL)), 0);
    WAIT(data_count() >= 5);
    assert_string_equal(F->data[0], "A"); /* the read_first from outside: one byte */
    assert_string_equal(F->data[1], "");  /* the first line: what is left of "A\n" */
    assert_string_equal(F->data[2], "C"); /* its callback's read_first */
    assert_string_equal(F->data[3], "B"); /* the second line */
    assert_string_equal(F->data[4], "rest");
    assert_no_failure();
}

static void test_order_inside(void **state)
{
    (void)state;
    make_stream(NULL);
    peer_puts("A\nCB\nrest");
    assert_int_equal(CALL(ae_stream_read(F->s, AE_LINE(NULL), on_data_then_first, NULL)), 0);
    assert_int_equal(CALL(ae_stream_read(F->s, AE_LINE(NULL), on_data, NULL)), 0);
    WAIT(data_count() >= 4);
    assert_string_equal(F->data[0], "A");
    assert_string_equal(F->data[1], "C");    /* read_first from inside the callback */
    assert_string_equal(F->data[2], "B");    /* the second request queued before */
    assert_string_equal(F->data[3], "rest"); /* the request queued at the end from inside */
    assert_no_failure();
}

/* Reading stops by itself while nothing asks for data. */
static void test_reading_stops(void **state)
{
    (void)state;
    make_stream(NULL);
    peer_puts("one\ntwo\n");
    run_for(0.05);
    assert_int_equal(peer_pending(F->fd[0]), 8); /* nothing was read */
    assert_int_equal(CALL(ae_stream_read(F->s, AE_EXACTLY(4), on_data, NULL)), 0);
    WAIT(data_count() >= 1);
    run_for(0.03);
    assert_int_equal(data_count(), 1);
    /* The stream read what the kernel had (one read), but asks for no more. */
    peer_puts("three\n");
    run_for(0.03);
    assert_int_equal(peer_pending(F->fd[0]), 6);
    assert_int_equal(CALL(ae_stream_read(F->s, AE_LINE(NULL), on_data, NULL)), 0);
    assert_int_equal(CALL(ae_stream_read(F->s, AE_LINE(NULL), on_data, NULL)), 0);
    WAIT(data_count() >= 3);
    assert_string_equal(F->data[1], "two");
    assert_string_equal(F->data[2], "three");
    assert_int_equal(F->nevents, 0);
    assert_no_failure();
}

/* ---- simple mode ---------------------------------------------------------- */

struct consumer {
    size_t take;  /* bytes to take per call */
    int partial;  /* also fewer, when fewer are offered */
    int calls, eof_calls;
    size_t seen;
    char got[64];
};

static size_t consume(ae_stream *s, const char *data, size_t len, int eof, void *arg)
{
    (void)s;
    in_callback("on_read");
    struct consumer *c = arg;
    c->calls++;
    c->eof_calls += eof;
    size_t n = len < c->take ? (c->partial ? len : 0) : c->take;
    if (c->seen + n < sizeof c->got)
        memcpy(c->got + c->seen, data, n);
    c->seen += n;
    return n;
}

static void test_eof_epipe(void **state)
{
    (void)state;
    make_stream(NULL);
    peer_puts("abc");
    shutdown(F->fd[1], SHUT_WR);
    assert_int_equal(CALL(ae_stream_read(F->s, AE_EXACTLY(5), on_data, NULL)), 0);
    WAIT(F->nevents >= 1);
    run_for(0.03);
    assert_int_equal(F->nevents, 1); /* the fatal error is the last callback */
    assert_int_equal(F->events[0], AE_STREAM_ERROR);
    assert_int_equal(F->errs[0], EPIPE);
    assert_non_null(ae_stream_error(F->s));
    assert_int_equal(CALL(ae_stream_write(F->s, "x", 1)), AE_ESTATE);
    assert_int_equal(CALL(ae_stream_read(F->s, AE_UPTO(1), on_data, NULL)), AE_ESTATE);
    assert_int_equal(data_count(), 0);
    assert_no_failure();
}

static void test_eof_half_close(void **state)
{
    (void)state;
    make_stream(NULL);
    peer_puts("last\n");
    shutdown(F->fd[1], SHUT_WR);
    assert_int_equal(CALL(ae_stream_read(F->s, AE_LINE(NULL), on_data, NULL)), 0);
    assert_int_equal(CALL(ae_stream_read(F->s, AE_LINE(NULL), on_data, NULL)), 0);
    WAIT(F->nevents >= 1);
    /* The second request cannot be served: EPIPE. */
    assert_int_equal(F->events[0], AE_STREAM_ERROR);
    assert_int_equal(F->errs[0], EPIPE);
    assert_string_equal(F->data[0], "last");
    assert_no_failure();
}

static void test_eof_event_then_write(void **state)
{
    (void)state;
    make_stream(NULL);
    peer_puts("last\n");
    shutdown(F->fd[1], SHUT_WR);
    /* EOF is noticed while reading: here in simple mode. */
    struct consumer c = {.take = 100, .partial = 1};
    assert_int_equal(CALL(ae_stream_on_read(F->s, consume, &c)), 0);
    WAIT(F->nevents >= 1);
    assert_int_equal(F->events[0], AE_STREAM_EOF);
    assert_int_equal(F->errs[0], 0);
    assert_string_equal(c.got, "last\n");
    /* Half close: writing still works. */
    assert_int_equal(CALL(ae_stream_write(F->s, "reply", 5)), 0);
    char buf[8] = {0};
    assert_int_equal(peer_read(buf, 5), 5);
    assert_string_equal(buf, "reply");
    run_for(0.02);
    assert_int_equal(F->nevents, 1);
    assert_no_failure();
}

static void test_on_read(void **state)
{
    (void)state;
    make_stream(NULL);
    struct consumer c = {.take = 2};
    peer_puts("hello");
    assert_int_equal(CALL(ae_stream_on_read(F->s, consume, &c)), 0);
    WAIT(c.seen >= 4);
    run_for(0.02);
    assert_int_equal(c.seen, 4); /* 1 left: it used nothing of a 1-byte offer */
    /* EOF: called once more with eof 1; what it leaves is EPIPE. */
    c.take = 0;
    shutdown(F->fd[1], SHUT_WR);
    WAIT(F->nevents >= 1);
    assert_int_equal(c.eof_calls, 1);
    assert_int_equal(F->events[0], AE_STREAM_ERROR);
    assert_int_equal(F->errs[0], EPIPE);
    assert_no_failure();
}

static void test_on_read_eof_clean(void **state)
{
    (void)state;
    make_stream(NULL);
    struct consumer c = {.take = 100, .partial = 1};
    peer_puts("bye");
    shutdown(F->fd[1], SHUT_WR);
    assert_int_equal(CALL(ae_stream_on_read(F->s, consume, &c)), 0);
    WAIT(F->nevents >= 1);
    assert_int_equal(c.eof_calls, 1);
    assert_string_equal(c.got, "bye");
    assert_int_equal(F->events[0], AE_STREAM_EOF);
    /* Unsetting stops reading. */
    assert_int_equal(CALL(ae_stream_on_read(F->s, NULL, NULL)), 0);
    run_for(0.02);
    assert_int_equal(F->nevents, 1);
    assert_no_failure();
}

static void test_on_read_unset(void **state)
{
    (void)state;
    make_stream(NULL);
    struct consumer c = {.take = 100, .partial = 1};
    assert_int_equal(CALL(ae_stream_on_read(F->s, consume, &c)), 0);
    peer_puts("one");
    WAIT(c.seen >= 3);
    assert_int_equal(CALL(ae_stream_on_read(F->s, NULL, NULL)), 0);
    peer_puts("two");
    run_for(0.03);
    assert_int_equal(c.seen, 3);
    assert_int_equal(peer_pending(F->fd[0]), 3);
    /* A request queued later gets them. */
    assert_int_equal(CALL(ae_stream_read(F->s, AE_EXACTLY(3), on_data, NULL)), 0);
    WAIT(data_count() >= 1);
    assert_string_equal(F->data[0], "two");
    assert_no_failure();
}

/* ---- framing errors and limits -------------------------------------------- */

static size_t frame_bad(ae_stream *s, const char *data, size_t len, int eof, void *arg)
{
    (void)s, (void)data, (void)len, (void)eof, (void)arg;
    return AE_STREAM_BAD;
}

static void test_badmsg(void **state)
{
    (void)state;
    make_stream(NULL);
    peer_puts("junk");
    assert_int_equal(CALL(ae_stream_read(F->s, AE_FRAMED(frame_bad, NULL), on_data, NULL)), 0);
    WAIT(F->nevents >= 1);
    assert_int_equal(F->events[0], AE_STREAM_ERROR);
    assert_int_equal(F->errs[0], EBADMSG);
    assert_no_failure();
}

static void test_prefixed_max(void **state)
{
    (void)state;
    make_stream(NULL);
    peer_write("\000\011123456789", 11);
    assert_int_equal(CALL(ae_stream_read(F->s, AE_PREFIXED(2, 8), on_data, NULL)), 0);
    WAIT(F->nevents >= 1);
    assert_int_equal(F->events[0], AE_STREAM_ERROR);
    assert_int_equal(F->errs[0], EBADMSG);
    assert_int_equal(data_count(), 0);
    assert_no_failure();
}

static void test_rbuf_max(void **state)
{
    (void)state;
    ae_stream_opts o = {.rbuf_max = 1000};
    make_stream(&o);
    char junk[3000];
    memset(junk, 'x', sizeof junk);
    peer_write(junk, sizeof junk);
    assert_int_equal(CALL(ae_stream_read(F->s, AE_LINE(NULL), on_data, NULL)), 0);
    WAIT(F->nevents >= 1);
    assert_int_equal(F->events[0], AE_STREAM_ERROR);
    assert_int_equal(F->errs[0], ENOSPC);
    assert_no_failure();
}

/* ---- writing -------------------------------------------------------------- */

static void test_write_through(void **state)
{
    (void)state;
    make_stream(NULL);
    /* Nothing queued: the bytes reach the kernel inside the call. */
    assert_int_equal(CALL(ae_stream_write(F->s, "now", 3)), 0);
    assert_int_equal(peer_pending(F->fd[1]), 3);
    struct iovec iov[2] = {{"ab", 2}, {"cd", 2}};
    assert_int_equal(CALL(ae_stream_writev(F->s, iov, 2)), 0);
    assert_int_equal(peer_pending(F->fd[1]), 7);
    assert_int_equal(ae_stream_queued(F->s), 0);
    char buf[8] = {0};
    assert_int_equal(recv(F->fd[1], buf, 7, 0), 7);
    assert_string_equal(buf, "nowabcd");
    assert_int_equal(F->nevents, 0);
    assert_no_failure();
}

static void done_count(void *data, void *arg)
{
    (void)data;
    (void)arg;
    in_callback("a write_ref done");
    F->done_calls++;
}

/* Writes of every kind, interleaved, past what the kernel takes: never
 * reordered, and DRAIN once the queue falls to wbuf_low. */
static void test_write_order_and_drain(void **state)
{
    (void)state;
    int sz = 4096;
    setsockopt(F->fd[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
    ae_stream_opts o = {.wbuf_high = 32 * 1024, .wbuf_low = 1024};
    make_stream(&o);
    enum { TOTAL = 300000 };
    static unsigned char expect[TOTAL];
    static unsigned char refmem[TOTAL];
    for (size_t i = 0; i < TOTAL; i++)
        expect[i] = refmem[i] = (unsigned char)(i * 7 + i / 251);
    size_t off = 0;
    int saw_high = 0, refs = 0;
    for (int k = 0; off < TOTAL; k++) {
        size_t n = (size_t)(k * 37 % 4000) + 1;
        if (n > TOTAL - off)
            n = TOTAL - off;
        int rc;
        if (k % 3 == 0) {
            rc = CALL(ae_stream_write(F->s, expect + off, n));
        } else if (k % 3 == 1) {
            size_t h = n / 2;
            struct iovec iov[2] = {{expect + off, h}, {expect + off + h, n - h}};
            rc = CALL(ae_stream_writev(F->s, iov, 2));
        } else {
            rc = CALL(ae_stream_write_ref(F->s, refmem + off, n, done_count, NULL));
            refs++;
        }
        assert_true(rc == 0 || rc == 1);
        saw_high |= rc == 1;
        off += n;
    }
    assert_true(saw_high);
    assert_true(ae_stream_queued(F->s) > 0);
    assert_int_equal(F->done_calls, 0); /* never inside the calls */
    static unsigned char got[TOTAL];
    size_t have = 0;
    while (have < TOTAL) {
        ssize_t r = recv(F->fd[1], got + have, TOTAL - have, MSG_DONTWAIT);
        if (r > 0)
            have += (size_t)r;
        else
            run_once();
    }
    WAIT(!(count_event(AE_STREAM_DRAIN) < 1 || F->done_calls < refs));
    run_for(0.02);
    assert_memory_equal(got, expect, TOTAL);
    assert_int_equal(count_event(AE_STREAM_DRAIN), 1);
    assert_int_equal(F->nevents, 1);
    assert_int_equal(F->done_calls, refs);
    assert_int_equal(ae_stream_queued(F->s), 0);
    assert_no_failure();
}

static void test_wbuf_max(void **state)
{
    (void)state;
    int sz = 4096;
    setsockopt(F->fd[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
    ae_stream_opts o = {.wbuf_high = 8192, .wbuf_max = 10000};
    make_stream(&o);
    static char big[100000];
    int rc = CALL(ae_stream_write(F->s, big, sizeof big));
    assert_int_equal(rc, AE_ELIMIT);
    assert_int_equal(F->nevents, 0);
    WAIT(F->nevents >= 1);
    assert_int_equal(F->events[0], AE_STREAM_ERROR);
    assert_int_equal(F->errs[0], ENOSPC);
    assert_int_equal(CALL(ae_stream_write(F->s, "x", 1)), AE_ESTATE);
    assert_no_failure();
}

/* A write the kernel refuses is an event in a later iteration. */
static void test_write_epipe(void **state)
{
    (void)state;
    make_stream(NULL);
    close(F->fd[1]);
    F->fd[1] = -1;
    int rc = CALL(ae_stream_write_ref(F->s, "x", 1, done_count, NULL));
    assert_int_equal(rc, 0);
    assert_int_equal(F->nevents, 0);
    assert_int_equal(F->done_calls, 0);
    WAIT(!(F->nevents < 1 || F->done_calls < 1));
    assert_int_equal(F->events[0], AE_STREAM_ERROR);
    assert_int_equal(F->errs[0], EPIPE);
    assert_int_equal(F->done_calls, 1);
    assert_no_failure();
}

static void test_write_ref_done_on_free(void **state)
{
    (void)state;
    int sz = 4096;
    setsockopt(F->fd[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
    make_stream(NULL);
    static char big[200000];
    /* Written at once: done from the loop, not from the call. */
    assert_int_equal(CALL(ae_stream_write_ref(F->s, "a", 1, done_count, NULL)), 0);
    assert_int_equal(F->done_calls, 0);
    WAIT(F->done_calls >= 1);
    /* Queued, then the stream freed from outside: done still runs once, from the loop. */
    CALL(ae_stream_write_ref(F->s, big, sizeof big, done_count, NULL));
    CALL(ae_stream_write_ref(F->s, big, 10, done_count, NULL));
    assert_true(ae_stream_queued(F->s) > 0);
    CALLV(ae_stream_free(F->s));
    F->s = NULL;
    assert_int_equal(F->done_calls, 1);
    WAIT(F->done_calls >= 3);
    run_for(0.02);
    assert_int_equal(F->done_calls, 3);
    assert_no_failure();
}

static void test_shutdown(void **state)
{
    (void)state;
    int sz = 4096;
    setsockopt(F->fd[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
    make_stream(NULL);
    static char big[100000];
    memset(big, 'q', sizeof big);
    assert_true(CALL(ae_stream_write(F->s, big, sizeof big)) >= 0);
    assert_int_equal(CALL(ae_stream_shutdown(F->s)), 0);
    assert_int_equal(CALL(ae_stream_write(F->s, "x", 1)), AE_ESTATE);
    static char got[100001];
    size_t have = 0;
    for (;;) {
        ssize_t r = recv(F->fd[1], got + have, sizeof got - have, MSG_DONTWAIT);
        if (r > 0) {
            have += (size_t)r;
            continue;
        }
        if (r == 0)
            break; /* FIN after the whole queue */
        run_once();
    }
    assert_int_equal(have, sizeof big);
    assert_memory_equal(got, big, sizeof big);
    assert_no_failure();
}

/* ---- timeouts ------------------------------------------------------------- */

static void test_rtimeout(void **state)
{
    (void)state;
    ae_stream_opts o = {.rtimeout = 0.05};
    make_stream(&o);
    /* Not reading: no read timeout. */
    run_for(0.12);
    assert_int_equal(F->nevents, 0);
    assert_int_equal(CALL(ae_stream_read(F->s, AE_LINE(NULL), on_data, NULL)), 0);
    double t0 = ae_now(F->loop); /* the read timeout counts from the loop's time */
    WAIT(F->nevents >= 2);
    double took = ae_time() - t0;
    assert_int_equal(F->events[0], AE_STREAM_RTIMEOUT);
    assert_int_equal(F->errs[0], ETIMEDOUT);
    assert_int_equal(F->events[1], AE_STREAM_RTIMEOUT); /* re-armed by returning */
    assert_true(took >= 0.095);
    /* Reads keep it quiet: a byte every 10 ms for 100 ms. A timeout can still
     * come when this process stalls (nothing is written then either), but
     * never sooner than rtimeout after the last byte. */
    F->nevents = 0;
    for (int i = 0; i < 10; i++) {
        F->last_put = ae_time();
        peer_puts("x");
        run_for(0.01);
    }
    WAIT(F->nevents >= 1);
    for (int i = 0; i < F->nevents; i++)
        assert_true(F->event_time[i] - F->put_then[i] >= 0.05 - 0.001);
    assert_no_failure();
}

static void test_timeout_any(void **state)
{
    (void)state;
    ae_stream_opts o = {.timeout = 0.05};
    make_stream(&o);
    F->free_in = AE_STREAM_TIMEOUT; /* and free it from the callback */
    WAIT(F->nevents >= 1);
    assert_int_equal(F->events[0], AE_STREAM_TIMEOUT);
    assert_int_equal(F->errs[0], ETIMEDOUT);
    assert_null(F->s);
    assert_no_failure();
}

static void test_wtimeout(void **state)
{
    (void)state;
    int sz = 4096;
    setsockopt(F->fd[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
    ae_stream_opts o = {.wtimeout = 0.05};
    make_stream(&o);
    run_for(0.1);
    assert_int_equal(F->nevents, 0); /* nothing queued: no write timeout */
    static char big[200000];
    CALL(ae_stream_write(F->s, big, sizeof big));
    assert_true(ae_stream_queued(F->s) > 0);
    WAIT(F->nevents >= 1);
    assert_int_equal(F->events[0], AE_STREAM_WTIMEOUT);
    assert_int_equal(F->errs[0], ETIMEDOUT);
    assert_no_failure();
}

/* ---- closing and freeing -------------------------------------------------- */

static void test_close_linger_flushes(void **state)
{
    (void)state;
    int sz = 4096;
    setsockopt(F->fd[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
    make_stream(NULL);
    static char big[100000];
    memset(big, 'z', sizeof big);
    CALL(ae_stream_write(F->s, big, sizeof big));
    assert_int_equal(CALL(ae_stream_close(F->s, 5)), 0);
    F->s = NULL;
    F->fd[0] = -1; /* the stream closes it */
    static char got[100001];
    size_t have = 0;
    for (;;) {
        ssize_t r = recv(F->fd[1], got + have, sizeof got - have, MSG_DONTWAIT);
        if (r > 0) {
            have += (size_t)r;
            continue;
        }
        if (r == 0)
            break;
        run_once();
    }
    assert_int_equal(have, sizeof big);
    assert_int_equal(F->nevents, 0); /* no callback during the linger */
    assert_no_failure();
}

static void test_close_linger_expires(void **state)
{
    (void)state;
    int sz = 4096;
    setsockopt(F->fd[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
    make_stream(NULL);
    static char big[100000];
    CALL(ae_stream_write(F->s, big, sizeof big));
    int fd = F->fd[0];
    assert_int_equal(CALL(ae_stream_close(F->s, 0.05)), 0);
    F->s = NULL;
    F->fd[0] = -1;
    assert_true(fcntl(fd, F_GETFD) >= 0); /* still lingering */
    run_for(0.15);
    assert_true(fcntl(fd, F_GETFD) < 0); /* closed when the linger ran out */
    assert_int_equal(F->nevents, 0);
    assert_no_failure();
}

static void test_free_keeps_fd(void **state)
{
    (void)state;
    make_stream(NULL);
    CALLV(ae_stream_free(F->s));
    F->s = NULL;
    assert_true(fcntl(F->fd[0], F_GETFD) >= 0);
    ae_stream_opts o = {.flags = AE_STREAM_CLOSE_FD};
    make_stream(&o);
    CALLV(ae_stream_free(F->s));
    F->s = NULL;
    assert_true(fcntl(F->fd[0], F_GETFD) < 0);
    F->fd[0] = -1;
    assert_no_failure();
}

static void test_free_in_data_cb(void **state)
{
    (void)state;
    make_stream(NULL);
    F->free_in = -1;
    peer_puts("a\nb\n");
    CALL(ae_stream_read(F->s, AE_LINE(NULL), on_data, NULL));
    CALL(ae_stream_read(F->s, AE_LINE(NULL), on_data, NULL));
    WAIT(F->ndata);
    run_for(0.02);
    assert_null(F->s);
    assert_int_equal(data_count(), 1);
    assert_no_failure();
}

static void test_free_in_eof_and_error(void **state)
{
    (void)state;
    make_stream(NULL);
    F->free_in = AE_STREAM_EOF;
    shutdown(F->fd[1], SHUT_WR);
    struct consumer c = {.take = 10, .partial = 1};
    CALL(ae_stream_on_read(F->s, consume, &c));
    WAIT(F->nevents);
    assert_null(F->s);
    F->nevents = 0;
    make_stream(NULL);
    F->free_in = AE_STREAM_ERROR;
    CALL(ae_stream_read(F->s, AE_LINE(NULL), on_data, NULL));
    WAIT(F->nevents);
    assert_null(F->s);
    assert_int_equal(F->events[0], AE_STREAM_ERROR);
    assert_no_failure();
}

static void test_free_in_drain(void **state)
{
    (void)state;
    int sz = 4096;
    setsockopt(F->fd[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
    make_stream(NULL);
    F->free_in = AE_STREAM_DRAIN;
    static char big[50000];
    CALL(ae_stream_write(F->s, big, sizeof big));
    CALL(ae_stream_write_ref(F->s, big, 10, done_count, NULL));
    char sink[65536];
    while (!F->nevents) {
        (void)!recv(F->fd[1], sink, sizeof sink, MSG_DONTWAIT);
        run_once();
    }
    assert_null(F->s);
    WAIT(F->done_calls >= 1);
    assert_int_equal(F->done_calls, 1);
    assert_no_failure();
}

static size_t frame_free(ae_stream *s, const char *data, size_t len, int eof, void *arg)
{
    (void)data, (void)eof, (void)arg;
    ae_stream_free(s);
    F->s = NULL;
    return len;
}

static void test_free_in_frame(void **state)
{
    (void)state;
    make_stream(NULL);
    peer_puts("abc");
    CALL(ae_stream_read(F->s, AE_FRAMED(frame_free, NULL), on_data, NULL));
    WAIT(!F->s);
    run_for(0.02);
    assert_int_equal(data_count(), 0);
    assert_int_equal(F->nevents, 0);
    assert_no_failure();
}

/* Two streams, each end of a socketpair: an echo of lines. */
struct echo {
    ae_stream *a, *b;
    int lines;
};

static void echo_event(ae_stream *s, int what, int err, void *arg)
{
    (void)s;
    (void)arg;
    in_callback("an echo event");
    failure("echo: unexpected event %d err %d", what, err);
}

static void echo_line(ae_stream *s, const char *data, size_t len, void *arg)
{
    struct echo *e = arg;
    if (s == e->b) { /* the server: send it back */
        ae_stream_write(s, data, len);
        ae_stream_write(s, "\n", 1);
        ae_stream_read(s, AE_LINE(NULL), echo_line, e);
        return;
    }
    e->lines++;
    if (e->lines < 1000) {
        char line[32];
        int n = snprintf(line, sizeof line, "%d\n", e->lines);
        ae_stream_write(s, line, (size_t)n);
        ae_stream_read(s, AE_LINE(NULL), echo_line, e);
    }
}

static void test_echo_pair(void **state)
{
    (void)state;
    struct echo e = {0};
    e.a = CALL(ae_stream_new(F->loop, F->fd[0], NULL, echo_event, &e));
    e.b = CALL(ae_stream_new(F->loop, F->fd[1], NULL, echo_event, &e));
    assert_non_null(e.a);
    assert_non_null(e.b);
    CALL(ae_stream_read(e.b, AE_LINE(NULL), echo_line, &e));
    CALL(ae_stream_read(e.a, AE_LINE(NULL), echo_line, &e));
    CALL(ae_stream_write(e.a, "0\n", 2));
    WAIT(!(e.lines < 1000 && !F->failures));
    ae_stream_free(e.a);
    ae_stream_free(e.b);
    assert_int_equal(e.lines, 1000);
    assert_no_failure();
}

static size_t heap_in_use(void)
{
    struct mallinfo2 m = mallinfo2();
    return m.uordblks + m.hblkhd;
}

/* A stream waiting for input holds no read memory: it reads into the loop's
 * shared buffer and gives it back once its callbacks returned (it kept a
 * 16 KiB buffer per idle connection before). Measured from the allocator:
 * under sanitizers and valgrind mallinfo2 may see nothing, which passes. */
static void test_idle_holds_no_read_buffer(void **state)
{
    (void)state;
    make_stream(NULL);
    peer_puts("first\n");
    assert_int_equal(CALL(ae_stream_read(F->s, AE_LINE(NULL), on_data, NULL)), 0);
    WAIT(data_count() >= 1);
    assert_int_equal(CALL(ae_stream_read(F->s, AE_LINE(NULL), on_data, NULL)), 0);
    size_t before = heap_in_use(); /* the shared buffer exists now */
    peer_puts("second\n");
    WAIT(data_count() >= 2);
    assert_int_equal(CALL(ae_stream_read(F->s, AE_LINE(NULL), on_data, NULL)), 0);
    /* A partial line is kept in memory of the stream's own, just its size. */
    peer_puts("thi");
    for (int i = 0; i < 3; i++)
        run_once();
    size_t after = heap_in_use();
    assert_true(after < before + 4096);
    peer_puts("rd\n");
    WAIT(data_count() >= 3);
    assert_string_equal(F->data[1], "second");
    assert_string_equal(F->data[2], "third");
    assert_no_failure();
}

struct nest {
    ae_stream *b;
    int b_lines, a_lines;
};

static void nest_event(ae_stream *s, int what, int err, void *arg)
{
    (void)s, (void)arg;
    failure("stream b: event %d err %d", what, err);
}

static void nest_b_line(ae_stream *s, const char *data, size_t len, void *arg)
{
    (void)s;
    in_callback("b's data callback");
    if (len != 6 || memcmp(data, "from b", 6) != 0)
        failure("b got \"%.*s\"", (int)len, data);
    ((struct nest *)arg)->b_lines++;
}

/* Stream a's callback runs the loop, in which b reads: the shared buffer is
 * a's until its callback returns, so b reads into memory of its own, and
 * a's data stays as it was. */
static void nest_a_line(ae_stream *s, const char *data, size_t len, void *arg)
{
    (void)s;
    struct nest *n = arg;
    in_callback("a's data callback");
    if (ae_stream_read(n->b, AE_LINE(NULL), nest_b_line, n) < 0)
        failure("ae_stream_read(b): %s", ae_last_error());
    double until = ae_time() + 5;
    while (!n->b_lines && ae_time() < until)
        if (ae_run_once(F->loop, 0) < 0)
            break; /* a loop that cannot run inside its callbacks: b reads later */
    if (len != 6 || memcmp(data, "from a", 6) != 0)
        failure("a got \"%.*s\" after the nested loop", (int)len, data);
    n->a_lines++;
}

static void test_nested_loop_reads(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    struct nest n = {0};
    make_stream(NULL);
    n.b = CALL(ae_stream_new(F->loop, sv[0], NULL, nest_event, &n));
    assert_non_null(n.b);
    assert_int_equal(write(sv[1], "from b\n", 7), 7);
    peer_puts("from a\n");
    assert_int_equal(CALL(ae_stream_read(F->s, AE_LINE(NULL), nest_a_line, &n)), 0);
    WAIT(n.a_lines == 1 && n.b_lines == 1);
    ae_stream_free(n.b);
    close(sv[0]);
    close(sv[1]);
    assert_no_failure();
}

/* Work a call makes due (here: a request that buffered lines satisfy) is
 * served from the loop's wake list, in the order the streams joined it; a
 * stream freed while on it, from outside or from the callback of a stream
 * served before it in the same pass, gets no callback and is not touched
 * (ASan, valgrind). */
struct wake {
    ae_stream *s[3];
    int sv[3][2];
    int order[8], n;
    int free_idx; /* a data callback frees this stream (-1: none) */
};

static void wake_event(ae_stream *s, int what, int err, void *arg)
{
    (void)s, (void)arg;
    failure("wake: event %d err %d", what, err);
}

static void wake_line(ae_stream *s, const char *data, size_t len, void *arg)
{
    struct wake *w = arg;
    in_callback("a data callback");
    int i = len == 1 ? data[0] - '0' : -1;
    if (i < 0 || i > 2 || w->s[i] != s) {
        failure("wake: line \"%.*s\" on the wrong stream", (int)len, data);
        return;
    }
    if (w->n < 8)
        w->order[w->n++] = i;
    if (w->free_idx >= 0) {
        ae_stream_free(w->s[w->free_idx]);
        w->s[w->free_idx] = NULL;
        w->free_idx = -1;
    }
}

static void test_wake_order_and_free(void **state)
{
    (void)state;
    struct wake w = {.free_idx = -1};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, w.sv[i]), 0);
        w.s[i] = CALL(ae_stream_new(F->loop, w.sv[i][0], NULL, wake_event, &w));
        assert_non_null(w.s[i]);
        char lines[] = "0\n0\n0\n";
        lines[0] = lines[2] = lines[4] = (char)('0' + i);
        assert_int_equal(write(w.sv[i][1], lines, 6), 6);
        assert_int_equal(CALL(ae_stream_read(w.s[i], AE_LINE(NULL), wake_line, &w)), 0);
    }
    WAIT(w.n == 3); /* each read its three lines at once: two stay buffered */
    w.n = 0;
    const int joined[3] = {2, 0, 1};
    for (int k = 0; k < 3; k++)
        assert_int_equal(CALL(ae_stream_read(w.s[joined[k]], AE_LINE(NULL), wake_line, &w)), 0);
    assert_int_equal(w.n, 0); /* no callback inside the calls */
    WAIT(w.n == 3);
    for (int k = 0; k < 3; k++)
        assert_int_equal(w.order[k], joined[k]);
    /* All three join again; 1 is freed now, 2 by 0's callback. */
    w.n = 0;
    for (int i = 0; i < 3; i++)
        assert_int_equal(CALL(ae_stream_read(w.s[i], AE_LINE(NULL), wake_line, &w)), 0);
    CALLV(ae_stream_free(w.s[1]));
    w.s[1] = NULL;
    w.free_idx = 2;
    WAIT(w.n >= 1);
    run_for(0.02);
    assert_int_equal(w.n, 1);
    assert_int_equal(w.order[0], 0);
    assert_null(w.s[2]);
    ae_stream_free(w.s[0]);
    for (int i = 0; i < 3; i++) {
        close(w.sv[i][0]);
        close(w.sv[i][1]);
    }
    assert_no_failure();
}

/* The timeouts of a loop's streams share one timer (a heap by deadline):
 * three streams whose read timeouts start in the same iteration report in
 * the order of their deadlines however late the loop looks (the deadlines
 * count from that iteration's ae_now); one freed by an earlier one's timeout
 * callback while its deadline waits in the heap never reports; the one left
 * is re-armed by returning and reports again; a stream without a timeout
 * made meanwhile changes nothing. */
struct tmo {
    ae_stream *s[3];
    int sv[3][2];
    int order[8], n;
};

static void tmo_event(ae_stream *s, int what, int err, void *arg)
{
    struct tmo *t = arg;
    in_callback("an event callback");
    int i = s == t->s[0] ? 0 : s == t->s[1] ? 1 : s == t->s[2] ? 2 : -1;
    if (i < 0 || what != AE_STREAM_RTIMEOUT || err != ETIMEDOUT) {
        failure("tmo: event %d err %d on stream %d", what, err, i);
        return;
    }
    if (t->n < 8)
        t->order[t->n++] = i;
    if (i == 1 && t->s[0]) { /* 1 comes first and frees 0, whose deadline is later */
        ae_stream_free(t->s[0]);
        t->s[0] = NULL;
    }
}

static void tmo_line(ae_stream *s, const char *data, size_t len, void *arg)
{
    (void)s, (void)data, (void)len, (void)arg;
    failure("tmo: data");
}

static void test_timeouts_share_loop_heap(void **state)
{
    (void)state;
    struct tmo t = {0};
    const double rt[3] = {0.06, 0.02, 0.03}; /* 1 again no sooner than 0.04 */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, t.sv[i]), 0);
        ae_stream_opts o = {.rtimeout = rt[i]};
        t.s[i] = CALL(ae_stream_new(F->loop, t.sv[i][0], &o, tmo_event, &t));
        assert_non_null(t.s[i]);
    }
    for (int i = 0; i < 3; i++)
        assert_int_equal(CALL(ae_stream_read(t.s[i], AE_LINE(NULL), tmo_line, &t)), 0);
    make_stream(NULL); /* no timeout: no deadline */
    WAIT(t.n >= 3);
    assert_int_equal(t.order[0], 1);
    assert_int_equal(t.order[1], 2);
    assert_null(t.s[0]);
    for (int k = 2; k < t.n; k++) /* after 1 and 2, only they report again */
        assert_true(t.order[k] == 1 || t.order[k] == 2);
    assert_int_equal(F->nevents, 0);
    for (int i = 0; i < 3; i++) {
        if (t.s[i])
            ae_stream_free(t.s[i]);
        close(t.sv[i][0]);
        close(t.sv[i][1]);
    }
    assert_no_failure();
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        T(test_bad_input),
        T(test_lines),
        T(test_kinds_each),
        T(test_order),
        T(test_order_inside),
        T(test_reading_stops),
        T(test_eof_epipe),
        T(test_eof_half_close),
        T(test_eof_event_then_write),
        T(test_on_read),
        T(test_on_read_eof_clean),
        T(test_on_read_unset),
        T(test_badmsg),
        T(test_prefixed_max),
        T(test_rbuf_max),
        T(test_write_through),
        T(test_write_order_and_drain),
        T(test_wbuf_max),
        T(test_write_epipe),
        T(test_write_ref_done_on_free),
        T(test_shutdown),
        T(test_rtimeout),
        T(test_timeout_any),
        T(test_wtimeout),
        T(test_close_linger_flushes),
        T(test_close_linger_expires),
        T(test_free_keeps_fd),
        T(test_free_in_data_cb),
        T(test_free_in_eof_and_error),
        T(test_free_in_drain),
        T(test_free_in_frame),
        T(test_echo_pair),
        T(test_idle_holds_no_read_buffer),
        T(test_nested_loop_reads),
        T(test_wake_order_and_free),
        T(test_timeouts_share_loop_heap),
    };
    return harness_run(argc, argv, tests, sizeof tests / sizeof tests[0], "stream");
}
