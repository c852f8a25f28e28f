/*
 * ae-stream-bench: ping-pong over a socketpair inside one loop, both ends
 * served by the same program, in three ways on anyevent: raw io watchers
 * with read()/write() ("raw"), and ae_stream with AE_EXACTLY ("exact") or
 * AE_LINE ("line") requests. Prints round trips per second, CPU time and
 * allocations per round trip; scripts/stream-bench.sh adds system calls per
 * message (strace -c) and runs the bufferevent and libuv twins.
 *
 * Mode "lines" instead sends COUNT lines of SIZE bytes one way (a raw
 * writer, 64 KiB per write) into one stream that reads them with one AE_LINE
 * request each: lines per second, CPU and allocations per line.
 *
 * Usage: ae-stream-bench BACKEND MODE SIZE COUNT   (MODE raw|exact|line|lines)
 *
 * The larger workloads are in scale.c:
 *        ae-stream-bench BACKEND bulk plain|raw|stream|stream-ref MIB
 *        ae-stream-bench BACKEND conns io|stream N REQUESTS RTIMEOUT
 *        ae-stream-bench BACKEND cmd true|print RUNS [plain|one|par]
 */
#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include <anyevent/stream.h>

#include "count.h"
#include "scale.h"

long bench_allocs(void) { return allocs; }

static long size, count, done;
static char *msg;

/* ---- raw watchers ------------------------------------------------------- */

struct raw_end {
    int fd;
    char buf[65536];
    size_t have;
    int is_client;
};

static void raw_cb(ae_watcher *w, int revents, void *arg)
{
    (void)revents;
    struct raw_end *e = arg;
    ssize_t n = read(e->fd, e->buf + e->have, (size_t)size - e->have);
    if (n <= 0) {
        if (n < 0 && errno == EAGAIN)
            return;
        fprintf(stderr, "read: %s\n", n ? strerror(errno) : "EOF");
        exit(1);
    }
    e->have += (size_t)n;
    if (e->have < (size_t)size)
        return;
    e->have = 0;
    if (e->is_client && ++done == count) {
        ae_watcher_free(w);
        return;
    }
    if (write(e->fd, msg, (size_t)size) != size) {
        fprintf(stderr, "write: short\n");
        exit(1);
    }
}

/* ---- streams ------------------------------------------------------------- */

static ae_rspec spec;

static void stream_event(ae_stream *s, int what, int err, void *arg)
{
    (void)s, (void)arg;
    fprintf(stderr, "stream event %d err %d: %s\n", what, err, ae_stream_error(s));
    exit(1);
}

static void on_message(ae_stream *s, const char *data, size_t len, void *arg)
{
    (void)data, (void)len;
    int is_client = arg != NULL;
    if (is_client && ++done == count)
        return; /* no new request: reading stops, the loop ends */
    ae_stream_write(s, msg, (size_t)size);
    ae_stream_read(s, spec, on_message, arg);
}

/* ---- one way: many lines --------------------------------------------- */

static char *chunk;
static size_t chunk_len, chunk_off;
static long lines_sent, lines_per_chunk;

static void on_writable(ae_watcher *w, int revents, void *arg)
{
    (void)revents;
    int fd = *(int *)arg;
    if (chunk_off == chunk_len) {
        if (lines_sent >= count) {
            ae_watcher_free(w);
            return;
        }
        long k = count - lines_sent < lines_per_chunk ? count - lines_sent : lines_per_chunk;
        chunk_len = (size_t)(k * size);
        chunk_off = 0;
        lines_sent += k;
    }
    ssize_t n = write(fd, chunk + chunk_off, chunk_len - chunk_off);
    if (n > 0)
        chunk_off += (size_t)n;
}

static void on_one_line(ae_stream *s, const char *data, size_t len, void *arg)
{
    (void)data, (void)len, (void)arg;
    if (++done < count)
        ae_stream_read(s, AE_LINE(NULL), on_one_line, NULL);
}

