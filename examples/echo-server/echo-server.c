/*
 * echo-server: a line echo server on ae_tcp_server + ae_stream, with an idle
 * timeout per connection.
 *
 * Every connection gets each line it sends back; a connection that sends
 * nothing for --idle seconds is told so and closed (a read timeout: no timer
 * work per line). A client that does not read what it is sent is cut off
 * once 1 MiB waits for it (wbuf_max), and lines longer than 64 KiB are
 * refused (rbuf_max).
 *
 * Usage: echo-server [--port P] [--host H] [--idle SECONDS]
 *   port 0 (the default): any free port, printed. Try: nc 127.0.0.1 PORT
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <anyevent/stream.h>

static double idle = 30;
static long connections, lines;

static void on_line(ae_stream *s, const char *line, size_t len, void *arg)
{
    lines++;
    struct iovec iov[2] = {{(void *)line, len}, {"\n", 1}};
    ae_stream_writev(s, iov, 2);
    ae_stream_read(s, AE_LINE(NULL), on_line, arg);
}

static void on_event(ae_stream *s, int what, int err, void *arg)
{
    (void)arg;
    switch (what) {
    case AE_STREAM_RTIMEOUT:
        ae_stream_write(s, "idle too long, bye\n", 19);
        ae_stream_close(s, 1); /* flush for up to 1 s, then close */
        break;
    case AE_STREAM_EOF:
        ae_stream_close(s, 5); /* what is still queued, then close */
        break;
    case AE_STREAM_ERROR:
        if (err != ECONNRESET && err != EPIPE)
            fprintf(stderr, "connection: %s\n", ae_stream_error(s));
        ae_stream_free(s);
        break;
    default:
        break;
    }
}

static void on_accept(ae_server *srv, int fd, const struct sockaddr *peer, socklen_t len, void *arg)
{
    (void)srv, (void)peer, (void)len;
    ae_loop *loop = arg;
    ae_stream_opts o = {
        .flags = AE_STREAM_CLOSE_FD | AE_STREAM_NODELAY,
        .rtimeout = idle,
        .rbuf_max = 64 * 1024,
        .wbuf_max = 1024 * 1024,
    };
    ae_stream *s = ae_stream_new(loop, fd, &o, on_event, NULL);
    if (!s) {
        fprintf(stderr, "ae_stream_new: %s\n", ae_last_error());
        close(fd);
        return;
    }
    connections++;
    ae_stream_read(s, AE_LINE(NULL), on_line, NULL);
}

static void on_signal(ae_watcher *w, int signum, void *arg)
{
    (void)w, (void)signum;
    ae_break(arg);
}

int main(int argc, char **argv)
{
    const char *host = NULL, *port = "0";
    static const struct option longopts[] = {
        {"port", required_argument, NULL, 'p'},
        {"host", required_argument, NULL, 'H'},
        {"idle", required_argument, NULL, 'i'},
        {NULL, 0, NULL, 0},
    };
    for (int c; (c = getopt_long(argc, argv, "p:H:i:", longopts, NULL)) != -1;) {
        if (c == 'p')
            port = optarg;
        else if (c == 'H')
            host = optarg;
        else if (c == 'i')
            idle = atof(optarg);
        else {
            fprintf(stderr, "usage: %s [--port P] [--host H] [--idle SECONDS]\n", argv[0]);
            return 2;
        }
    }
    ae_loop *loop = ae_loop_new(NULL);
    if (!loop) {
        fprintf(stderr, "ae_loop_new: %s\n", ae_last_error());
        return 1;
    }
    ae_server *srv = ae_tcp_server(loop, host, port, 0, on_accept, loop);
    if (!srv) {
        fprintf(stderr, "ae_tcp_server: %s\n", ae_last_error());
        return 1;
    }
    printf("echo-server on %s port %d (backend %s, idle timeout %g s); Ctrl-C ends it\n", host ? host : "*",
           ae_server_port(srv), ae_loop_backend(loop), idle);
    fflush(stdout);
    ae_watcher *sigint = ae_signal(loop, SIGINT, on_signal, loop);
    ae_watcher *sigterm = ae_signal(loop, SIGTERM, on_signal, loop);
    ae_run(loop);
    printf("%ld connections, %ld lines\n", connections, lines);
    ae_watcher_free(sigint);
    ae_watcher_free(sigterm);
    ae_server_free(srv);
    ae_loop_free(loop); /* and every connection still open */
    return 0;
}
