/* ae_rpc: a process run as a worker (serve.c's rpc_serve) that answers byte
 * requests in order. Requests are framed (u32 len, bytes) into one output
 * buffer; replies (u32 len, i32 rc, bytes) are matched to calls by order. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "parent.h"

#define AE_RPC_MAGIC 0x61657263u /* "aerc" */

struct rpc_call {
    struct rpc_call *next;
    ae_rpc_cb cb;
    void *arg;
};

struct ae_rpc {
    uint32_t magic;
    ae_fork_ctx *ctx;
    ae_rpc *next, *prev;
    ae_fork *p;
    int sock;
    ae_watcher *io, *defer;
    bool eof, exited, dead, freed;
    bool delivering; /* a nested run of the loop must not move the buffer under us */
    int calling;
    char *error;
    unsigned char *out;
    size_t out_len, out_off, out_cap;
    struct rpc_call *head, *tail; /* waiting for their replies, oldest first */
    unsigned char *in; /* replies read, not yet delivered */
    size_t in_have, in_cap;
};

static bool rpc_ok(const ae_rpc *r, const char *fn)
{
    if (!r || r->magic != AE_RPC_MAGIC || r->freed) {
        ae__set_error(AE_EINVAL, "%s: not a live ae_rpc", fn);
        return false;
    }
    return true;
}

void ae__rpc_destroy(ae_rpc *r)
{
    ae_fork_ctx *ctx = r->ctx;
    if (r->prev)
        r->prev->next = r->next;
    else
        ctx->rpcs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    ae_watcher_free(r->io);
    ae_watcher_free(r->defer);
    if (r->sock >= 0)
        close(r->sock);
    while (r->head) {
        struct rpc_call *c = r->head;
        r->head = c->next;
        free(c);
    }
    free(r->out);
    free(r->in);
    free(r->error);
    r->magic = 0;
    free(r);
}

/* Freed, and nothing left to answer: close; the worker exits at EOF. */
static void maybe_finish(ae_rpc *r)
{
    if (!r->freed || r->calling || r->head)
        return;
    ae_fork *p = r->p;
    ae__rpc_destroy(r);
    ae_fork_free(p); /* reaped when it exits */
}

static void interest(ae_rpc *r)
{
    if (r->io)
        ae_io_set(r->io, AE_READ | (r->out_off < r->out_len ? AE_WRITE : 0));
}

static bool stop_calling(ae_rpc *r) { return ae__loop_freeing(r->ctx->loop); }

/* Fail every call that has no reply (the worker is gone). */
static void fail_all(ae_rpc *r)
{
    r->calling++;
    while (r->head && !stop_calling(r)) {
        struct rpc_call *c = r->head;
        r->head = c->next;
        if (!r->head)
            r->tail = NULL;
        if (c->cb)
            c->cb(r, NULL, 0, AE_EPROC, c->arg);
        free(c);
    }
    r->calling--;
    maybe_finish(r);
}

static void die(ae_rpc *r, const char *why)
{
    if (!r->error)
        r->error = strdup(why);
    r->dead = true;
    ae_watcher_free(r->io);
    r->io = NULL;
    if (r->sock >= 0)
        close(r->sock);
    r->sock = -1;
    r->out_len = r->out_off = 0;
}

static void on_defer(ae_watcher *w, void *arg)
{
    (void)w;
    fail_all(arg);
}

static int flush(ae_rpc *r)
{
    while (r->out_off < r->out_len) {
        ssize_t n = send(r->sock, r->out + r->out_off, r->out_len - r->out_off, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n < 0)
            return -1;
        r->out_off += (size_t)n;
    }
    if (r->out_off == r->out_len)
        r->out_off = r->out_len = 0;
    interest(r);
    return 0;
}

static void at_eof(ae_rpc *r)
{
    r->eof = true;
    ae_watcher_free(r->io);
    r->io = NULL;
    if (r->exited) { /* else on_exit will */
        die(r, r->error ? r->error : "the worker closed its socket");
        fail_all(r);
    }
}

/* Deliver the complete replies in the buffer; false if the loop is being
 * freed or the worker broke the protocol. */
static bool deliver_replies(ae_rpc *r)
{
    size_t pos = 0;
    bool ok = true;
    r->delivering = true;
    while (r->in_have - pos >= AE_RPC_REP_HDR) {
        uint32_t len = ae__wire_u32(r->in + pos);
        if (r->in_have - pos < AE_RPC_REP_HDR + (size_t)len)
            break;
        struct rpc_call *c = r->head;
        if (!c) {
            r->delivering = false;
            die(r, "the worker sent a reply nobody asked for");
            fail_all(r);
            return false;
        }
        int32_t rc;
        memcpy(&rc, r->in + pos + 4, 4);
        r->head = c->next;
        if (!r->head)
            r->tail = NULL;
        if (c->cb)
            c->cb(r, r->in + pos + AE_RPC_REP_HDR, len, rc ? AE_EPROC : 0, c->arg);
        free(c);
        pos += AE_RPC_REP_HDR + len;
        if (stop_calling(r)) {
            ok = false;
            break;
        }
    }
    r->delivering = false;
    memmove(r->in, r->in + pos, r->in_have - pos);
    r->in_have -= pos;
    return ok;
}

