/*
 * ae_tcp_connect, ae_unix_connect, ae_stream_connect, ae_tcp_server and
 * ae_unix_server: one test per rule of include/anyevent/stream.h, on every
 * backend and inside adopted host loops (see harness.h).
 *
 * Names: this program defines getaddrinfo() and freeaddrinfo() itself, so
 * that the library's lookups of the names ending in ".test" get fixed
 * answers ("two.test": a black hole at 127.0.0.2, then a live 127.0.0.1;
 * "slow.test": 127.0.0.1 after 200 ms; "gated.test": 127.0.0.1 once the
 * test lets it; "nosuch.test": no such name), and
 * every other name goes to the C library's.
 *
 * The black hole: a listener with backlog 0 whose one queue slot is taken,
 * so that the kernel drops further SYNs and a connect to it hangs.
 */
#include <dirent.h>
#include <dlfcn.h>
#include <math.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <netdb.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "harness.h"

/* ---- fixed answers for *.test --------------------------------------------- */

static int fake_port; /* the port the fixed answers carry */
static atomic_int gate_open; /* gated.test answers once it is set */

struct fake_ai {
    struct addrinfo ai;
    struct sockaddr_in sin;
};

static const char FAKE_MARK[] = "fake";

static struct addrinfo *fake_list(const char *const *ips, int n)
{
    struct fake_ai *f = calloc((size_t)n, sizeof *f);
    for (int i = 0; i < n; i++) {
        f[i].sin.sin_family = AF_INET;
        f[i].sin.sin_port = htons((uint16_t)fake_port);
        inet_pton(AF_INET, ips[i], &f[i].sin.sin_addr);
        f[i].ai = (struct addrinfo){.ai_family = AF_INET, .ai_socktype = SOCK_STREAM, .ai_protocol = IPPROTO_TCP,
                                    .ai_addrlen = sizeof f[i].sin, .ai_addr = (struct sockaddr *)&f[i].sin,
                                    .ai_canonname = (char *)FAKE_MARK, .ai_next = i + 1 < n ? &f[i + 1].ai : NULL};
    }
    return &f[0].ai;
}

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res)
{
    size_t len = node ? strlen(node) : 0;
    if (len > 5 && strcmp(node + len - 5, ".test") == 0 && !(hints && (hints->ai_flags & AI_NUMERICHOST))) {
        if (strcmp(node, "two.test") == 0) {
            *res = fake_list((const char *const[]){"127.0.0.2", "127.0.0.1"}, 2);
            return 0;
        }
        if (strcmp(node, "gated.test") == 0) {
            /* Answers once the test opens the gate (5 s at most). */
            for (int i = 0; i < 5000 && !atomic_load(&gate_open); i++)
                usleep(1000);
            *res = fake_list((const char *const[]){"127.0.0.1"}, 1);
            return 0;
        }
        if (strcmp(node, "slow.test") == 0) {
            usleep(200 * 1000);
            *res = fake_list((const char *const[]){"127.0.0.1"}, 1);
            return 0;
        }
        return EAI_NONAME;
    }
    int (*real)(const char *, const char *, const struct addrinfo *, struct addrinfo **) =
        (int (*)(const char *, const char *, const struct addrinfo *, struct addrinfo **))dlsym(RTLD_NEXT,
                                                                                              "getaddrinfo");
    return real(node, service, hints, res);
}

void freeaddrinfo(struct addrinfo *ai)
{
    if (ai && ai->ai_canonname == FAKE_MARK) {
        free(ai);
        return;
    }
    void (*real)(struct addrinfo *) = (void (*)(struct addrinfo *))dlsym(RTLD_NEXT, "freeaddrinfo");
    real(ai);
}

/* ---- helpers -------------------------------------------------------------- */

static int count_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n - 1; /* the DIR's own */
}

static int count_threads(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    int n = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "Threads: %d", &n) == 1)
            break;
    fclose(f);
    return n;
}

/* The fds and threads of before come back (a lookup thread may take a while). */
static void assert_nothing_left(int fds, int threads)
{
    double until = ae_time() + 5;
    while ((count_fds() != fds || count_threads() != threads) && ae_time() < until)
        run_for(0.01);
    assert_int_equal(count_fds(), fds);
    assert_int_equal(count_threads(), threads);
}

