/*
 * http-fanout: the talk's example (four pages, 22.6 s one after another, 3.8 s
 * all at once) with a tiny HTTP/1.0 client on ae_stream_connect().
 *
 * It starts a local HTTP server in the same process (ae_tcp_server on
 * 127.0.0.1, any free port) that answers every request after --delay
 * seconds, then fetches N pages from it twice:
 *
 *   one at a time  each request started, then waited for on its own condvar
 *                  before the next one starts (what a blocking client does);
 *   all at once    every request started, each with ae_cv_begin() on one
 *                  condvar and ae_cv_end() when its page is complete, then
 *                  one ae_cv_recv() waits for all of them.
 *
 * and prints both wall times and the speed-up: about N x delay against
 * about delay.
 *
 * Usage: http-fanout [-n N] [--delay SECONDS]
 * The backend is the default one: ANYEVENT_BACKEND=libuv (poll, libev, ...)
 * chooses another.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <anyevent/stream.h>

static double delay = 0.5;

/* ---- the server: answers after the delay ------------------------------- */

struct request {
    ae_loop *loop;
    ae_stream *s;
    ae_watcher *timer;
    char path[64];
};

static void request_free(struct request *r)
{
    ae_watcher_free(r->timer);
    free(r);
}

static void on_server_event(ae_stream *s, int what, int err, void *arg)
{
    (void)err;
    if (what == AE_STREAM_ERROR || what == AE_STREAM_EOF) {
        ae_stream_free(s);
        request_free(arg);
    }
}

static void answer(ae_watcher *w, void *arg)
{
    (void)w;
    struct request *r = arg;
    char page[256];
    int body = snprintf(page, sizeof page, "<html><body>page %s</body></html>\n", r->path);
    char head[128];
    int n = snprintf(head, sizeof head, "HTTP/1.0 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n",
                     body);
    ae_stream_write(r->s, head, (size_t)n);
    ae_stream_write(r->s, page, (size_t)body);
    ae_stream_close(r->s, 5); /* HTTP/1.0: the end of the body is the close */
    request_free(r);
}

static void on_request_head(ae_stream *s, const char *data, size_t len, void *arg)
{
    struct request *r = arg;
    /* "GET /path HTTP/1.0": keep the path. */
    const char *sp = memchr(data, ' ', len);
    if (sp) {
        const char *end = memchr(sp + 1, ' ', len - (size_t)(sp + 1 - data));
        size_t n = end ? (size_t)(end - sp - 1) : 0;
        snprintf(r->path, sizeof r->path, "%.*s", (int)n, sp + 1);
    }
    (void)s;
    r->timer = ae_timer(r->loop, delay, 0, answer, r);
    if (!r->timer) {
        fprintf(stderr, "server: %s\n", ae_last_error());
        ae_stream_free(s);
        request_free(r);
    }
}

static void on_accept(ae_server *srv, int fd, const struct sockaddr *peer, socklen_t len, void *arg)
{
    (void)srv, (void)peer, (void)len;
    ae_loop *loop = arg;
    struct request *r = calloc(1, sizeof *r);
    ae_stream_opts o = {.flags = AE_STREAM_CLOSE_FD, .rtimeout = 10};
    if (!r || !(r->s = ae_stream_new(loop, fd, &o, on_server_event, r))) {
        fprintf(stderr, "server: %s\n", r ? ae_last_error() : "out of memory");
        free(r);
        close(fd);
        return;
    }
    r->loop = loop;
    /* The request head ends with an empty line. */
    ae_stream_read(r->s, AE_LINE("\r\n\r\n"), on_request_head, r);
}

/* ---- the client: one GET per stream ----------------------------------- */

struct fetch {
    ae_cv *cv; /* ae_cv_end() on it when the page is complete */
    size_t bytes;
    int status;
    char error[128];
};

static size_t on_body(ae_stream *s, const char *data, size_t len, int eof, void *arg)
{
    (void)s, (void)data, (void)eof;
    struct fetch *f = arg;
    f->bytes += len;
    return len;
}

static void on_status(ae_stream *s, const char *data, size_t len, void *arg)
{
    (void)s;
    struct fetch *f = arg;
    if (len > 9 && memcmp(data, "HTTP/1.", 7) == 0)
        f->status = atoi(data + 9);
}

