/* Listening sockets: TCP on every address of a host (or on all local
 * addresses, IPv6 and IPv4), or a unix socket path. Each readiness accepts
 * until the kernel has no more (at most 64 per pass, for fairness); running
 * out of fds pauses accepting for 100 ms instead of spinning. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "internal.h"

#define AE_SERVER_MAGIC 0x61657376u /* "aesv" */
#define BACKLOG_DEFAULT 128
#define MAX_LISTEN 8
#define ACCEPTS_PER_PASS 64
#define EMFILE_PAUSE 0.1

struct ae_server {
    uint32_t magic;
    ae_layer_node node;
    ae_loop *loop;
    ae_accept_cb cb;
    void *arg;
    int nfd;
    int fds[MAX_LISTEN];
    ae_watcher *io[MAX_LISTEN];
    ae_watcher *pause; /* re-enables accepting after EMFILE */
    char *path;        /* a unix server's, removed by ae_server_free() */
    dev_t dev;
    ino_t ino;
    int depth; /* accept callbacks on the stack */
    bool freed;
};

static void release(ae_server *srv)
{
    for (int i = 0; i < srv->nfd; i++) {
        ae_watcher_free(srv->io[i]);
        srv->io[i] = NULL;
        close(srv->fds[i]);
    }
    srv->nfd = 0;
    ae_watcher_free(srv->pause);
    srv->pause = NULL;
    if (srv->path) {
        /* Only our own socket file: not one that replaced it since. */
        struct stat st;
        if (lstat(srv->path, &st) == 0 && st.st_dev == srv->dev && st.st_ino == srv->ino)
            unlink(srv->path);
        free(srv->path);
        srv->path = NULL;
    }
}

static void destroy(ae_server *srv)
{
    ae__layer_remove(&srv->node);
    release(srv);
    srv->magic = 0;
    free(srv);
}

static void server_drop(ae_layer_node *n) { destroy((ae_server *)((char *)n - offsetof(ae_server, node))); }

static void on_resume(ae_watcher *w, void *arg)
{
    (void)w;
    ae_server *srv = arg;
    for (int i = 0; i < srv->nfd; i++)
        ae_io_set(srv->io[i], AE_READ);
}

static void pause_accepting(ae_server *srv)
{
    for (int i = 0; i < srv->nfd; i++)
        ae_io_set(srv->io[i], 0);
    if (!srv->pause)
        srv->pause = ae_timer(srv->loop, EMFILE_PAUSE, 0, on_resume, srv);
    else
        ae_timer_set(srv->pause, EMFILE_PAUSE, 0);
    if (!srv->pause)
        on_resume(NULL, srv); /* no timer: better to spin than to stop for good */
}

static void on_listen(ae_watcher *w, int revents, void *arg)
{
    (void)revents;
    ae_server *srv = arg;
    int fd = -1;
    for (int i = 0; i < srv->nfd; i++)
        if (srv->io[i] == w)
            fd = srv->fds[i];
    if (fd < 0)
        return;
    srv->depth++;
    for (int n = 0; n < ACCEPTS_PER_PASS && !srv->freed; n++) {
        struct sockaddr_storage peer;
        socklen_t len = sizeof peer;
        int c = accept4(fd, (struct sockaddr *)&peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (c < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                pause_accepting(srv);
            break;
        }
        srv->cb(srv, c, (struct sockaddr *)&peer, len, srv->arg);
    }
    if (--srv->depth == 0 && srv->freed)
        destroy(srv);
}

static ae_server *server_new(ae_loop *loop, int backlog, ae_accept_cb cb, void *arg, const char *fn)
{
    if (!loop || !cb) {
        ae__set_error(AE_EINVAL, "%s: %s is NULL", fn, loop ? "callback" : "loop");
        return NULL;
    }
    if (backlog < 0) {
        ae__set_error(AE_EINVAL, "%s: backlog %d is negative", fn, backlog);
        return NULL;
    }
    ae_server *srv = calloc(1, sizeof *srv);
    if (!srv) {
        ae__set_error(AE_ENOMEM, "%s: out of memory", fn);
        return NULL;
    }
    srv->loop = loop;
    srv->cb = cb;
    srv->arg = arg;
    return srv;
}

/* Listen on a bound socket and watch it; on failure fd is closed. */
static int server_listen(ae_server *srv, int fd, int backlog, const char *fn)
{
    if (listen(fd, backlog ? backlog : BACKLOG_DEFAULT) < 0) {
        int rc = ae__set_errno(fn);
        close(fd);
        return rc;
    }
    ae_watcher *io = ae_io(srv->loop, fd, AE_READ, on_listen, srv);
    if (!io) {
        close(fd);
        return ae_last_error_code();
    }
    srv->fds[srv->nfd] = fd;
    srv->io[srv->nfd++] = io;
    return 0;
}

static ae_server *server_done(ae_server *srv)
{
    if (ae__layer_add(srv->loop, &srv->node, server_drop) < 0) {
        destroy(srv);
        return NULL;
    }
    srv->magic = AE_SERVER_MAGIC;
    return srv;
}

static int port_of(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return 0;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return 0;
}

/* One listening socket on sa; port replaces sa's port when not 0. */
static int tcp_listen(ae_server *srv, const struct sockaddr *sa, socklen_t len, int port, bool v6only,
                      int backlog)
{
    struct sockaddr_storage ss;
    memcpy(&ss, sa, len);
    if (port && ss.ss_family == AF_INET)
        ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)port);
    if (port && ss.ss_family == AF_INET6)
        ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)port);
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return ae__set_errno("ae_tcp_server: socket");
    int one = 1, v6 = v6only;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6, sizeof v6);
    if (bind(fd, (struct sockaddr *)&ss, len) < 0) {
        int rc = ae__set_errno("ae_tcp_server: bind");
        close(fd);
        return rc;
    }
    return server_listen(srv, fd, backlog, "ae_tcp_server: listen");
}