struct conn_result {
    int calls;
    int fd, err;
    double at;
    int cancel_inside;
    ae_connect *c;
};

static void on_connected(int fd, int err, void *arg)
{
    in_callback("a connect callback");
    struct conn_result *r = arg;
    r->calls++;
    r->fd = fd;
    r->err = err;
    r->at = ae_time();
    if (r->cancel_inside)
        ae_connect_cancel(r->c);
}

struct accepted {
    int calls;
    int fds[8];
    int free_inside;
    ae_server *srv;
};

static void on_accept(ae_server *srv, int fd, const struct sockaddr *peer, socklen_t len, void *arg)
{
    in_callback("an accept callback");
    struct accepted *a = arg;
    if (!peer || len == 0)
        failure("accept without a peer address");
    if (a->calls < 8)
        a->fds[a->calls] = fd;
    else
        close(fd);
    a->calls++;
    if (a->free_inside) {
        ae_server_free(srv);
        a->srv = NULL;
    }
}

static void accepted_close(struct accepted *a)
{
    for (int i = 0; i < a->calls && i < 8; i++)
        close(a->fds[i]);
    a->calls = 0;
}

/* A listener at ip:port (port 0: any) with backlog 0 and its one slot
 * taken: connects to it hang. Returns the listener; *filler the taken slot. */
static int black_hole(const char *ip, int port, int *filler)
{
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, ip, &sin.sin_addr);
    assert_int_equal(bind(l, (struct sockaddr *)&sin, sizeof sin), 0);
    assert_int_equal(listen(l, 0), 0);
    socklen_t len = sizeof sin;
    getsockname(l, (struct sockaddr *)&sin, &len);
    *filler = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(connect(*filler, (struct sockaddr *)&sin, sizeof sin), 0);
    return l;
}

static int port_of_fd(int fd)
{
    struct sockaddr_in sin;
    socklen_t len = sizeof sin;
    getsockname(fd, (struct sockaddr *)&sin, &len);
    return ntohs(sin.sin_port);
}

static int peer_port_of_fd(int fd)
{
    struct sockaddr_in sin;
    socklen_t len = sizeof sin;
    getpeername(fd, (struct sockaddr *)&sin, &len);
    return ntohs(sin.sin_port);
}

/* ---- tests ---------------------------------------------------------------- */

static void test_bad_input(void **state)
{
    (void)state;
    assert_null(ae_tcp_connect(NULL, "127.0.0.1", "1", NULL, on_connected, NULL));
    assert_int_equal(ae_last_error_code(), AE_EINVAL);
    assert_null(ae_tcp_connect(F->loop, NULL, "1", NULL, on_connected, NULL));
    assert_int_equal(ae_last_error_code(), AE_EINVAL);
    assert_null(ae_tcp_connect(F->loop, "127.0.0.1", NULL, NULL, on_connected, NULL));
    assert_null(ae_tcp_connect(F->loop, "127.0.0.1", "1", NULL, NULL, NULL));
    assert_int_equal(ae_last_error_code(), AE_EINVAL);
    assert_null(ae_tcp_connect(F->loop, "127.0.0.1", "no-such-service-x", NULL, on_connected, NULL));
    assert_int_equal(ae_last_error_code(), AE_EINVAL);
    ae_connect_opts o = {.timeout = -1};
    assert_null(ae_tcp_connect(F->loop, "127.0.0.1", "1", &o, on_connected, NULL));
    o = (ae_connect_opts){.family = 12345};
    assert_null(ae_tcp_connect(F->loop, "127.0.0.1", "1", &o, on_connected, NULL));
    o = (ae_connect_opts){.attempt_delay = NAN};
    assert_null(ae_tcp_connect(F->loop, "127.0.0.1", "1", &o, on_connected, NULL));
    assert_null(ae_unix_connect(F->loop, NULL, 0, on_connected, NULL));
    char longpath[200];
    memset(longpath, 'a', sizeof longpath - 1);
    longpath[sizeof longpath - 1] = 0;
    assert_null(ae_unix_connect(F->loop, longpath, 0, on_connected, NULL));
    assert_int_equal(ae_last_error_code(), AE_EINVAL);
    assert_null(ae_stream_connect(F->loop, NULL, "1", NULL, NULL, on_event, NULL));
    assert_null(ae_stream_connect(F->loop, "127.0.0.1", "1", NULL, NULL, NULL, NULL));
    assert_null(ae_tcp_server(NULL, NULL, "0", 0, on_accept, NULL));
    assert_null(ae_tcp_server(F->loop, NULL, NULL, 0, on_accept, NULL));
    assert_null(ae_tcp_server(F->loop, NULL, "0", -1, on_accept, NULL));
    assert_null(ae_tcp_server(F->loop, NULL, "0", 0, NULL, NULL));
    assert_null(ae_tcp_server(F->loop, "nosuch.test", "0", 0, on_accept, NULL));
    assert_int_equal(ae_last_error_code(), AE_EINVAL);
    assert_null(ae_unix_server(F->loop, NULL, 0, on_accept, NULL));
    assert_null(ae_unix_server(F->loop, longpath, 0, on_accept, NULL));
    assert_int_equal(ae_server_port(NULL), 0);
    ae_server_free(NULL);
    ae_connect_cancel(NULL);
    assert_no_failure();
}