static void on_client_event(ae_stream *s, int what, int err, void *arg)
{
    struct fetch *f = arg;
    if (what == AE_STREAM_EOF || what == AE_STREAM_ERROR) {
        if (what == AE_STREAM_ERROR)
            snprintf(f->error, sizeof f->error, "%s (errno %d)", ae_stream_error(s), err);
        ae_stream_free(s);
        ae_cv_end(f->cv);
    }
}

static int fetch_start(ae_loop *loop, int port, int i, struct fetch *f)
{
    char service[16], req[64];
    snprintf(service, sizeof service, "%d", port);
    int n = snprintf(req, sizeof req, "GET /%d HTTP/1.0\r\n\r\n", i);
    ae_stream *s = ae_stream_connect(loop, "127.0.0.1", service, NULL, NULL, on_client_event, f);
    if (!s)
        return -1;
    ae_cv_begin(f->cv);
    /* Queued while connecting: the request, the status line, the rest of
     * the head, then the body until EOF (simple mode). */
    ae_stream_write(s, req, (size_t)n);
    ae_stream_read(s, AE_LINE(NULL), on_status, f);
    ae_stream_read(s, AE_LINE("\r\n\r\n"), on_status, f);
    ae_stream_on_read(s, on_body, f);
    return 0;
}

static int check(struct fetch *f, int i)
{
    if (f->error[0] || f->status != 200) {
        fprintf(stderr, "page %d: status %d %s\n", i, f->status, f->error);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    int n = 4;
    static const struct option longopts[] = {{"delay", required_argument, NULL, 'd'}, {NULL, 0, NULL, 0}};
    for (int c; (c = getopt_long(argc, argv, "n:d:", longopts, NULL)) != -1;) {
        if (c == 'n')
            n = atoi(optarg);
        else if (c == 'd')
            delay = atof(optarg);
        else {
            fprintf(stderr, "usage: %s [-n N] [--delay SECONDS]\n", argv[0]);
            return 2;
        }
    }
    if (n < 1 || n > 1000 || delay < 0) {
        fprintf(stderr, "http-fanout: -n 1..1000 and a delay >= 0\n");
        return 2;
    }
    ae_loop *loop = ae_loop_new(NULL);
    if (!loop) {
        fprintf(stderr, "ae_loop_new: %s\n", ae_last_error());
        return 1;
    }
    ae_server *srv = ae_tcp_server(loop, "127.0.0.1", "0", 0, on_accept, loop);
    if (!srv) {
        fprintf(stderr, "ae_tcp_server: %s\n", ae_last_error());
        return 1;
    }
    int port = ae_server_port(srv);
    printf("backend %s, server on 127.0.0.1:%d answering after %.3f s, %d pages\n", ae_loop_backend(loop), port,
           delay, n);
    int rc = 0;

    /* One at a time. */
    double t0 = ae_time();
    for (int i = 0; i < n && rc == 0; i++) {
        struct fetch f = {.cv = ae_cv_new(loop)};
        if (fetch_start(loop, port, i, &f) < 0 || ae_cv_recv(f.cv, NULL) < 0 || check(&f, i) < 0)
            rc = 1;
        ae_cv_free(f.cv);
    }
    double one = ae_time() - t0;
    printf("one at a time: %.3f s\n", one);

    /* All at once, under one begin/end condvar. */
    struct fetch *all = calloc((size_t)n, sizeof *all);
    ae_cv *cv = ae_cv_new(loop);
    t0 = ae_time();
    ae_cv_begin(cv); /* held while starting, so it cannot be sent early */
    for (int i = 0; i < n && rc == 0; i++) {
        all[i].cv = cv;
        if (fetch_start(loop, port, i, &all[i]) < 0)
            rc = 1;
    }
    ae_cv_end(cv);
    if (ae_cv_recv(cv, NULL) < 0)
        rc = 1;
    double at_once = ae_time() - t0;
    for (int i = 0; i < n; i++)
        if (check(&all[i], i) < 0)
            rc = 1;
    printf("all at once:   %.3f s\n", at_once);
    printf("speed-up:      %.1fx\n", at_once > 0 ? one / at_once : 0);
    ae_cv_free(cv);
    free(all);
    ae_server_free(srv);
    ae_loop_free(loop);
    return rc;
}
