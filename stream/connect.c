/* Outgoing connections: every address of a name, attempts staggered by
 * attempt_delay (RFC 8305, Happy Eyeballs: the next attempt starts when the
 * delay passes or the previous one fails, earlier ones keep going, the first
 * to connect wins), one timeout for the whole, name lookup on a thread.
 * Also ae_stream_connect(), a stream whose fd comes from ae_tcp_connect(). */
#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "internal.h"

#define AE_CONNECT_MAGIC 0x6165636eu /* "aecn" */
#define ATTEMPT_DELAY_DEFAULT 0.25

typedef struct attempt {
    int fd;
    ae_watcher *io;
} attempt;

struct ae_connect {
    uint32_t magic;
    ae_layer_node node;
    ae_loop *loop;
    ae_connect_cb cb;
    void *arg;
    double delay; /* < 0: one attempt at a time */
    int family;
    ae_resolve *resolve;
    ae_watcher *deadline; /* the whole connect's timeout, or NULL */
    ae_watcher *step;     /* the next attempt's start, or the result's delivery */
    struct sockaddr_storage *addrs;
    socklen_t *lens;
    size_t naddrs, next;
    attempt *att; /* one per address */
    int active;   /* attempts in flight */
    int last_err;
    bool result_due; /* deliver result_fd/result_err from the loop */
    int result_fd, result_err;
    bool in_cb;
};

static bool connect_live(const ae_connect *c) { return c && c->magic == AE_CONNECT_MAGIC; }

static void attempts_close(ae_connect *c, int keep_fd)
{
    for (size_t i = 0; i < c->naddrs; i++) {
        attempt *a = &c->att[i];
        ae_watcher_free(a->io);
        a->io = NULL;
        if (a->fd >= 0 && a->fd != keep_fd)
            close(a->fd);
        a->fd = -1;
    }
    c->active = 0;
}

static void destroy(ae_connect *c)
{
    ae__layer_remove(&c->node);
    if (c->resolve)
        ae__resolve_cancel(c->resolve);
    attempts_close(c, -1);
    if (c->result_due && c->result_fd >= 0)
        close(c->result_fd); /* connected, but the caller never got it */
    ae_watcher_free(c->deadline);
    ae_watcher_free(c->step);
    free(c->addrs);
    free(c->lens);
    free(c->att);
    c->magic = 0;
    free(c);
}

static void connect_drop(ae_layer_node *n) { destroy((ae_connect *)((char *)n - offsetof(ae_connect, node))); }

/* From the loop: the one callback, then the connect is gone. */
static void finish(ae_connect *c, int fd, int err)
{
    attempts_close(c, fd);
    if (c->resolve) {
        ae__resolve_cancel(c->resolve);
        c->resolve = NULL;
    }
    c->result_due = false;
    c->in_cb = true;
    c->cb(fd, err, c->arg);
    destroy(c);
}

/* A result found where no callback may run: delivered by the step timer. */
static void finish_later(ae_connect *c, int fd, int err)
{
    attempts_close(c, fd);
    c->result_due = true;
    c->result_fd = fd;
    c->result_err = err;
    ae_timer_set(c->step, 0, 0);
}

static void on_attempt(ae_watcher *w, int revents, void *arg);

/* Start attempts until one is in flight (or connected, or none is left). */
static void try_next(ae_connect *c)
{
    while (c->next < c->naddrs) {
        size_t i = c->next++;
        const struct sockaddr *sa = (const struct sockaddr *)&c->addrs[i];
        int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            c->last_err = errno;
            continue;
        }
        int rc;
        do
            rc = connect(fd, sa, c->lens[i]);
        while (rc < 0 && errno == EINTR);
        if (rc == 0) {
            finish_later(c, fd, 0);
            return;
        }
        /* A unix socket's EAGAIN is a full backlog, not a connect under way. */
        if (errno != EINPROGRESS) {
            c->last_err = errno;
            close(fd);
            continue;
        }
        ae_watcher *io = ae_io(c->loop, fd, AE_WRITE, on_attempt, c);
        if (!io) {
            c->last_err = ENOMEM;
            close(fd);
            continue;
        }
        c->att[i] = (attempt){fd, io};
        c->active++;
        if (c->next < c->naddrs && c->delay >= 0)
            ae_timer_set(c->step, c->delay, 0);
        return;
    }
    if (c->active == 0)
        finish_later(c, -1, c->last_err ? c->last_err : ECONNREFUSED);
}

static void on_attempt(ae_watcher *w, int revents, void *arg)
{
    (void)revents;
    ae_connect *c = arg;
    size_t i = 0;
    while (i < c->naddrs && c->att[i].io != w)
        i++;
    if (i == c->naddrs)
        return;
    attempt *a = &c->att[i];
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(a->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err == EINPROGRESS || err == EALREADY)
        return;
    if (err == 0) {
        finish(c, a->fd, 0);
        return;
    }
    ae_watcher_free(a->io);
    close(a->fd);
    *a = (attempt){-1, NULL};
    c->active--;
    c->last_err = err;
    /* A failure starts the next attempt at once. */
    if (c->next < c->naddrs)
        try_next(c);
    else if (c->active == 0)
        finish(c, -1, err);
}