static void test_tcp_server_and_connect(void **state)
{
    (void)state;
    struct accepted a = {0};
    ae_server *srv = CALL(ae_tcp_server(F->loop, "127.0.0.1", "0", 0, on_accept, &a));
    assert_non_null(srv);
    int port = ae_server_port(srv);
    assert_true(port > 0);
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    struct conn_result r = {0};
    ae_connect *c = CALL(ae_tcp_connect(F->loop, "127.0.0.1", service, NULL, on_connected, &r));
    assert_non_null(c);
    assert_int_equal(r.calls, 0);
    WAIT(r.calls == 1 && a.calls == 1);
    run_for(0.02);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.err, 0);
    assert_true(r.fd >= 0);
    assert_true(fcntl(r.fd, F_GETFL) & O_NONBLOCK);
    assert_true(fcntl(r.fd, F_GETFD) & FD_CLOEXEC);
    assert_int_equal(peer_port_of_fd(r.fd), port);
    assert_true(fcntl(a.fds[0], F_GETFL) & O_NONBLOCK);
    /* The two ends talk. */
    assert_int_equal(write(r.fd, "hi", 2), 2);
    char buf[4] = {0};
    WAIT(recv(a.fds[0], buf, 2, MSG_DONTWAIT) == 2);
    assert_string_equal(buf, "hi");
    close(r.fd);
    accepted_close(&a);
    CALLV(ae_server_free(srv));
    assert_no_failure();
}

static void test_server_any_address(void **state)
{
    (void)state;
    struct accepted a = {0};
    ae_server *srv = CALL(ae_tcp_server(F->loop, NULL, "0", 0, on_accept, &a));
    assert_non_null(srv);
    char service[16];
    snprintf(service, sizeof service, "%d", ae_server_port(srv));
    struct conn_result r4 = {0}, r6 = {0};
    CALL(ae_tcp_connect(F->loop, "127.0.0.1", service, NULL, on_connected, &r4));
    int v6 = socket(AF_INET6, SOCK_STREAM, 0);
    bool have_v6 = v6 >= 0;
    if (v6 >= 0)
        close(v6);
    if (have_v6)
        CALL(ae_tcp_connect(F->loop, "::1", service, NULL, on_connected, &r6));
    WAIT(r4.calls && (!have_v6 || r6.calls));
    assert_int_equal(r4.err, 0);
    close(r4.fd);
    if (have_v6 && r6.err == 0)
        close(r6.fd);
    WAIT(a.calls >= 1);
    accepted_close(&a);
    ae_server_free(srv);
    assert_no_failure();
}

static void test_port_in_use(void **state)
{
    (void)state;
    struct accepted a = {0};
    ae_server *srv = ae_tcp_server(F->loop, "127.0.0.1", "0", 0, on_accept, &a);
    assert_non_null(srv);
    char service[16];
    snprintf(service, sizeof service, "%d", ae_server_port(srv));
    assert_null(ae_tcp_server(F->loop, "127.0.0.1", service, 0, on_accept, &a));
    assert_int_equal(ae_last_error_code(), AE_ESYS);
    ae_server_free(srv);
    assert_no_failure();
}