ae_server *ae_tcp_server(ae_loop *loop, const char *host, const char *service, int backlog, ae_accept_cb cb,
                         void *arg)
{
    if (!service) {
        ae__set_error(AE_EINVAL, "ae_tcp_server: service is NULL");
        return NULL;
    }
    ae_server *srv = server_new(loop, backlog, cb, arg, "ae_tcp_server");
    if (!srv)
        return NULL;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *answer = NULL;
    int gai = getaddrinfo(host, service, &hints, &answer);
    if (gai != 0) {
        ae__set_error(AE_EINVAL, "ae_tcp_server: %s port %s: %s", host ? host : "(any)", service, gai_strerror(gai));
        destroy(srv);
        return NULL;
    }
    int port = 0, rc = 0;
    if (!host) {
        /* Every local address: one IPv6 socket that takes IPv4 too, or IPv4
         * alone where there is no IPv6. */
        struct sockaddr_in6 any6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_ANY_INIT};
        struct sockaddr_in any4 = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_ANY)};
        int p = 0;
        for (struct addrinfo *a = answer; a; a = a->ai_next)
            if ((p = a->ai_family == AF_INET ? ntohs(((struct sockaddr_in *)a->ai_addr)->sin_port)
                     : a->ai_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)a->ai_addr)->sin6_port)
                                                : 0))
                break;
        any6.sin6_port = any4.sin_port = htons((uint16_t)p);
        rc = tcp_listen(srv, (struct sockaddr *)&any6, sizeof any6, 0, false, backlog);
        if (rc < 0)
            rc = tcp_listen(srv, (struct sockaddr *)&any4, sizeof any4, 0, false, backlog);
    } else {
        /* Every address of the name, on one port (the first one's, for "0"). */
        for (struct addrinfo *a = answer; a && srv->nfd < MAX_LISTEN; a = a->ai_next) {
            if (a->ai_family != AF_INET && a->ai_family != AF_INET6)
                continue;
            int r = tcp_listen(srv, a->ai_addr, a->ai_addrlen, port, true, backlog);
            if (r == 0 && !port)
                port = port_of(srv->fds[srv->nfd - 1]);
            if (r < 0 && rc == 0)
                rc = r;
        }
        if (srv->nfd)
            rc = 0;
        else if (rc == 0)
            rc = ae__set_error(AE_EINVAL, "ae_tcp_server: %s has no IPv4 or IPv6 address", host);
    }
    freeaddrinfo(answer);
    if (rc < 0) {
        destroy(srv);
        return NULL;
    }
    return server_done(srv);
}

ae_server *ae_unix_server(ae_loop *loop, const char *path, int backlog, ae_accept_cb cb, void *arg)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    if (!path || !*path || strlen(path) >= sizeof sun.sun_path) {
        ae__set_error(AE_EINVAL, "ae_unix_server: path is NULL, empty or longer than %zu bytes",
                      sizeof sun.sun_path - 1);
        return NULL;
    }
    strcpy(sun.sun_path, path);
    ae_server *srv = server_new(loop, backlog, cb, arg, "ae_unix_server");
    if (!srv)
        return NULL;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        ae__set_errno("ae_unix_server: socket");
        destroy(srv);
        return NULL;
    }
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            ae__set_error(AE_EINVAL, "ae_unix_server: %s exists and is not a socket", path);
            goto fail;
        }
        /* A socket file: in use if someone accepts on it, else stale. */
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        int rc = probe < 0 ? -1 : connect(probe, (struct sockaddr *)&sun, sizeof sun);
        int err = errno;
        if (probe >= 0)
            close(probe);
        if (rc == 0 || err == EAGAIN) {
            ae__set_error(AE_ESTATE, "ae_unix_server: %s is in use by a listening server", path);
            goto fail;
        }
        if (err == ECONNREFUSED)
            unlink(path);
    }
    if (bind(fd, (struct sockaddr *)&sun, sizeof sun) < 0) {
        ae__set_errno("ae_unix_server: bind");
        goto fail;
    }
    if (lstat(path, &st) == 0) {
        srv->dev = st.st_dev;
        srv->ino = st.st_ino;
    }
    srv->path = strdup(path);
    if (!srv->path) {
        ae__set_error(AE_ENOMEM, "ae_unix_server: out of memory");
        unlink(path);
        goto fail;
    }
    if (server_listen(srv, fd, backlog, "ae_unix_server: listen") < 0) {
        destroy(srv);
        return NULL;
    }
    return server_done(srv);
fail:
    close(fd);
    destroy(srv);
    return NULL;
}

int ae_server_port(const ae_server *srv)
{
    if (!srv || srv->magic != AE_SERVER_MAGIC || srv->freed) {
        ae__set_error(AE_EINVAL, "ae_server_port: not a live server");
        return 0;
    }
    return srv->path || srv->nfd == 0 ? 0 : port_of(srv->fds[0]);
}

void ae_server_free(ae_server *srv)
{
    if (!srv)
        return;
    if (srv->magic != AE_SERVER_MAGIC || srv->freed) {
        ae__set_error(AE_EINVAL, "ae_server_free: not a live server");
        return;
    }
    if (srv->depth) {
        srv->freed = true;
        release(srv);
        return;
    }
    destroy(srv);
}
