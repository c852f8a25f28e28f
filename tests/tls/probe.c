/* tls-probe: what TLS costs a stream, for docs/tls.md (not a test: figures
 * are measured, never asserted). Over a socketpair in one process on one
 * loop, after the handshake: malloc calls and CPU time per round trip of
 * SIZE-byte messages (AE_EXACTLY both ways), and the heap an idle TLS
 * stream holds beyond a plain one (mallinfo2, 200 pairs).
 *
 *   build/tests/tls/tls-probe [SIZE [ROUNDS [BACKEND [release]]]]
 *
 * "release" makes the contexts with AE_TLS_RELEASE_BUFFERS. Counts every
 * malloc of the process (OpenSSL's too) by defining malloc: built only
 * without sanitizers. */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include "anyevent/tls.h"

extern void *__libc_malloc(size_t n);
static long mallocs;
static int counting;

void *malloc(size_t n)
{
    if (counting)
        mallocs++;
    return __libc_malloc(n);
}

static size_t msg;
static long rounds, target;
static char buf[65536];
static int idle_done;

static void on_event(ae_stream *s, int what, int err, void *arg)
{
    (void)arg;
    if (what == AE_STREAM_ERROR) {
        fprintf(stderr, "tls-probe: stream error %d: %s\n", err, ae_stream_error(s));
        exit(1);
    }
}

static void on_client(ae_stream *s, const char *d, size_t n, void *arg)
{
    (void)d, (void)n, (void)arg;
    if (++rounds == 100)
        counting = 1; /* warmed up */
    if (rounds < target) {
        ae_stream_write(s, buf, msg);
        ae_stream_read(s, AE_EXACTLY(msg), on_client, NULL);
    }
}

static void on_server(ae_stream *s, const char *d, size_t n, void *arg)
{
    (void)arg;
    ae_stream_write(s, d, n);
    ae_stream_read(s, AE_EXACTLY(msg), on_server, NULL);
}

static void on_idle(ae_stream *s, const char *d, size_t n, void *arg) { (void)s, (void)d, (void)n, (void)arg, idle_done++; }

static double cpu_seconds(void)
{
    struct rusage r;
    getrusage(RUSAGE_SELF, &r);
    return (double)r.ru_utime.tv_sec + (double)r.ru_stime.tv_sec + (r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
}

/* n pairs of streams, TLS or not, each having carried one byte. */
static void pairs(ae_loop *loop, ae_tls_ctx *cc, ae_tls_ctx *sc, int n)
{
    int goal = idle_done + n;
    for (int i = 0; i < n; i++) {
        int sp[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0) {
            perror("socketpair");
            exit(1);
        }
        ae_stream *a = ae_stream_new(loop, sp[0], NULL, on_event, NULL);
        ae_stream *b = ae_stream_new(loop, sp[1], NULL, on_event, NULL);
        if (cc && (ae_stream_starttls(a, cc, AE_TLS_CONNECT, "localhost") < 0 ||
                   ae_stream_starttls(b, sc, AE_TLS_ACCEPT, NULL) < 0)) {
            fprintf(stderr, "tls-probe: %s\n", ae_last_error());
            exit(1);
        }
        ae_stream_write(a, "x", 1);
        ae_stream_read(b, AE_EXACTLY(1), on_idle, NULL);
    }
    while (idle_done < goal)
        ae_run_once(loop, 0);
    for (int i = 0; i < 5; i++)
        ae_run_once(loop, AE_NOWAIT);
}

int main(int argc, char **argv)
{
    msg = argc > 1 ? (size_t)atol(argv[1]) : 64;
    target = argc > 2 ? atol(argv[2]) : 20000;
    const char *backend = argc > 3 ? argv[3] : "poll";
    unsigned flags = argc > 4 && strcmp(argv[4], "release") == 0 ? AE_TLS_RELEASE_BUFFERS : 0;
    if (msg == 0 || msg > sizeof buf || target <= 100) {
        fprintf(stderr, "usage: tls-probe [SIZE (1-65536) [ROUNDS (> 100) [BACKEND [release]]]]\n");
        return 2;
    }
    if (!ae_tls_available()) {
        printf("tls-probe: built without OpenSSL\n");
        return 0;
    }
    ae_loop *loop = ae_loop_new(backend);
    ae_tls_ctx *cc = ae_tls_ctx_new(&(ae_tls_opts){.ca_file = AE_TLS_TEST_DIR "/server.pem", .flags = flags});
    ae_tls_ctx *sc = ae_tls_ctx_new(&(ae_tls_opts){.cert_file = AE_TLS_TEST_DIR "/server.pem", .flags = flags});
    if (!loop || !cc || !sc) {
        fprintf(stderr, "tls-probe: %s\n", ae_last_error());
        return 1;
    }
    int sp[2];
    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp);
    ae_stream *a = ae_stream_new(loop, sp[0], NULL, on_event, NULL);
    ae_stream *b = ae_stream_new(loop, sp[1], NULL, on_event, NULL);
    ae_stream_starttls(a, cc, AE_TLS_CONNECT, "localhost");
    ae_stream_starttls(b, sc, AE_TLS_ACCEPT, NULL);
    ae_stream_write(a, buf, msg);
    ae_stream_read(a, AE_EXACTLY(msg), on_client, NULL);
    ae_stream_read(b, AE_EXACTLY(msg), on_server, NULL);
    while (rounds < 100)
        ae_run_once(loop, 0);
    double t0 = cpu_seconds();
    while (rounds < target)
        ae_run_once(loop, 0);
    double cpu = cpu_seconds() - t0;
    counting = 0;
    printf("%s, %zu-byte messages%s: %.2f malloc calls and %.2f us of CPU per round trip (%ld round trips)\n",
           backend, msg, flags ? ", AE_TLS_RELEASE_BUFFERS" : "", (double)mallocs / (double)(target - 100),
           cpu / (double)(target - 100) * 1e6, target - 100);
    size_t m0 = mallinfo2().uordblks;
    pairs(loop, NULL, NULL, 200);
    size_t m1 = mallinfo2().uordblks;
    pairs(loop, cc, sc, 200);
    size_t m2 = mallinfo2().uordblks;
    printf("idle, after one byte: a plain stream %zu B of heap, a TLS stream %zu B more\n", (m1 - m0) / 400,
           ((m2 - m1) - (m1 - m0)) / 400);
    ae_tls_ctx_free(cc);
    ae_tls_ctx_free(sc);
    ae_loop_free(loop);
    return 0;
}