static void test_refused(void **state)
{
    (void)state;
    int fds = count_fds();
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bind(l, (struct sockaddr *)&sin, sizeof sin);
    char service[16];
    snprintf(service, sizeof service, "%d", port_of_fd(l));
    close(l); /* nobody listens there now */
    struct conn_result r = {0};
    CALL(ae_tcp_connect(F->loop, "127.0.0.1", service, NULL, on_connected, &r));
    WAIT(r.calls);
    assert_int_equal(r.fd, -1);
    assert_int_equal(r.err, ECONNREFUSED);
    assert_nothing_left(fds, count_threads());
    assert_no_failure();
}

static void test_unknown_host(void **state)
{
    (void)state;
    int threads = count_threads(), fds = count_fds();
    struct conn_result r = {0};
    CALL(ae_tcp_connect(F->loop, "nosuch.test", "80", NULL, on_connected, &r));
    WAIT(r.calls);
    assert_int_equal(r.fd, -1);
    assert_int_equal(r.err, ENXIO);
    assert_nothing_left(fds, threads);
    assert_no_failure();
}

/* A name is looked up on a thread; the loop goes on meanwhile. */
static void test_lookup_thread(void **state)
{
    (void)state;
    int threads = count_threads(), fds = count_fds();
    struct accepted a = {0};
    ae_server *srv = ae_tcp_server(F->loop, "127.0.0.1", "0", 0, on_accept, &a);
    fake_port = ae_server_port(srv);
    struct conn_result r = {0};
    atomic_store(&gate_open, 0);
    CALL(ae_tcp_connect(F->loop, "gated.test", "1", NULL, on_connected, &r));
    /* The call returned with the lookup still waiting, and the loop runs. */
    run_for(0.05);
    assert_int_equal(r.calls, 0);
    atomic_store(&gate_open, 1);
    WAIT(r.calls);
    assert_int_equal(r.err, 0);
    close(r.fd);
    WAIT(a.calls);
    accepted_close(&a);
    ae_server_free(srv);
    assert_nothing_left(fds, threads);
    assert_no_failure();
}

/* RFC 8305: the first address hangs; the second, started attempt_delay
 * later, wins; the hanging one is closed. */
static void test_staggered(void **state)
{
    (void)state;
    struct accepted a = {0};
    ae_server *srv = ae_tcp_server(F->loop, "127.0.0.1", "0", 0, on_accept, &a);
    fake_port = ae_server_port(srv);
    int filler;
    int hole = black_hole("127.0.0.2", fake_port, &filler);
    int fds = count_fds(), threads = count_threads();
    char service[16];
    snprintf(service, sizeof service, "%d", fake_port);
    ae_connect_opts o = {.attempt_delay = 0.1, .timeout = 5};
    struct conn_result r = {0};
    double t0 = ae_now(F->loop); /* timers count from the loop's time */
    CALL(ae_tcp_connect(F->loop, "two.test", service, &o, on_connected, &r));
    WAIT(r.calls);
    double took = r.at - t0;
    assert_int_equal(r.err, 0);
    assert_true(took >= 0.1 - 0.001);
    assert_true(took < 3);
    char ip[32];
    struct sockaddr_in peer;
    socklen_t len = sizeof peer;
    getpeername(r.fd, (struct sockaddr *)&peer, &len);
    inet_ntop(AF_INET, &peer.sin_addr, ip, sizeof ip);
    assert_string_equal(ip, "127.0.0.1");
    close(r.fd);
    WAIT(a.calls);
    accepted_close(&a);
    assert_nothing_left(fds, threads); /* the hanging attempt is closed */
    ae_server_free(srv);
    close(filler);
    close(hole);
    assert_no_failure();
}

