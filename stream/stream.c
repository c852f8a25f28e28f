/* The stream: creation, its parts (hot, cold, timing), the io watcher it
 * runs on, the one place where its callbacks run (ae__stream_service), fatal errors, and freeing
 * (at once, or once the stream's callbacks have returned). */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"


/* Issue 18's budget: an idle stream without timeouts or limits costs at
 * most 256 bytes beyond its io watcher, and its hot part is its only
 * allocation (glibc's malloc adds 8 bytes and rounds up to 16): on LP64 it
 * must stay within 232 bytes. Rare state belongs in ae_stream_cold. */
_Static_assert(sizeof(void *) != 8 || sizeof(struct ae_stream) <= 232,
               "struct ae_stream outgrew the idle-stream memory budget");

bool ae__stream_ok(const ae_stream *s, const char *fn)
{
    if (!s || s->magic != AE_STREAM_MAGIC || s->freed) {
        ae__set_error(AE_EINVAL, "%s: not a live stream", fn);
        return false;
    }
    return true;
}

bool ae__stream_reading(const ae_stream *s)
{
    return (s->rq_count || s->has_on_read) && !s->eof && !s->failed && !s->closing && !s->freed;
}

void ae__stream_interest(ae_stream *s)
{
    if (!s->io)
        return;
    int ev = 0;
    if (ae__stream_reading(s) && ae__rbuf_len(&s->rbuf) <= ae__rbuf_max(s))
        ev |= AE_READ;
    if (ae__wq_bytes(s) && !s->failed)
        ev |= AE_WRITE;
    if (s->tr && !s->failed) {
        ev = s->tr->events(ae__tr_ctx(s), ev);
        s->tr_pending = (ev & AE_STREAM_TRANSPORT_PENDING) != 0;
        ev &= AE_READ | AE_WRITE;
        if (s->tr_pending && ae__stream_reading(s))
            ae__stream_wake(s); /* input inside the transport: the fd will not say so */
    }
    if (ev != s->io_events && ae_io_set(s->io, ev) == 0)
        s->io_events = (uint8_t)ev;
}

void ae__stream_wake(ae_stream *s)
{
    if (s->depth) {
        s->again = true;
        return;
    }
    ae__layer_wake(s->loop, s);
}

ae_stream_cold *ae__stream_cold(ae_stream *s, const char *fn)
{
    if (s->cold)
        return s->cold;
    ae_stream_cold *c = calloc(1, sizeof *c);
    if (!c) {
        ae__set_error(AE_ENOMEM, "%s: out of memory", fn);
        return NULL;
    }
    c->rbuf_max = AE_RBUF_MAX_DEFAULT;
    c->wbuf_high = AE_WBUF_HIGH_DEFAULT;
    s->cold = c;
    return c;
}

void ae__stream_fail(ae_stream *s, int err, const char *fmt, ...)
{
    if (s->failed || s->freed)
        return;
    s->failed = true;
    /* Without memory for the cold part the errno is lost (ENOMEM is
     * reported) and the message is "out of memory for the message". */
    ae_stream_cold *c = ae__stream_cold(s, "ae_stream");
    if (c) {
        c->fail_err = err;
        va_list ap;
        va_start(ap, fmt);
        if (vasprintf(&c->error, fmt, ap) < 0)
            c->error = NULL;
        va_end(ap);
    }
    if (s->io && s->io_events && ae_io_set(s->io, 0) == 0)
        s->io_events = 0;
    ae__stream_wake(s);
}