static void on_step(ae_watcher *w, void *arg)
{
    (void)w;
    ae_connect *c = arg;
    if (c->result_due)
        finish(c, c->result_fd, c->result_err);
    else
        try_next(c);
}

static void on_deadline(ae_watcher *w, void *arg)
{
    (void)w;
    finish(arg, -1, ETIMEDOUT);
}

/* Interleave the families, the first answer's family first (RFC 8305 4). */
static int addrs_take(ae_connect *c, const struct addrinfo *ai)
{
    size_t n = 0;
    for (const struct addrinfo *p = ai; p; p = p->ai_next)
        if (p->ai_addrlen <= sizeof(struct sockaddr_storage))
            n++;
    c->addrs = calloc(n ? n : 1, sizeof *c->addrs);
    c->lens = calloc(n ? n : 1, sizeof *c->lens);
    c->att = calloc(n ? n : 1, sizeof *c->att);
    if (!c->addrs || !c->lens || !c->att)
        return ae__set_error(AE_ENOMEM, "connect: out of memory");
    int first = ai ? ai->ai_family : AF_UNSPEC;
    const struct addrinfo *mine = ai, *other = ai;
    size_t k = 0;
    for (bool turn_first = true; k < n; turn_first = !turn_first) {
        const struct addrinfo **cur = turn_first ? &mine : &other;
        while (*cur && (((*cur)->ai_family == first) != turn_first ||
                        (*cur)->ai_addrlen > sizeof(struct sockaddr_storage)))
            *cur = (*cur)->ai_next;
        if (!*cur)
            continue;
        memcpy(&c->addrs[k], (*cur)->ai_addr, (*cur)->ai_addrlen);
        c->lens[k++] = (*cur)->ai_addrlen;
        *cur = (*cur)->ai_next;
    }
    c->naddrs = n;
    for (size_t i = 0; i < n; i++)
        c->att[i].fd = -1;
    return 0;
}

static int gai_errno(int gai)
{
    switch (gai) {
    case EAI_AGAIN: return EAGAIN;
    case EAI_MEMORY: return ENOMEM;
    case EAI_SYSTEM: return errno ? errno : EIO;
    default: return ENXIO; /* no such name (AnyEvent::Socket's choice) */
    }
}

static void on_resolved(struct addrinfo *answer, int gai_err, void *arg)
{
    ae_connect *c = arg;
    c->resolve = NULL;
    if (gai_err) {
        finish(c, -1, gai_errno(gai_err));
        return;
    }
    int rc = addrs_take(c, answer); /* the answer is the lookup's: it frees it */
    if (rc < 0) {
        finish(c, -1, ENOMEM);
        return;
    }
    try_next(c);
    if (c->result_due)
        finish(c, c->result_fd, c->result_err); /* from the loop already */
}

static ae_connect *connect_new(ae_loop *loop, double timeout, ae_connect_cb cb, void *arg, const char *fn)
{
    if (!loop) {
        ae__set_error(AE_EINVAL, "%s: loop is NULL", fn);
        return NULL;
    }
    if (!cb) {
        ae__set_error(AE_EINVAL, "%s: callback is NULL", fn);
        return NULL;
    }
    if (!isfinite(timeout) || timeout < 0) {
        ae__set_error(AE_EINVAL, "%s: timeout %g: must be finite and >= 0", fn, timeout);
        return NULL;
    }
    ae_connect *c = calloc(1, sizeof *c);
    if (!c) {
        ae__set_error(AE_ENOMEM, "%s: out of memory", fn);
        return NULL;
    }
    c->loop = loop;
    c->cb = cb;
    c->arg = arg;
    c->step = ae_timer(loop, 0, 0, on_step, c);
    if (!c->step) {
        free(c);
        return NULL;
    }
    ae_timer_stop(c->step);
    if (timeout > 0 && !(c->deadline = ae_timer(loop, timeout, 0, on_deadline, c))) {
        ae_watcher_free(c->step);
        free(c);
        return NULL;
    }
    if (ae__layer_add(loop, &c->node, connect_drop) < 0) {
        ae_watcher_free(c->step);
        ae_watcher_free(c->deadline);
        free(c);
        return NULL;
    }
    c->magic = AE_CONNECT_MAGIC;
    return c;
}