/* One at a time: the first address hangs until the timeout. */
static void test_sequential_timeout(void **state)
{
    (void)state;
    int filler;
    int hole = black_hole("127.0.0.2", 0, &filler);
    fake_port = port_of_fd(hole);
    int fds = count_fds(), threads = count_threads();
    char service[16];
    snprintf(service, sizeof service, "%d", fake_port);
    ae_connect_opts o = {.attempt_delay = -1, .timeout = 0.2};
    struct conn_result r = {0};
    double t0 = ae_now(F->loop);
    CALL(ae_tcp_connect(F->loop, "two.test", service, &o, on_connected, &r));
    WAIT(r.calls);
    assert_int_equal(r.fd, -1);
    assert_int_equal(r.err, ETIMEDOUT);
    assert_true(r.at - t0 >= 0.2 - 0.001);
    assert_nothing_left(fds, threads);
    close(filler);
    close(hole);
    assert_no_failure();
}

/* A cancel leaves no fd, thread or callback behind: during the lookup, and
 * during a hanging attempt. */
static void test_cancel(void **state)
{
    (void)state;
    int fds = count_fds(), threads = count_threads();
    fake_port = 9;
    struct conn_result r = {0};
    atomic_store(&gate_open, 0);
    ae_connect *c = CALL(ae_tcp_connect(F->loop, "gated.test", "9", NULL, on_connected, &r));
    assert_non_null(c);
    run_for(0.02);
    assert_int_equal(count_threads(), threads + 1);
    CALLV(ae_connect_cancel(c));
    atomic_store(&gate_open, 1); /* the abandoned lookup ends on its own */
    assert_nothing_left(fds, threads);
    int filler;
    int hole = black_hole("127.0.0.2", 0, &filler);
    fds = count_fds();
    char service[16];
    snprintf(service, sizeof service, "%d", port_of_fd(hole));
    c = CALL(ae_tcp_connect(F->loop, "127.0.0.2", service, NULL, on_connected, &r));
    run_for(0.02);
    assert_int_equal(count_fds(), fds + 1);
    CALLV(ae_connect_cancel(c));
    assert_int_equal(count_fds(), fds);
    run_for(0.3);
    assert_int_equal(r.calls, 0);
    close(filler);
    close(hole);
    assert_no_failure();
}

static void test_cancel_inside(void **state)
{
    (void)state;
    struct accepted a = {0};
    ae_server *srv = ae_tcp_server(F->loop, "127.0.0.1", "0", 0, on_accept, &a);
    char service[16];
    snprintf(service, sizeof service, "%d", ae_server_port(srv));
    struct conn_result r = {.cancel_inside = 1};
    r.c = CALL(ae_tcp_connect(F->loop, "127.0.0.1", service, NULL, on_connected, &r));
    WAIT(r.calls);
    run_for(0.02);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.err, 0);
    close(r.fd); /* still the caller's */
    WAIT(a.calls);
    accepted_close(&a);
    ae_server_free(srv);
    assert_no_failure();
}

static void unix_path(char *buf, size_t n, const char *tag)
{
    snprintf(buf, n, "/tmp/ae-stream-test-%d-%s.sock", (int)getpid(), tag);
    unlink(buf);
}

static void test_unix(void **state)
{
    (void)state;
    char path[108];
    unix_path(path, sizeof path, "u");
    struct accepted a = {0};
    ae_server *srv = CALL(ae_unix_server(F->loop, path, 0, on_accept, &a));
    assert_non_null(srv);
    assert_int_equal(ae_server_port(srv), 0);
    /* In use: refused. */
    assert_null(ae_unix_server(F->loop, path, 0, on_accept, &a));
    assert_int_equal(ae_last_error_code(), AE_ESTATE);
    struct conn_result r = {0};
    CALL(ae_unix_connect(F->loop, path, 1, on_connected, &r));
    WAIT(r.calls && a.calls);
    assert_int_equal(r.err, 0);
    close(r.fd);
    accepted_close(&a);
    CALLV(ae_server_free(srv));
    struct stat st;
    assert_int_equal(lstat(path, &st), -1); /* removed */
    /* Nobody there: refused. */
    r = (struct conn_result){0};
    CALL(ae_unix_connect(F->loop, path, 0, on_connected, &r));
    WAIT(r.calls);
    assert_int_equal(r.fd, -1);
    assert_int_equal(r.err, ENOENT);
    assert_no_failure();
}

