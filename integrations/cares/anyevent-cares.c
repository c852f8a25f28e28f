/*
 * anyevent-cares: c-ares sockets on io watchers, c-ares timeouts on one timer.
 * See anyevent-cares.h for the contract.
 */
#include "anyevent-cares.h"

#include <anyevent/stream.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One open c-ares socket and the io watcher that watches it. */
struct ae_cares_socket {
    struct ae_cares_socket *next;
    ae_cares *owner;
    ares_socket_t fd;
    ae_watcher *io;
};

struct ae_cares {
    ae_loop *loop;
    ares_channel channel;
    int channel_ready;   /* ares_init_options() succeeded */
    ae_watcher *timer;   /* runs c-ares' timeouts; re-armed or stopped, never re-created */
    int process_soon;    /* the timer is armed to fire in the next iteration */
    struct ae_cares_socket *sockets;
    int socket_count;
    int resolves_connects; /* ae_cares_resolve_connects(): the loop's resolver */
    char error[256];
};

/* Remember the first failure (the one worth reading); why: anyevent's
 * message for it, or NULL. */
static void note_error(ae_cares *c, const char *what, ares_socket_t fd, const char *why)
{
    if (c->error[0])
        return;
    char socket_part[48] = "";
    if (fd != ARES_SOCKET_BAD)
        snprintf(socket_part, sizeof socket_part, " for c-ares socket %d", (int)fd);
    snprintf(c->error, sizeof c->error, "ae_cares: %s%s%s%s",
             what, socket_part, why ? ": " : "", why ? why : "");
}

static struct ae_cares_socket *find_socket(ae_cares *c, ares_socket_t fd)
{
    for (struct ae_cares_socket *s = c->sockets; s; s = s->next)
        if (s->fd == fd)
            return s;
    return NULL;
}

static void on_socket_ready(ae_watcher *w, int revents, void *arg)
{
    (void)w;
    struct ae_cares_socket *s = arg;
    /* c-ares may close this socket (and so free s and w) while processing. */
    ae_cares *c = s->owner;
    ares_socket_t fd = s->fd;
    /* AE_ERROR (the fd was closed under c-ares) goes in as readable: the
     * read fails and c-ares drops the connection. */
    ares_socket_t readable = (revents & (AE_READ | AE_ERROR)) ? fd : ARES_SOCKET_BAD;
    ares_socket_t writable = (revents & AE_WRITE) ? fd : ARES_SOCKET_BAD;
    ares_process_fd(c->channel, readable, writable);
    ae_cares_reschedule(c);
}

