/*
 * The libuv twin of ae-stream-bench: the same ping-pong on uv_pipe_t streams
 * (uv_read_start with one 64 KiB buffer per end, never a malloc per read;
 * uv_write with a request per end, as ping-pong allows). libuv has no line
 * or length reader: the read callback counts bytes ("exact") or looks for
 * the newline ("line") itself.
 *
 * Usage: ae-stream-bench-libuv MODE SIZE COUNT   (MODE exact|line)
 *
 * And the conns workload (conns.h) on one uv_tcp_t per connection (reads
 * into one buffer shared by all, as the io server does; the reply is what
 * was read, with uv_try_write), the read timeout a uv_timer_t per
 * connection restarted on every read:
 *        ae-stream-bench-libuv conns N REQUESTS RTIMEOUT
 */
#include <stddef.h>
#include <sys/socket.h>
#include <uv.h>

#include "conns.h"
#include "count.h"

static long size, count, done;
static char *msg;
static int line_mode;

struct end {
    uv_pipe_t pipe;
    uv_write_t req;
    char buf[65536];
    size_t have;
    int is_client;
};

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)hint;
    struct end *e = h->data;
    *buf = uv_buf_init(e->buf + e->have, (unsigned)(sizeof e->buf - e->have));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    (void)buf;
    struct end *e = s->data;
    if (n < 0) {
        fprintf(stderr, "read: %s\n", uv_strerror((int)n));
        exit(1);
    }
    e->have += (size_t)n;
    for (;;) {
        size_t take;
        if (line_mode) {
            char *nl = memchr(e->buf, '\n', e->have);
            if (!nl)
                return;
            take = (size_t)(nl - e->buf) + 1;
        } else {
            if (e->have < (size_t)size)
                return;
            take = (size_t)size;
        }
        memmove(e->buf, e->buf + take, e->have - take);
        e->have -= take;
        if (e->is_client && ++done == count) {
            uv_read_stop(s);
            uv_stop(s->loop);
            return;
        }
        uv_buf_t out = uv_buf_init(msg, (unsigned)size);
        uv_write(&e->req, s, &out, 1, NULL);
    }
}

/* ---- conns ---- */

struct uconn {
    uv_tcp_t tcp;
    uv_timer_t timer;
};

static uv_loop_t *uloop;
static struct uconn **uconns;
static long nuconns, capuconns, uclosing;
static uint64_t urtimeout_ms;
static char ushared[65536];

static void uconn_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)h, (void)hint;
    *buf = uv_buf_init(ushared, sizeof ushared);
}

static void uconn_timeout(uv_timer_t *t)
{
    (void)t;
    fprintf(stderr, "libuv server: a read timeout fired\n");
    exit(1);
}

static void uconn_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    if (n == 0)
        return;
    if (n < 0) {
        fprintf(stderr, "libuv server: %s\n", uv_strerror((int)n));
        exit(1);
    }
    struct uconn *c = s->data;
    if (urtimeout_ms)
        uv_timer_start(&c->timer, uconn_timeout, urtimeout_ms, 0);
    uv_buf_t out = uv_buf_init(buf->base, (unsigned)n);
    if (uv_try_write(s, &out, 1) != n) {
        fprintf(stderr, "libuv server: a short write\n");
        exit(1);
    }
    conns_served += (long)n;
}

static void uconn_add(int fd, long i, double rtimeout)
{
    if (nuconns == capuconns) {
        capuconns = capuconns ? 2 * capuconns : 1024;
        uconns = realloc(uconns, (size_t)capuconns * sizeof *uconns);
    }
    /* Without a timeout the timer's part is not allocated. */
    struct uconn *c = malloc(rtimeout > 0 ? sizeof *c : offsetof(struct uconn, timer));
    urtimeout_ms = (uint64_t)(rtimeout * 1000);
    uv_tcp_init(uloop, &c->tcp);
    if (uv_tcp_open(&c->tcp, i < 0 ? dup(fd) : fd) != 0)
        conns_die("uv_tcp_open");
    c->tcp.data = c;
    if (urtimeout_ms) {
        uv_timer_init(uloop, &c->timer);
        uv_timer_start(&c->timer, uconn_timeout, urtimeout_ms, 0);
    }
    uv_read_start((uv_stream_t *)&c->tcp, uconn_alloc, uconn_read);
    uconns[nuconns++] = c;
}

static void uconn_run_once(int nowait) { uv_run(uloop, nowait ? UV_RUN_NOWAIT : UV_RUN_ONCE); }

static void uconn_closed(uv_handle_t *h)
{
    (void)h;
    uclosing--;
}

static void uconn_free_all(void)
{
    for (long i = 0; i < nuconns; i++) {
        uclosing++;
        uv_close((uv_handle_t *)&uconns[i]->tcp, uconn_closed);
        if (urtimeout_ms) {
            uclosing++;
            uv_close((uv_handle_t *)&uconns[i]->timer, uconn_closed);
        }
    }
    while (uclosing)
        uv_run(uloop, UV_RUN_NOWAIT);
    for (long i = 0; i < nuconns; i++)
        free(uconns[i]);
    nuconns = 0;
}

static long count_allocs(void) { return allocs; }

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "conns") == 0) {
        uloop = uv_default_loop();
        struct conns_impl im = {"libuv", uconn_add, uconn_run_once, uconn_free_all, count_allocs, 1};
        int rc = conns_main(&im, atol(argv[2]), atol(argv[3]), atof(argv[4]));
        free(uconns);
        uv_loop_close(uloop);
        return rc;
    }
    if (argc != 4) {
        fprintf(stderr, "usage: %s exact|line SIZE COUNT\n", argv[0]);
        return 2;
    }
    line_mode = strcmp(argv[1], "line") == 0;
    size = atol(argv[2]);
    count = atol(argv[3]);
    uv_loop_t *loop = uv_default_loop();
    int sv[2];
    socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv);
    msg = malloc((size_t)size);
    memset(msg, 'x', (size_t)size);
    msg[size - 1] = '\n';
    static struct end a, b;
    a.is_client = 1;
    struct end *ends[2] = {&a, &b};
    for (int i = 0; i < 2; i++) {
        uv_pipe_init(loop, &ends[i]->pipe, 0);
        uv_pipe_open(&ends[i]->pipe, sv[i]);
        ends[i]->pipe.data = ends[i];
        uv_read_start((uv_stream_t *)&ends[i]->pipe, on_alloc, on_read);
    }
    double t0 = now_s(), c0 = cpu_s();
    long a0 = allocs;
    uv_buf_t out = uv_buf_init(msg, (unsigned)size);
    uv_write(&a.req, (uv_stream_t *)&a.pipe, &out, 1, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    double wall = now_s() - t0, cpu = cpu_s() - c0;
    report("libuv", argv[1], size, count, wall, cpu, allocs - a0);
    uv_close((uv_handle_t *)&a.pipe, NULL);
    uv_close((uv_handle_t *)&b.pipe, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    free(msg);
    return 0;
}
