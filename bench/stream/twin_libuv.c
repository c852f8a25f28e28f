/*
 * The libuv twin of ae-stream-bench: the same ping-pong on uv_pipe_t streams
 * (uv_read_start with one 64 KiB buffer per end, never a malloc per read;
 * uv_write with a request per end, as ping-pong allows). libuv has no line
 * or length reader: the read callback counts bytes ("exact") or looks for
 * the newline ("line") itself.
 *
 * Usage: ae-stream-bench-libuv MODE SIZE COUNT   (MODE exact|line)
 */
#include <sys/socket.h>
#include <uv.h>

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

int main(int argc, char **argv)
{
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