/* Read what is there (buffered: no fds travel after READY), then deliver. */
static void read_replies(ae_rpc *r)
{
    while (r->io && !r->delivering && !stop_calling(r)) {
        size_t need = r->in_have >= AE_RPC_REP_HDR ? AE_RPC_REP_HDR + (size_t)ae__wire_u32(r->in) : 0;
        if (need > AE_FORK_MAX_FRAME + AE_RPC_REP_HDR) {
            die(r, "the worker sent a reply too big");
            fail_all(r);
            return;
        }
        if (r->in_cap < 65536 || need > r->in_cap) {
            size_t cap = need > 65536 ? need : 65536;
            unsigned char *in = realloc(r->in, cap);
            if (!in) {
                die(r, "out of memory for a reply");
                fail_all(r);
                return;
            }
            r->in = in;
            r->in_cap = cap;
        }
        ssize_t n = recv(r->sock, r->in + r->in_have, r->in_cap - r->in_have, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            at_eof(r);
            return;
        }
        r->in_have += (size_t)n;
        if (!deliver_replies(r))
            return;
    }
}

static void on_io(ae_watcher *w, int revents, void *arg)
{
    (void)w;
    ae_rpc *r = arg;
    r->calling++;
    if ((revents & AE_WRITE) && flush(r) < 0)
        at_eof(r);
    if (r->io && (revents & (AE_READ | AE_ERROR)))
        read_replies(r);
    r->calling--;
    maybe_finish(r);
}

static void on_exit_cb(ae_fork *p, int status, void *arg)
{
    ae_rpc *r = arg;
    char st[128];
    ae__fork_status_text(st, sizeof st, ae_fork_pid(p), status);
    r->exited = true;
    if (!r->error) {
        size_t n = strlen(st) + 16;
        if ((r->error = malloc(n)))
            snprintf(r->error, n, "worker: %s", st);
    }
    if (r->eof || r->sock < 0) {
        die(r, st);
        fail_all(r);
    }
}

static void on_started(ae_fork *p, int sock, void *arg)
{
    ae_rpc *r = arg;
    if (sock < 0) {
        die(r, ae_fork_error(p) ? ae_fork_error(p) : "the worker did not start");
        fail_all(r);
        return;
    }
    r->sock = sock;
    ae_fork_on_exit(p, on_exit_cb, r);
    r->io = ae_io(r->ctx->loop, sock, AE_READ, on_io, r);
    if (!r->io) {
        die(r, ae_last_error());
        fail_all(r);
        return;
    }
    r->calling++;
    if (flush(r) < 0)
        at_eof(r);
    r->calling--;
    maybe_finish(r);
}

ae_rpc *ae_rpc_new(ae_fork *p, const char *handler_symbol)
{
    if (!ae__fork_ok(p, "ae_rpc_new"))
        return NULL;
    if (!handler_symbol) {
        ae__set_error(AE_EINVAL, "ae_rpc_new: handler symbol is NULL");
        ae_fork_free(p);
        return NULL;
    }
    ae_rpc *r = calloc(1, sizeof *r);
    if (!r) {
        ae__set_error(AE_ENOMEM, "out of memory");
        ae_fork_free(p);
        return NULL;
    }
    r->magic = AE_RPC_MAGIC;
    r->ctx = p->ctx;
    r->p = p;
    r->sock = -1;
    if (ae__fork_run_cmd(p, AE_W_RPC, handler_symbol, on_started, r) < 0) {
        free(r);
        ae_fork_free(p);
        return NULL;
    }
    p->owned = true;
    r->next = r->ctx->rpcs;
    if (r->next)
        r->next->prev = r;
    r->ctx->rpcs = r;
    return r;
}

int ae_rpc_call(ae_rpc *r, const void *req, size_t len, ae_rpc_cb cb, void *arg)
{
    if (!rpc_ok(r, "ae_rpc_call"))
        return AE_EINVAL;
    if ((!req && len) || len > AE_FORK_MAX_FRAME)
        return ae__set_error(AE_EINVAL, "ae_rpc_call: bad request (NULL data, or more than %u bytes)",
                             AE_FORK_MAX_FRAME);
    struct rpc_call *c = malloc(sizeof *c);
    if (!c)
        return ae__set_error(AE_ENOMEM, "out of memory");
    if (!r->dead) {
        size_t need = r->out_len + AE_RPC_REQ_HDR + len;
        if (need > r->out_cap) {
            size_t cap = r->out_cap ? r->out_cap : 4096;
            while (cap < need)
                cap *= 2;
            unsigned char *out = realloc(r->out, cap);
            if (!out) {
                free(c);
                return ae__set_error(AE_ENOMEM, "out of memory");
            }
            r->out = out;
            r->out_cap = cap;
        }
        uint32_t l = (uint32_t)len;
        memcpy(r->out + r->out_len, &l, 4);
        if (len)
            memcpy(r->out + r->out_len + 4, req, len);
        r->out_len = need;
    }
    *c = (struct rpc_call){NULL, cb, arg};
    if (r->tail)
        r->tail->next = c;
    else
        r->head = c;
    r->tail = c;
    if (r->dead) { /* fails on the loop */
        if (r->defer)
            ae_timer_set(r->defer, 0, 0);
        else
            r->defer = ae_timer(r->ctx->loop, 0, 0, on_defer, r);
    } else if (r->io && r->out_len - r->out_off == AE_RPC_REQ_HDR + len) {
        if (flush(r) < 0) /* seen again by the io watcher as EOF */
            interest(r);
    }
    return 0;
}

const char *ae_rpc_error(const ae_rpc *r)
{
    return r && r->magic == AE_RPC_MAGIC && r->dead ? r->error : NULL;
}

void ae_rpc_free(ae_rpc *r)
{
    if (!r)
        return;
    if (!rpc_ok(r, "ae_rpc_free"))
        return;
    r->freed = true;
    maybe_finish(r);
}