static void on_timeout(ae_watcher *w, void *arg)
{
    (void)w;
    ae_cares *c = arg;
    c->process_soon = 0;
    ares_process_fd(c->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    ae_cares_reschedule(c);
}

static struct ae_cares_socket *add_socket(ae_cares *c, ares_socket_t fd, int events)
{
    struct ae_cares_socket *s = malloc(sizeof *s);
    if (!s) {
        note_error(c, "out of memory", fd, NULL);
        return NULL;
    }
    s->owner = c;
    s->fd = fd;
    s->io = ae_io(c->loop, (int)fd, events, on_socket_ready, s);
    if (!s->io) {
        note_error(c, "cannot watch", fd, ae_last_error());
        free(s);
        return NULL;
    }
    s->next = c->sockets;
    c->sockets = s;
    c->socket_count++;
    return s;
}

static void remove_socket(ae_cares *c, struct ae_cares_socket *gone)
{
    for (struct ae_cares_socket **p = &c->sockets; *p; p = &(*p)->next) {
        if (*p == gone) {
            *p = gone->next;
            break;
        }
    }
    ae_watcher_free(gone->io);
    free(gone);
    c->socket_count--;
}

/* c-ares opened a socket (connected, not yet used): watch it now, so that a
 * socket anyevent cannot watch is refused here and c-ares treats it as a
 * failed connection, instead of queries that silently never complete. */
static int on_socket_created(ares_socket_t fd, int type, void *arg)
{
    (void)type;
    ae_cares *c = arg;
    struct ae_cares_socket *stale = find_socket(c, fd);
    if (stale) /* closed without a state callback (another c-ares version) */
        remove_socket(c, stale);
    /* c-ares always wants to read an open socket; it says so next. */
    return add_socket(c, fd, AE_READ) ? 0 : -1;
}

static void on_socket_state(void *arg, ares_socket_t fd, int readable, int writable)
{
    ae_cares *c = arg;
    struct ae_cares_socket *s = find_socket(c, fd);
    int events = (readable ? AE_READ : 0) | (writable ? AE_WRITE : 0);
    if (!events) { /* c-ares is about to close it */
        if (s)
            remove_socket(c, s);
        return;
    }
    if (!s) { /* a c-ares that did not call the create callback first */
        add_socket(c, fd, events);
        return;
    }
    if (ae_io_set(s->io, events) < 0)
        note_error(c, "cannot change the io watcher", fd, ae_last_error());
}

int ae_cares_new(ae_loop *loop, const struct ares_options *opts, int optmask, ae_cares **out)
{
    if (out)
        *out = NULL;
    if (!loop || !out || (optmask && !opts) || (optmask & ARES_OPT_SOCK_STATE_CB))
        return ARES_EBADFLAGS;
    ae_cares *c = calloc(1, sizeof *c);
    if (!c)
        return ARES_ENOMEM;
    c->loop = loop;
    /* The channel's timer for good, made here so that failing to make it is
     * reported now, not at the first query; disarmed until a query arms it,
     * so an idle channel never wakes the loop. */
    c->timer = ae_timer(loop, 0, 0, on_timeout, c);
    if (!c->timer) {
        free(c);
        return ARES_ENOMEM;
    }
    if (ae_timer_stop(c->timer) < 0) {
        ae_watcher_free(c->timer);
        free(c);
        return ARES_ENOMEM; /* an unusable timer: as if it could not be made */
    }
    struct ares_options all;
    if (opts)
        all = *opts;
    else
        memset(&all, 0, sizeof all);
    all.sock_state_cb = on_socket_state;
    all.sock_state_cb_data = c;
    int status = ares_init_options(&c->channel, &all, optmask | ARES_OPT_SOCK_STATE_CB);
    if (status != ARES_SUCCESS) {
        ae_watcher_free(c->timer);
        free(c);
        return status;
    }
    c->channel_ready = 1;
    ares_set_socket_callback(c->channel, on_socket_created, c);
    *out = c;
    return ARES_SUCCESS;
}

ares_channel ae_cares_channel(const ae_cares *c) { return c->channel; }

void ae_cares_reschedule(ae_cares *c)
{
    struct timeval tv;
    struct timeval *next = ares_timeout(c->channel, NULL, &tv);
    c->process_soon = 0;
    /* No query left: disarmed, the timer no longer keeps ae_run() or the
     * host's loop going, and wakes nothing. */
    int rc = next ? ae_timer_set(c->timer, (double)next->tv_sec + next->tv_usec / 1e6, 0)
                  : ae_timer_stop(c->timer);
    if (rc < 0)
        note_error(c, "cannot re-arm the timer", ARES_SOCKET_BAD, ae_last_error());
}

/* After a query is started: let the timer run c-ares in the next iteration,
 * which then re-arms it exactly. Constant time, where ares_timeout() walks
 * every pending query: n queries started in a row would cost n^2. */
static void schedule_soon(ae_cares *c)
{
    if (c->process_soon)
        return;
    if (ae_timer_set(c->timer, 0, 0) < 0)
        note_error(c, "cannot re-arm the timer", ARES_SOCKET_BAD, ae_last_error());
    else
        c->process_soon = 1;
}

void ae_cares_gethostbyname(ae_cares *c, const char *name, int family,
                            ares_host_callback callback, void *arg)
{
    ares_gethostbyname(c->channel, name, family, callback, arg);
    schedule_soon(c);
}

void ae_cares_getaddrinfo(ae_cares *c, const char *node, const char *service,
                          const struct ares_addrinfo_hints *hints,
                          ares_addrinfo_callback callback, void *arg)
{
    ares_getaddrinfo(c->channel, node, service, hints, callback, arg);
    schedule_soon(c);
}

void ae_cares_query(ae_cares *c, const char *name, int dnsclass, int type,
                    ares_callback callback, void *arg)
{
    ares_query(c->channel, name, dnsclass, type, callback, arg);
    schedule_soon(c);
}

void ae_cares_search(ae_cares *c, const char *name, int dnsclass, int type,
                     ares_callback callback, void *arg)
{
    ares_search(c->channel, name, dnsclass, type, callback, arg);
    schedule_soon(c);
}

void ae_cares_send(ae_cares *c, const unsigned char *qbuf, int qlen,
                   ares_callback callback, void *arg)
{
    ares_send(c->channel, qbuf, qlen, callback, arg);
    schedule_soon(c);
}

void ae_cares_cancel(ae_cares *c)
{
    ares_cancel(c->channel);
    ae_cares_reschedule(c);
}

/* ---- the resolver of ae_tcp_connect() ------------------------------------ */

/* One lookup for a connect. Its answer is handed over from a zero timer, so
 * that it reaches the connect from the loop even when c-ares answers inside
 * ares_getaddrinfo(). Freed when delivered, or (cancelled) when both the
 * connect and c-ares let go of it. */
struct connect_lookup {
    ae_watcher *timer; /* NULL once cancelled */
    bool answered;
    struct addrinfo *answer;
    int gai_err;
    ae_resolver_done done;
    void *done_arg;
};

static void answer_free(void *ctx, struct addrinfo *ai)
{
    (void)ctx;
    while (ai) {
        struct addrinfo *next = ai->ai_next;
        free(ai); /* the address is in the same block */
        ai = next;
    }
}

/* c-ares' answer as getaddrinfo() gives it: one block per address. */
static struct addrinfo *answer_convert(const struct ares_addrinfo *res, int *gai_err)
{
    struct addrinfo *head = NULL, **tail = &head;
    for (const struct ares_addrinfo_node *n = res ? res->nodes : NULL; n; n = n->ai_next) {
        struct addrinfo *ai = calloc(1, sizeof *ai + (size_t)n->ai_addrlen);
        if (!ai) {
            answer_free(NULL, head);
            *gai_err = EAI_MEMORY;
            return NULL;
        }
        ai->ai_family = n->ai_family;
        ai->ai_socktype = SOCK_STREAM;
        ai->ai_protocol = n->ai_protocol;
        ai->ai_addrlen = (socklen_t)n->ai_addrlen;
        ai->ai_addr = (struct sockaddr *)(ai + 1);
        memcpy(ai->ai_addr, n->ai_addr, (size_t)n->ai_addrlen);
        *tail = ai;
        tail = &ai->ai_next;
    }
    if (!head)
        *gai_err = EAI_NONAME;
    return head;
}

static int gai_from_ares(int status)
{
    switch (status) {
    case ARES_ENOTFOUND:
    case ARES_ENODATA:
    case ARES_ENONAME: return EAI_NONAME;
    case ARES_ENOMEM: return EAI_MEMORY;
    case ARES_ESERVICE: return EAI_SERVICE;
    case ARES_EBADFAMILY: return EAI_FAMILY;
    case ARES_ETIMEOUT:
    case ARES_ECONNREFUSED:
    case ARES_ESERVFAIL:
    case ARES_ECANCELLED:
    case ARES_EDESTRUCTION: return EAI_AGAIN;
    default: return EAI_FAIL;
    }
}

static void on_connect_answer(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
    (void)timeouts;
    struct connect_lookup *l = arg;
    if (!l->timer) { /* cancelled */
        if (res)
            ares_freeaddrinfo(res);
        free(l);
        return;
    }
    l->gai_err = 0;
    if (status == ARES_SUCCESS)
        l->answer = answer_convert(res, &l->gai_err);
    else
        l->gai_err = gai_from_ares(status);
    if (res)
        ares_freeaddrinfo(res);
    l->answered = true;
    ae_timer_set(l->timer, 0, 0);
}

static void deliver_connect_answer(ae_watcher *w, void *arg)
{
    struct connect_lookup *l = arg;
    ae_watcher_free(w);
    struct addrinfo *answer = l->answer;
    int gai_err = l->gai_err;
    ae_resolver_done done = l->done;
    void *done_arg = l->done_arg;
    free(l);
    done(answer, gai_err, done_arg);
}

static void *connect_lookup_start(void *ctx, const char *host, const char *service, int family,
                                  ae_resolver_done done, void *done_arg)
{
    ae_cares *c = ctx;
    struct connect_lookup *l = calloc(1, sizeof *l);
    if (!l) {
        ae_set_error(AE_ENOMEM, "ae_cares: out of memory for a lookup");
        return NULL;
    }
    l->timer = ae_timer(c->loop, 0, 0, deliver_connect_answer, l);
    if (!l->timer) {
        free(l);
        return NULL;
    }
    ae_timer_stop(l->timer); /* armed by the answer */
    l->done = done;
    l->done_arg = done_arg;
    struct ares_addrinfo_hints hints = {.ai_family = family, .ai_socktype = SOCK_STREAM};
    ae_cares_getaddrinfo(c, host, service, &hints, on_connect_answer, l);
    return l;
}

static void connect_lookup_cancel(void *ctx, void *lookup)
{
    (void)ctx;
    struct connect_lookup *l = lookup;
    ae_watcher_free(l->timer);
    l->timer = NULL;
    if (l->answered) { /* c-ares is done with it */
        answer_free(NULL, l->answer);
        free(l);
    }
}

static const ae_resolver connect_resolver = {connect_lookup_start, connect_lookup_cancel, answer_free};

int ae_cares_resolve_connects(ae_cares *c)
{
    if (!c)
        return ae_set_error(AE_EINVAL, "ae_cares_resolve_connects: c is NULL");
    int rc = ae_connect_set_resolver(c->loop, &connect_resolver, c);
    if (rc == 0)
        c->resolves_connects = 1;
    return rc;
}

void ae_cares_free(ae_cares *c)
{
    if (!c)
        return;
    /* Only if still the loop's: another channel may have taken over since. */
    void *ctx = NULL;
    if (c->resolves_connects && ae_connect_get_resolver(c->loop, &ctx) && ctx == c)
        ae_connect_set_resolver(c->loop, NULL, NULL);
    if (c->channel_ready)
        ares_destroy(c->channel); /* callbacks, then a state callback per socket */
    while (c->sockets)            /* whatever c-ares did not report closed */
        remove_socket(c, c->sockets);
    ae_watcher_free(c->timer);
    free(c);
}

int ae_cares_sockets(const ae_cares *c) { return c->socket_count; }

const char *ae_cares_error(const ae_cares *c) { return c->error; }