static int run_lines(ae_loop *loop, int sv[2], const char *backend)
{
    lines_per_chunk = 65536 / size;
    chunk = malloc((size_t)(lines_per_chunk * size));
    for (long i = 0; i < lines_per_chunk * size; i++)
        chunk[i] = (i + 1) % size == 0 ? '\n' : 'x';
    ae_stream *r = ae_stream_new(loop, sv[1], NULL, stream_event, NULL);
    ae_stream_read(r, AE_LINE(NULL), on_one_line, NULL);
    double t0 = now_s(), c0 = cpu_s();
    long a0 = allocs;
    ae_io(loop, sv[0], AE_WRITE, on_writable, &sv[0]);
    while (done < count)
        ae_run_once(loop, 0);
    double wall = now_s() - t0, cpu = cpu_s() - c0;
    long a = allocs - a0;
    printf("%-16s %-6s %6ld B %8ld lines %9.0f lines/s  %6.3f us-cpu/line  %5.3f allocs/line\n", backend, "lines",
           size, count, count / wall, cpu * 1e6 / (double)count, (double)a / (double)count);
    ae_stream_free(r);
    free(chunk);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[2], "bulk") == 0)
        return run_bulk(argv[1], argv[3], atol(argv[4]));
    if (argc == 7 && strcmp(argv[2], "conns") == 0)
        return run_conns(argv[1], argv[3], atol(argv[4]), atol(argv[5]), atof(argv[6]));
    if ((argc == 5 || argc == 6) && strcmp(argv[2], "cmd") == 0)
        return run_cmd(argv[1], argv[3], atol(argv[4]), argc == 6 ? argv[5] : NULL);
    if (argc != 5) {
        fprintf(stderr, "usage: %s BACKEND raw|exact|line|lines SIZE COUNT\n"
                        "       %s BACKEND bulk plain|raw|stream|stream-ref MIB\n"
                        "       %s BACKEND conns io|stream N REQUESTS RTIMEOUT\n"
                        "       %s BACKEND cmd true|print RUNS [plain|one|par]\n",
                argv[0], argv[0], argv[0], argv[0]);
        return 2;
    }
    const char *mode = argv[2];
    size = atol(argv[3]);
    count = atol(argv[4]);
    if (size < 1 || size > 65536 || count < 1)
        return 2;
    ae_loop *loop = ae_loop_new(argv[1]);
    if (!loop) {
        fprintf(stderr, "%s: %s\n", argv[1], ae_last_error());
        return 1;
    }
    int sv[2];
    socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv);
    msg = malloc((size_t)size);
    memset(msg, 'x', (size_t)size);
    msg[size - 1] = '\n';
    if (strcmp(mode, "lines") == 0) {
        char impl[64];
        snprintf(impl, sizeof impl, "ae-%s", argv[1]);
        run_lines(loop, sv, impl);
        ae_loop_free(loop);
        free(msg);
        return 0;
    }
    double t0, c0;
    long a0;
    if (strcmp(mode, "raw") == 0) {
        static struct raw_end cl, sv_end;
        cl = (struct raw_end){.fd = sv[0], .is_client = 1};
        sv_end = (struct raw_end){.fd = sv[1]};
        ae_watcher *wc = ae_io(loop, sv[0], AE_READ, raw_cb, &cl);
        ae_watcher *ws = ae_io(loop, sv[1], AE_READ, raw_cb, &sv_end);
        t0 = now_s(), c0 = cpu_s(), a0 = allocs;
        if (write(sv[0], msg, (size_t)size) != size)
            return 1;
        while (done < count)
            ae_run_once(loop, 0);
        (void)wc;
        ae_watcher_free(ws);
    } else {
        spec = strcmp(mode, "line") == 0 ? AE_LINE(NULL) : AE_EXACTLY((size_t)size);
        ae_stream *a = ae_stream_new(loop, sv[0], NULL, stream_event, NULL);
        ae_stream *b = ae_stream_new(loop, sv[1], NULL, stream_event, NULL);
        ae_stream_read(a, spec, on_message, a);
        ae_stream_read(b, spec, on_message, NULL);
        t0 = now_s(), c0 = cpu_s(), a0 = allocs;
        ae_stream_write(a, msg, (size_t)size);
        while (done < count)
            ae_run_once(loop, 0);
        ae_stream_free(a);
        ae_stream_free(b);
    }
    double wall = now_s() - t0, cpu = cpu_s() - c0;
    long a = allocs - a0;
    char impl[64];
    snprintf(impl, sizeof impl, "ae-%s", argv[1]);
    report(impl, mode, size, count, wall, cpu, a);
    ae_loop_free(loop);
    free(msg);
    return 0;
}