static void test_unix_stale_and_not_socket(void **state)
{
    (void)state;
    char path[108];
    unix_path(path, sizeof path, "s");
    /* A stale socket file nobody listens on is replaced. */
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    strcpy(sun.sun_path, path);
    assert_int_equal(bind(fd, (struct sockaddr *)&sun, sizeof sun), 0);
    close(fd);
    struct accepted a = {0};
    ae_server *srv = ae_unix_server(F->loop, path, 0, on_accept, &a);
    assert_non_null(srv);
    ae_server_free(srv);
    /* A file that is not a socket is refused and left alone. */
    FILE *f = fopen(path, "w");
    fclose(f);
    assert_null(ae_unix_server(F->loop, path, 0, on_accept, &a));
    assert_int_equal(ae_last_error_code(), AE_EINVAL);
    struct stat st;
    assert_int_equal(lstat(path, &st), 0);
    unlink(path);
    assert_no_failure();
}

static void test_server_free_inside(void **state)
{
    (void)state;
    struct accepted a = {.free_inside = 1};
    a.srv = ae_tcp_server(F->loop, "127.0.0.1", "0", 0, on_accept, &a);
    char service[16];
    snprintf(service, sizeof service, "%d", ae_server_port(a.srv));
    struct conn_result r1 = {0}, r2 = {0};
    CALL(ae_tcp_connect(F->loop, "127.0.0.1", service, NULL, on_connected, &r1));
    CALL(ae_tcp_connect(F->loop, "127.0.0.1", service, NULL, on_connected, &r2));
    WAIT(r1.calls && r2.calls && !a.srv);
    run_for(0.05);
    assert_int_equal(a.calls, 1); /* no accept after the free */
    if (r1.fd >= 0)
        close(r1.fd);
    if (r2.fd >= 0)
        close(r2.fd);
    accepted_close(&a);
    assert_no_failure();
}

/* A stream that connects: a write and a read queued before it is connected. */
struct echo_server {
    ae_stream *peer;
};

static void echo_event(ae_stream *s, int what, int err, void *arg)
{
    (void)err;
    struct echo_server *e = arg;
    if (what == AE_STREAM_EOF || what == AE_STREAM_ERROR) {
        ae_stream_free(s);
        e->peer = NULL;
    }
}

static void echo_line(ae_stream *s, const char *data, size_t len, void *arg)
{
    ae_stream_write(s, data, len);
    ae_stream_write(s, "!\n", 2);
    ae_stream_read(s, AE_LINE(NULL), echo_line, arg);
}

static void on_accept_echo(ae_server *srv, int fd, const struct sockaddr *peer, socklen_t len, void *arg)
{
    (void)srv, (void)peer, (void)len;
    struct echo_server *e = arg;
    ae_stream_opts o = {.flags = AE_STREAM_CLOSE_FD};
    e->peer = ae_stream_new(F->loop, fd, &o, echo_event, e);
    ae_stream_read(e->peer, AE_LINE(NULL), echo_line, e);
}

static void test_stream_connect(void **state)
{
    (void)state;
    struct echo_server e = {0};
    ae_server *srv = ae_tcp_server(F->loop, "127.0.0.1", "0", 0, on_accept_echo, &e);
    char service[16];
    snprintf(service, sizeof service, "%d", ae_server_port(srv));
    ae_stream_opts so = {.flags = AE_STREAM_NODELAY | AE_STREAM_KEEPALIVE};
    F->s = CALL(ae_stream_connect(F->loop, "127.0.0.1", service, NULL, &so, on_event, NULL));
    assert_non_null(F->s);
    assert_int_equal(ae_stream_fd(F->s), -1);
    assert_int_equal(CALL(ae_stream_write(F->s, "hello\n", 6)), 0);
    assert_int_equal(ae_stream_queued(F->s), 6);
    assert_int_equal(CALL(ae_stream_read(F->s, AE_LINE(NULL), on_data, NULL)), 0);
    WAIT(data_count() >= 1);
    assert_string_equal(F->data[0], "hello!");
    /* CONNECTED, then DRAIN: the queued write left the queue. */
    assert_int_equal(F->nevents, 2);
    assert_int_equal(F->events[0], AE_STREAM_CONNECTED);
    assert_int_equal(F->events[1], AE_STREAM_DRAIN);
    assert_true(ae_stream_fd(F->s) >= 0);
    CALLV(ae_stream_free(F->s)); /* owns its fd: the server sees EOF */
    F->s = NULL;
    WAIT(!e.peer);
    ae_server_free(srv);
    assert_no_failure();
}