ae_connect *ae_tcp_connect(ae_loop *loop, const char *host, const char *service, const ae_connect_opts *o,
                           ae_connect_cb cb, void *arg)
{
    ae_connect_opts opts = o ? *o : (ae_connect_opts){0};
    if (!host || !service) {
        ae__set_error(AE_EINVAL, "ae_tcp_connect: host or service is NULL");
        return NULL;
    }
    if (!isfinite(opts.attempt_delay)) {
        ae__set_error(AE_EINVAL, "ae_tcp_connect: attempt_delay %g: must be finite", opts.attempt_delay);
        return NULL;
    }
    if (opts.family != AF_UNSPEC && opts.family != AF_INET && opts.family != AF_INET6) {
        ae__set_error(AE_EINVAL, "ae_tcp_connect: family %d: AF_UNSPEC, AF_INET or AF_INET6", opts.family);
        return NULL;
    }
    /* A numeric address needs no lookup: resolved here, without a thread. */
    struct addrinfo hints = {.ai_family = opts.family, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST};
    struct addrinfo *answer = NULL;
    int gai = getaddrinfo(host, service, &hints, &answer);
    if (gai != 0 && gai != EAI_NONAME) {
        ae__set_error(AE_EINVAL, "ae_tcp_connect: %s port %s: %s", host, service, gai_strerror(gai));
        return NULL;
    }
    ae_connect *c = connect_new(loop, opts.timeout, cb, arg, "ae_tcp_connect");
    if (!c) {
        if (answer)
            freeaddrinfo(answer);
        return NULL;
    }
    c->family = opts.family;
    c->delay = opts.attempt_delay == 0 ? ATTEMPT_DELAY_DEFAULT : opts.attempt_delay;
    if (gai == 0) {
        int rc = addrs_take(c, answer);
        freeaddrinfo(answer);
        if (rc < 0) {
            destroy(c);
            return NULL;
        }
        try_next(c);
        return c;
    }
    c->resolve = ae__resolve_start(loop, host, service, opts.family, on_resolved, c);
    if (!c->resolve) {
        destroy(c);
        return NULL;
    }
    return c;
}

ae_connect *ae_unix_connect(ae_loop *loop, const char *path, double timeout, ae_connect_cb cb, void *arg)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    if (!path || !*path || strlen(path) >= sizeof sun.sun_path) {
        ae__set_error(AE_EINVAL, "ae_unix_connect: path is NULL, empty or longer than %zu bytes",
                      sizeof sun.sun_path - 1);
        return NULL;
    }
    ae_connect *c = connect_new(loop, timeout, cb, arg, "ae_unix_connect");
    if (!c)
        return NULL;
    strcpy(sun.sun_path, path);
    struct addrinfo ai = {.ai_family = AF_UNIX, .ai_addr = (struct sockaddr *)&sun, .ai_addrlen = sizeof sun};
    if (addrs_take(c, &ai) < 0) {
        destroy(c);
        return NULL;
    }
    c->delay = -1;
    try_next(c);
    return c;
}

void ae_connect_cancel(ae_connect *c)
{
    if (!c)
        return;
    if (!connect_live(c)) {
        ae__set_error(AE_EINVAL, "ae_connect_cancel: not a live connect");
        return;
    }
    if (c->in_cb)
        return; /* freed once its callback returns */
    destroy(c);
}

/* ---- ae_stream_connect ---------------------------------------------------- */

static void stream_connected(int fd, int err, void *arg)
{
    ae_stream *s = arg;
    s->cold->conn = NULL;
    s->connecting = false;
    if (fd < 0) {
        ae__stream_fail(s, err, "connect: %s", strerror(err));
    } else if (ae__stream_attach(s, fd) < 0) {
        close(fd);
        ae__stream_fail(s, ENOMEM, "connect: %s", ae_last_error());
    } else {
        s->connected_due = true;
        ae__stream_flush(s); /* what was written while connecting */
    }
    ae__stream_service(s);
}

static void stream_conn_cancel(void *conn) { ae_connect_cancel(conn); }

ae_stream *ae_stream_connect(ae_loop *loop, const char *host, const char *service, const ae_connect_opts *co,
                             const ae_stream_opts *so, ae_stream_event_cb cb, void *arg)
{
    ae_stream *s = ae__stream_make(loop, so, cb, arg, "ae_stream_connect");
    if (!s)
        return NULL;
    s->close_fd = true;
    s->connecting = true;
    ae_connect *c = NULL;
    if (ae__stream_cold(s, "ae_stream_connect")) /* where the connect is kept */
        c = ae_tcp_connect(loop, host, service, co, stream_connected, s);
    if (!c) {
        int code = ae_last_error_code();
        char msg[256];
        snprintf(msg, sizeof msg, "%s", ae_last_error());
        ae_stream_free(s);
        ae__set_error(code, "%s", msg);
        return NULL;
    }
    ae__layer_remove(&c->node); /* the stream frees it, also when the loop goes */
    s->cold->conn = c;
    s->cold->conn_cancel = stream_conn_cancel;
    return s;
}