static void sockopts_apply(ae_stream *s)
{
    int one = 1;
    if (!s->is_socket)
        return;
    /* Meaningless on other socket kinds (unix): their refusal is ignored. */
    if (s->nodelay)
        (void)setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (s->keepalive)
        (void)setsockopt(s->fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
}

static void on_io(ae_watcher *w, int revents, void *arg);

/* Checks the options and keeps them: flags in the hot part, limits other
 * than the defaults in the cold part, timeouts in the timing part. */
static int opts_take(ae_stream *s, const ae_stream_opts *o, const char *fn)
{
    ae_stream_opts d = o ? *o : (ae_stream_opts){0};
    if (d.flags & ~(unsigned)(AE_STREAM_CLOSE_FD | AE_STREAM_NODELAY | AE_STREAM_KEEPALIVE))
        return ae__set_error(AE_EINVAL, "%s: unknown flags %#x", fn, d.flags);
    const double t[3] = {d.timeout, d.rtimeout, d.wtimeout};
    for (int i = 0; i < 3; i++)
        if (!isfinite(t[i]) || t[i] < 0)
            return ae__set_error(AE_EINVAL, "%s: timeout %g: must be finite and >= 0", fn, t[i]);
    if (!d.rbuf_max)
        d.rbuf_max = AE_RBUF_MAX_DEFAULT;
    if (!d.wbuf_high)
        d.wbuf_high = AE_WBUF_HIGH_DEFAULT;
    if (d.wbuf_low > d.wbuf_high)
        return ae__set_error(AE_EINVAL, "%s: wbuf_low %zu is above wbuf_high %zu", fn, d.wbuf_low, d.wbuf_high);
    if (d.wbuf_max && d.wbuf_max < d.wbuf_high)
        return ae__set_error(AE_EINVAL, "%s: wbuf_max %zu is below wbuf_high %zu", fn, d.wbuf_max, d.wbuf_high);
    s->close_fd = (d.flags & AE_STREAM_CLOSE_FD) != 0;
    s->nodelay = (d.flags & AE_STREAM_NODELAY) != 0;
    s->keepalive = (d.flags & AE_STREAM_KEEPALIVE) != 0;
    if (d.rbuf_max != AE_RBUF_MAX_DEFAULT || d.wbuf_high != AE_WBUF_HIGH_DEFAULT || d.wbuf_low || d.wbuf_max) {
        ae_stream_cold *c = ae__stream_cold(s, fn);
        if (!c)
            return AE_ENOMEM;
        c->rbuf_max = d.rbuf_max;
        c->wbuf_high = d.wbuf_high;
        c->wbuf_low = d.wbuf_low;
        c->wbuf_max = d.wbuf_max;
    }
    if (d.timeout > 0 || d.rtimeout > 0 || d.wtimeout > 0) {
        if (ae__stream_timing(s, fn) < 0)
            return AE_ENOMEM;
        s->tm->timeout = d.timeout;
        s->tm->rtimeout = d.rtimeout;
        s->tm->wtimeout = d.wtimeout;
    }
    return 0;
}

int ae__stream_timing(ae_stream *s, const char *fn)
{
    if (s->tm)
        return 0;
    ae_stream_timing *t = calloc(1, sizeof *t);
    if (!t)
        return ae__set_error(AE_ENOMEM, "%s: out of memory", fn);
    /* The three timeouts and the linger share one deadline in the loop's
     * heap; it moves when it passes, not per read or write. */
    if (ae__layer_tmo_reserve(s->loop) < 0) {
        free(t);
        return ae__set_error(AE_ENOMEM, "%s: out of memory", fn);
    }
    t->timer_due = INFINITY;
    t->last_any = t->last_read = t->last_write = ae_now(s->loop);
    s->tm = t;
    return 0;
}

void ae__stream_timing_fini(ae_stream *s)
{
    if (!s->tm)
        return;
    ae__layer_tmo_release(s->loop, s);
    free(s->tm);
    s->tm = NULL;
}

/* What the parts hold, and the parts. */
static void parts_free(ae_stream *s)
{
    ae__stream_timing_fini(s);
    ae__rbuf_fini(&s->rbuf);
    ae__stream_rq_fini(s);
    if (s->cold) {
        ae__wq_fini(&s->cold->wq);
        free(s->cold->error);
        free(s->cold);
        s->cold = NULL;
    }
}

static void stream_drop(ae_layer_node *n);

/* A stream without an fd yet (fd -1): the part ae_stream_new() and
 * ae_stream_connect() share. */
ae_stream *ae__stream_make(ae_loop *loop, const ae_stream_opts *o, ae_stream_event_cb cb, void *arg,
                           const char *fn)
{
    if (!loop) {
        ae__set_error(AE_EINVAL, "%s: loop is NULL", fn);
        return NULL;
    }
    if (!cb) {
        ae__set_error(AE_EINVAL, "%s: callback is NULL", fn);
        return NULL;
    }
    ae_stream *s = calloc(1, sizeof *s);
    if (!s) {
        ae__set_error(AE_ENOMEM, "%s: out of memory", fn);
        return NULL;
    }
    s->fd = -1;
    s->loop = loop;
    s->cb = cb;
    s->arg = arg;
    s->rq = &s->rq_one;
    s->rq_cap = 1;
    if (opts_take(s, o, fn) < 0 || ae__layer_add(loop, &s->node, stream_drop) < 0) {
        parts_free(s);
        free(s);
        return NULL;
    }
    s->magic = AE_STREAM_MAGIC;
    return s;
}

int ae__stream_attach(ae_stream *s, int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0)
        return ae__set_error(AE_EBADF, "ae_stream: fd %d is not open", fd);
    if (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return ae__set_errno("ae_stream: fcntl(O_NONBLOCK)");
    int type;
    socklen_t len = sizeof type;
    s->is_socket = getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0;
    s->io = ae_io(s->loop, fd, 0, on_io, s);
    if (!s->io)
        return ae_last_error_code();
    s->fd = fd;
    s->io_events = 0;
    sockopts_apply(s);
    if (s->tm)
        s->tm->last_any = s->tm->last_read = s->tm->last_write = ae_now(s->loop);
    ae__stream_timer_rearm(s);
    return 0;
}

ae_stream *ae_stream_new(ae_loop *loop, int fd, const ae_stream_opts *o, ae_stream_event_cb cb, void *arg)
{
    if (fd < 0 || fcntl(fd, F_GETFD) < 0) {
        ae__set_error(AE_EBADF, "ae_stream_new: fd %d is not open", fd);
        return NULL;
    }
    ae_stream *s = ae__stream_make(loop, o, cb, arg, "ae_stream_new");
    if (!s)
        return NULL;
    if (ae__stream_attach(s, fd) < 0) {
        int code = ae_last_error_code();
        char msg[256];
        snprintf(msg, sizeof msg, "%s", ae_last_error());
        s->close_fd = false; /* a failed call leaves the fd alone */
        ae_stream_free(s);
        ae__set_error(code, "%s", msg);
        return NULL;
    }
    return s;
}

/* Stop watching and let go of the fd; the struct stays until destroy(). */
static void release(ae_stream *s)
{
    ae_watcher_free(s->io);
    s->io = NULL;
    if (s->cold && s->cold->conn) {
        s->cold->conn_cancel(s->cold->conn);
        s->cold->conn = NULL;
    }
    if (s->fd >= 0 && s->close_fd)
        close(s->fd);
    s->fd = -1;
}

/* from_loop: the loop runs us (not a call), so done callbacks may run. */
static void destroy(ae_stream *s, bool from_loop)
{
    if (from_loop)
        ae__stream_run_dones(s, true);
    ae__layer_remove(&s->node);
    ae__layer_unwake(s->loop, s);
    release(s);
    if (s->tr && s->tr->free)
        s->tr->free(ae__tr_ctx(s));
    parts_free(s);
    s->magic = 0;
    free(s);
}

/* The loop is being freed with the stream still on it: no callback runs. */
static void stream_drop(ae_layer_node *n)
{
    ae_stream *s = (ae_stream *)((char *)n - offsetof(ae_stream, node));
    destroy(s, false);
}

void ae_stream_free(ae_stream *s)
{
    if (!s || !ae__stream_ok(s, "ae_stream_free"))
        return;
    s->freed = true;
    release(s);
    if (s->depth)
        return; /* the stream's callbacks are on the stack: destroyed when they return */
    if (s->cold && ae__wq_has_refs(&s->cold->wq)) {
        ae__stream_wake(s); /* their done callbacks run from the loop, not from this call */
        return;
    }
    destroy(s, false);
}

int ae_stream_close(ae_stream *s, double linger)
{
    if (!ae__stream_ok(s, "ae_stream_close"))
        return AE_EINVAL;
    if (!isfinite(linger) || linger < 0)
        return ae__set_error(AE_EINVAL, "ae_stream_close: linger %g: must be finite and >= 0", linger);
    /* Lingering needs the timer: made first, so that its failure changes nothing. */
    bool lingers = !s->failed && !s->connecting && linger > 0 && (s->tr || ae__wq_bytes(s));
    if (lingers && ae__stream_timing(s, "ae_stream_close") < 0)
        return ae_last_error_code();
    s->close_fd = true;
    if (s->tr && !s->failed && !s->connecting && linger > 0) {
        /* A transport ends cleanly (TLS: close_notify) after the queue. */
        s->shut_wanted = true;
        if (ae__wq_bytes(s) == 0 && !s->shut_done)
            ae__stream_shutdown_now(s);
        if (s->shut_done || s->failed) {
            ae_stream_free(s);
            return 0;
        }
    } else if (s->failed || ae__wq_bytes(s) == 0 || linger == 0 || s->connecting) {
        ae_stream_free(s);
        return 0;
    }
    s->closing = true;
    s->tm->linger_until = ae_now(s->loop) + linger;
    ae__stream_interest(s);
    ae__stream_timer_rearm(s);
    return 0;
}

/* Everything due, in order: written write_refs, a fatal error, CONNECTED,
 * timeouts, reads, DRAIN; again while the callbacks queue more work. */
void ae__stream_service(ae_stream *s)
{
    if (s->depth) {
        s->again = true;
        return;
    }
    s->depth++;
    do {
        s->again = false;
        ae__stream_run_dones(s, false);
        if (s->freed)
            break;
        if (s->closing) {
            if (s->failed || (ae__wq_bytes(s) == 0 && (!s->tr || s->shut_done)) ||
                ae_now(s->loop) >= s->tm->linger_until)
                ae_stream_free(s);
            break;
        }
        if (s->failed) {
            if (!s->fail_reported) {
                s->fail_reported = true;
                s->cb(s, AE_STREAM_ERROR, s->cold ? s->cold->fail_err : ENOMEM, s->arg);
                if (!s->freed)
                    ae__stream_run_dones(s, true);
            }
            break;
        }
        if (s->connected_due) {
            s->connected_due = false;
            s->cb(s, AE_STREAM_CONNECTED, 0, s->arg);
            if (s->freed || s->failed)
                continue;
        }
        if (s->timer_fired) {
            s->timer_fired = false;
            ae__stream_timeouts_check(s);
            if (s->freed || s->failed)
                continue;
        }
        if (s->tr_pending && s->io && ae__stream_reading(s)) {
            s->tr_pending = false;
            ae__stream_read_input(s); /* what the transport holds */
            if (s->freed || s->failed)
                continue;
        }
        ae__stream_deliver(s);
        if (s->freed || s->failed)
            continue;
        if (s->drain_due) {
            s->drain_due = false;
            s->cb(s, AE_STREAM_DRAIN, 0, s->arg);
        }
    } while (s->again && !s->freed);
    s->depth--;
    if (s->freed) {
        destroy(s, true);
        return;
    }
    if (ae__rbuf_settle(&s->rbuf) < 0)
        ae__stream_fail(s, ENOMEM, "read buffer: out of memory for the input left over");
    ae__stream_interest(s);
    ae__stream_timer_rearm(s);
}

static void on_io(ae_watcher *w, int revents, void *arg)
{
    ae_stream *s = arg;
    if (s->depth) {
        /* A callback of this stream runs a loop of its own: the buffer must
         * not move under it. Watch again when it returns. */
        ae_io_set(w, 0);
        s->io_events = 0;
        s->again = true;
        return;
    }
    if (revents & AE_ERROR) {
        s->io_events = 0;
        ae__stream_fail(s, EBADF, "fd %d was closed while the stream used it", s->fd);
    } else {
        if (revents & AE_WRITE)
            ae__stream_flush(s);
        if ((revents & AE_READ) && !s->failed)
            ae__stream_read_input(s);
    }
    ae__stream_service(s);
}

void ae__stream_timer_fired(ae_stream *s)
{
    if (s->freed)
        return; /* destroyed from the wake list (write_refs pending) or when its callbacks return */
    s->timer_fired = true;
    ae__stream_service(s);
}

void ae__stream_woken(ae_stream *s)
{
    if (s->freed) {
        if (!s->depth)
            destroy(s, true); /* freed with write_refs pending */
        return;
    }
    ae__stream_service(s);
}

int ae_stream_set_transport(ae_stream *s, const ae_stream_transport *t, void *ctx)
{
    if (!ae__stream_ok(s, "ae_stream_set_transport"))
        return AE_EINVAL;
    if (!t || !t->read || !t->writev || !t->shutdown || !t->events)
        return ae__set_error(AE_EINVAL, "ae_stream_set_transport: transport NULL or without read, writev, "
                                        "shutdown or events");
    if (s->tr)
        return ae__set_error(AE_ESTATE, "ae_stream_set_transport: the stream has a transport already");
    if (s->failed || s->closing || s->eof || s->shut_wanted)
        return ae__set_error(AE_ESTATE, "ae_stream_set_transport: the stream %s",
                             s->failed ? "failed" : s->closing ? "is closing" : s->eof ? "reached EOF" : "was shut down");
    if (ae__wq_bytes(s) || ae__wq_count(s))
        return ae__set_error(AE_ESTATE, "ae_stream_set_transport: %zu bytes are queued for writing: wait for "
                                        "AE_STREAM_DRAIN", ae__wq_bytes(s));
    if (ae__rbuf_len(&s->rbuf))
        return ae__set_error(AE_ESTATE, "ae_stream_set_transport: %zu bytes of input came before it",
                             ae__rbuf_len(&s->rbuf));
    ae_stream_cold *c = ae__stream_cold(s, "ae_stream_set_transport");
    if (!c)
        return AE_ENOMEM;
    s->tr = t;
    c->tr_ctx = ctx;
    if (s->depth)
        s->again = true; /* the interest is set when the callback returns */
    else
        ae__stream_interest(s);
    return 0;
}

void *ae_stream_transport_ctx(const ae_stream *s, const ae_stream_transport *t)
{
    if (!s || s->magic != AE_STREAM_MAGIC || s->freed || !t || s->tr != t)
        return NULL;
    return ae__tr_ctx(s);
}

int ae_stream_fd(const ae_stream *s) { return s && s->magic == AE_STREAM_MAGIC && !s->freed ? s->fd : -1; }

const char *ae_stream_error(const ae_stream *s)
{
    if (!s || s->magic != AE_STREAM_MAGIC || !s->failed)
        return NULL;
    return s->cold && s->cold->error ? s->cold->error : "out of memory for the message";
}