static void test_stream_connect_refused(void **state)
{
    (void)state;
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bind(l, (struct sockaddr *)&sin, sizeof sin);
    char service[16];
    snprintf(service, sizeof service, "%d", port_of_fd(l));
    close(l);
    F->s = CALL(ae_stream_connect(F->loop, "127.0.0.1", service, NULL, NULL, on_event, NULL));
    assert_non_null(F->s);
    CALL(ae_stream_write(F->s, "x", 1));
    WAIT(F->nevents);
    assert_int_equal(F->events[0], AE_STREAM_ERROR);
    assert_int_equal(F->errs[0], ECONNREFUSED);
    assert_non_null(ae_stream_error(F->s));
    assert_no_failure();
}

/* Freeing a connecting stream cancels its connect. */
static void test_stream_connect_free(void **state)
{
    (void)state;
    int fds = count_fds(), threads = count_threads();
    fake_port = 9;
    F->s = CALL(ae_stream_connect(F->loop, "slow.test", "9", NULL, NULL, on_event, NULL));
    run_for(0.02);
    CALLV(ae_stream_free(F->s));
    F->s = NULL;
    assert_nothing_left(fds, threads);
    assert_int_equal(F->nevents, 0);
    assert_no_failure();
}

/* A resolver of the test's own (ae_connect_set_resolver): every name is
 * 127.0.0.1, answered from a zero timer; counts what it was asked to do. */
struct test_resolver {
    int started, cancelled, freed;
    ae_loop *loop;
};

struct test_lookup {
    ae_watcher *timer;
    ae_resolver_done done;
    void *done_arg;
    int port;
};

