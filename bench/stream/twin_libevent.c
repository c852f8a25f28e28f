/*
 * The bufferevent twin of ae-stream-bench: the same ping-pong on libevent's
 * bufferevents, written as libevent's documentation shows (a read low
 * watermark of one message for "exact"; evbuffer_readln for "line").
 *
 * Usage: ae-stream-bench-libevent MODE SIZE COUNT   (MODE exact|line)
 *
 * And the conns workload (conns.h) on one bufferevent per connection, lines
 * read with evbuffer_readln, the read timeout with bufferevent_set_timeouts:
 *        ae-stream-bench-libevent conns N REQUESTS RTIMEOUT
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <sys/socket.h>

#include "conns.h"
#include "count.h"

static long size, count, done;
static char *msg;
static int line_mode;
static struct event_base *base;

static void on_read(struct bufferevent *bev, void *arg)
{
    struct evbuffer *in = bufferevent_get_input(bev);
    for (;;) {
        if (line_mode) {
            size_t n;
            char *line = evbuffer_readln(in, &n, EVBUFFER_EOL_LF);
            if (!line)
                return;
            free(line);
        } else {
            if (evbuffer_get_length(in) < (size_t)size)
                return;
            evbuffer_drain(in, (size_t)size);
        }
        if (arg && ++done == count) {
            event_base_loopbreak(base);
            return;
        }
        bufferevent_write(bev, msg, (size_t)size);
    }
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev, (void)arg;
    fprintf(stderr, "bufferevent event %#x\n", what);
    exit(1);
}

/* ---- conns ---- */

static struct bufferevent **bevs;
static long nbevs, capbevs;

static void conn_read(struct bufferevent *bev, void *arg)
{
    (void)arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t len;
    char *line;
    while ((line = evbuffer_readln(in, &len, EVBUFFER_EOL_LF))) {
        char reply[REQ_LEN];
        memcpy(reply, line, len < REQ_LEN - 1 ? len : REQ_LEN - 1);
        reply[REQ_LEN - 1] = '\n';
        free(line);
        bufferevent_write(bev, reply, REQ_LEN);
        conns_served += REQ_LEN;
    }
}

static void conn_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev, (void)arg;
    fprintf(stderr, "bufferevent server: event %#x\n", what);
    exit(1);
}

static void bev_add(int fd, long i, double rtimeout)
{
    (void)i;
    if (nbevs == capbevs) {
        capbevs = capbevs ? 2 * capbevs : 1024;
        bevs = realloc(bevs, (size_t)capbevs * sizeof *bevs);
    }
    struct bufferevent *bev = bufferevent_socket_new(base, fd, 0);
    if (!bev)
        conns_die("bufferevent_socket_new");
    bufferevent_setcb(bev, conn_read, NULL, conn_event, NULL);
    if (rtimeout > 0) {
        struct timeval tv = {(time_t)rtimeout, (suseconds_t)((rtimeout - (double)(time_t)rtimeout) * 1e6)};
        bufferevent_set_timeouts(bev, &tv, NULL);
    }
    bufferevent_enable(bev, EV_READ);
    bevs[nbevs++] = bev;
}

static void bev_run_once(int nowait) { event_base_loop(base, nowait ? EVLOOP_NONBLOCK : EVLOOP_ONCE); }

static void bev_free_all(void)
{
    for (long i = 0; i < nbevs; i++)
        bufferevent_free(bevs[i]);
    nbevs = 0;
}

static long count_allocs(void) { return allocs; }

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "conns") == 0) {
        base = event_base_new();
        struct conns_impl im = {"bufferevent", bev_add, bev_run_once, bev_free_all, count_allocs, 0};
        int rc = conns_main(&im, atol(argv[2]), atol(argv[3]), atof(argv[4]));
        free(bevs);
        event_base_free(base);
        return rc;
    }
    if (argc != 4) {
        fprintf(stderr, "usage: %s exact|line SIZE COUNT\n", argv[0]);
        return 2;
    }
    line_mode = strcmp(argv[1], "line") == 0;
    size = atol(argv[2]);
    count = atol(argv[3]);
    base = event_base_new();
    int sv[2];
    socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv);
    msg = malloc((size_t)size);
    memset(msg, 'x', (size_t)size);
    msg[size - 1] = '\n';
    struct bufferevent *a = bufferevent_socket_new(base, sv[0], 0);
    struct bufferevent *b = bufferevent_socket_new(base, sv[1], 0);
    bufferevent_setcb(a, on_read, NULL, on_event, a);
    bufferevent_setcb(b, on_read, NULL, on_event, NULL);
    if (!line_mode) {
        bufferevent_setwatermark(a, EV_READ, (size_t)size, 0);
        bufferevent_setwatermark(b, EV_READ, (size_t)size, 0);
    }
    bufferevent_enable(a, EV_READ);
    bufferevent_enable(b, EV_READ);
    double t0 = now_s(), c0 = cpu_s();
    long a0 = allocs;
    bufferevent_write(a, msg, (size_t)size);
    event_base_dispatch(base);
    double wall = now_s() - t0, cpu = cpu_s() - c0;
    report("bufferevent", argv[1], size, count, wall, cpu, allocs - a0);
    bufferevent_free(a);
    bufferevent_free(b);
    event_base_free(base);
    free(msg);
    return 0;
}