static void test_lookup_answer(ae_watcher *w, void *arg)
{
    struct test_lookup *l = arg;
    ae_watcher_free(w);
    struct addrinfo *ai = calloc(1, sizeof *ai + sizeof(struct sockaddr_in));
    struct sockaddr_in *sin = (struct sockaddr_in *)(ai + 1);
    *sin = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons((uint16_t)l->port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ai->ai_family = AF_INET;
    ai->ai_socktype = SOCK_STREAM;
    ai->ai_addr = (struct sockaddr *)sin;
    ai->ai_addrlen = sizeof *sin;
    ae_resolver_done done = l->done;
    void *done_arg = l->done_arg;
    free(l);
    done(ai, 0, done_arg);
}

static void *test_resolver_start(void *ctx, const char *host, const char *service, int family,
                                 ae_resolver_done done, void *done_arg)
{
    (void)host, (void)family;
    struct test_resolver *tr = ctx;
    struct test_lookup *l = calloc(1, sizeof *l);
    l->timer = ae_timer(tr->loop, 0, 0, test_lookup_answer, l);
    l->done = done;
    l->done_arg = done_arg;
    l->port = atoi(service);
    tr->started++;
    return l;
}

static void test_resolver_cancel(void *ctx, void *lookup)
{
    struct test_lookup *l = lookup;
    ((struct test_resolver *)ctx)->cancelled++;
    ae_watcher_free(l->timer);
    free(l);
}

static struct test_resolver *freeing_resolver;

static void test_resolver_free(void *ctx, struct addrinfo *ai)
{
    (void)ctx;
    freeing_resolver->freed++;
    free(ai);
}

/* ae_connect_set_resolver: a name goes to the loop's resolver (the thread
 * is not started), its answer is freed with its free_answer once taken, a
 * cancel reaches it; NULL puts the getaddrinfo() thread back. */
static void test_custom_resolver(void **state)
{
    (void)state;
    struct test_resolver tr = {.loop = F->loop};
    freeing_resolver = &tr;
    const ae_resolver r = {test_resolver_start, test_resolver_cancel, test_resolver_free};
    assert_int_equal(ae_connect_set_resolver(NULL, &r, &tr), AE_EINVAL);
    assert_int_equal(ae_connect_set_resolver(F->loop, &(ae_resolver){test_resolver_start, NULL, NULL}, &tr),
                     AE_EINVAL);
    assert_int_equal(ae_connect_set_resolver(F->loop, &r, &tr), 0);
    struct accepted a = {0};
    ae_server *srv = CALL(ae_tcp_server(F->loop, "127.0.0.1", "0", 0, on_accept, &a));
    assert_non_null(srv);
    char service[16];
    snprintf(service, sizeof service, "%d", ae_server_port(srv));
    int threads = count_threads();
    struct conn_result res = {0}, never = {0};
    assert_non_null(CALL(ae_tcp_connect(F->loop, "anything.invalid", service, NULL, on_connected, &res)));
    ae_connect *c = CALL(ae_tcp_connect(F->loop, "cancelled.invalid", service, NULL, on_connected, &never));
    assert_non_null(c);
    assert_int_equal(count_threads(), threads); /* no lookup thread */
    CALLV(ae_connect_cancel(c));
    assert_int_equal(tr.cancelled, 1);
    WAIT(res.calls == 1 && a.calls == 1);
    assert_int_equal(res.err, 0);
    assert_true(res.fd >= 0);
    assert_int_equal(tr.started, 2);
    assert_int_equal(tr.freed, 1);
    assert_int_equal(never.calls, 0);
    close(res.fd);
    accepted_close(&a);
    /* Back to the thread: the resolver is not asked again. */
    assert_int_equal(ae_connect_set_resolver(F->loop, NULL, NULL), 0);
    res = (struct conn_result){0};
    assert_non_null(CALL(ae_tcp_connect(F->loop, "localhost", service, &(ae_connect_opts){.family = AF_INET},
                                        on_connected, &res)));
    WAIT(res.calls == 1);
    assert_int_equal(tr.started, 2);
    if (res.fd >= 0)
        close(res.fd);
    accepted_close(&a);
    CALLV(ae_server_free(srv));
    assert_no_failure();
}

/* ae_loop_free() frees what the program left: servers, connects, streams
 * connecting, on the wake list or with a deadline in the timeout heap; no
 * leak (valgrind, ASan). */
static void test_loop_free_frees_all(void **state)
{
    (void)state;
    struct accepted a = {0};
    ae_server *srv = ae_tcp_server(F->loop, "127.0.0.1", "0", 0, on_accept, &a);
    char path[108];
    unix_path(path, sizeof path, "lf");
    assert_non_null(ae_unix_server(F->loop, path, 0, on_accept, &a));
    char service[16];
    snprintf(service, sizeof service, "%d", ae_server_port(srv));
    struct conn_result r = {0};
    assert_non_null(ae_tcp_connect(F->loop, "slow.test", "9", NULL, on_connected, &r));
    ae_stream *s = ae_stream_connect(F->loop, "127.0.0.1", service, NULL, NULL, on_event, NULL);
    ae_stream_write(s, "queued", 6);
    ae_stream *t = ae_stream_new(F->loop, F->fd[0], NULL, on_event, NULL);
    ae_stream_write_ref(t, "x", 1, NULL, NULL);
    ae_stream_read(t, AE_LINE(NULL), on_data, NULL);
    ae_stream *u = ae_stream_new(F->loop, F->fd[1], &(ae_stream_opts){.rtimeout = 10}, on_event, NULL);
    ae_stream_read(u, AE_LINE(NULL), on_data, NULL); /* its deadline waits in the loop's heap */
    /* teardown frees the loop with all of it */
    (void)s;
    assert_no_failure();
    unlink(path);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        T(test_bad_input),
        T(test_tcp_server_and_connect),
        T(test_server_any_address),
        T(test_port_in_use),
        T(test_refused),
        T(test_unknown_host),
        T(test_lookup_thread),
        T(test_staggered),
        T(test_sequential_timeout),
        T(test_cancel),
        T(test_cancel_inside),
        T(test_unix),
        T(test_unix_stale_and_not_socket),
        T(test_server_free_inside),
        T(test_stream_connect),
        T(test_stream_connect_refused),
        T(test_stream_connect_free),
        T(test_custom_resolver),
        T(test_loop_free_frees_all),
    };
    return harness_run(argc, argv, tests, sizeof tests / sizeof tests[0], "socket");
}
