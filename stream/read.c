/* Reading: the queue of read requests, simple mode (on_read), and serving
 * both from the buffer. Data callbacks get pointers into the buffer: nothing
 * is copied or allocated per message. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#define READ_SIZE_MIN (16 * 1024)
#define READ_SIZE_MAX AE_RBUF_SHARED_SIZE
#define READS_PER_PASS 8 /* reads while each fills the buffer, before serving */

/* ---- the request queue -------------------------------------------------- */

static ae_rreq *rq_at(const ae_stream *s, unsigned i) { return &s->rq[(s->rq_head + i) % s->rq_cap]; }

/* The ring starts as the one slot inside the stream; the second request
 * queued at once moves it to memory of its own, kept (doubling) until the
 * stream is freed: no allocation per request. */
static int rq_grow(ae_stream *s, const char *fn)
{
    if (s->rq_count < s->rq_cap)
        return 0;
    unsigned cap = s->rq_cap * 2;
    ae_rreq *rq = malloc(cap * sizeof *rq);
    if (!rq)
        return ae__set_error(AE_ENOMEM, "%s: out of memory", fn);
    for (unsigned i = 0; i < s->rq_count; i++)
        rq[i] = *rq_at(s, i);
    if (s->rq != &s->rq_one)
        free(s->rq);
    s->rq = rq;
    s->rq_head = 0;
    s->rq_cap = cap;
    return 0;
}

void ae__stream_rq_fini(ae_stream *s)
{
    if (s->rq != &s->rq_one)
        free(s->rq);
    s->rq = &s->rq_one;
    s->rq_cap = 1;
    s->rq_head = s->rq_count = 0;
}

/* Checks r and folds it into q (without its callback). */
static int spec_take(const ae_stream *s, const ae_rspec *r, ae_rreq *q, const char *fn)
{
    q->kind = r->kind;
    switch (r->kind) {
    case AE_RSPEC_LINE:
        q->a.delim = r->delim;
        q->b.dlen = r->delim ? strlen(r->delim) : 0;
        if (r->delim && q->b.dlen == 0)
            return ae__set_error(AE_EINVAL, "%s: AE_LINE with an empty delimiter", fn);
        return 0;
    case AE_RSPEC_EXACTLY:
    case AE_RSPEC_UPTO:
        if (r->n == 0)
            return ae__set_error(AE_EINVAL, "%s: a read of 0 bytes", fn);
        if (r->kind == AE_RSPEC_EXACTLY && r->n > ae__rbuf_max(s))
            return ae__set_error(AE_EINVAL, "%s: AE_EXACTLY(%zu) is beyond rbuf_max %zu", fn, r->n, ae__rbuf_max(s));
        q->a.n = r->n;
        return 0;
    case AE_RSPEC_PREFIXED:
        if (r->n != 1 && r->n != 2 && r->n != 4)
            return ae__set_error(AE_EINVAL, "%s: AE_PREFIXED width %zu: must be 1, 2 or 4", fn, r->n);
        q->a.n = r->n;
        q->b.max = r->max;
        return 0;
    case AE_RSPEC_FRAMED:
        if (!r->frame)
            return ae__set_error(AE_EINVAL, "%s: AE_FRAMED without a function", fn);
        q->a.frame = r->frame;
        q->b.frame_arg = r->frame_arg;
        return 0;
    default:
        return ae__set_error(AE_EINVAL, "%s: unknown read spec kind %d", fn, r->kind);
    }
}

/* Reading starts or goes on: the read timeout counts from now when it
 * starts; the watcher is armed; buffered input or EOF is served soon. */
static void reading_changed(ae_stream *s, bool was_reading)
{
    if (!was_reading && ae__stream_reading(s) && s->tm) {
        s->tm->last_read = ae_now(s->loop);
        if (s->tm->rtimeout > 0)
            ae__stream_timer_rearm(s);
    }
    if (ae__rbuf_len(&s->rbuf) || s->eof)
        ae__stream_wake(s);
    else if (s->depth == 0)
        ae__stream_interest(s);
    else
        s->again = true;
}

static int queue_request(ae_stream *s, ae_rspec r, ae_stream_data_cb cb, void *arg, bool first, const char *fn)
{
    if (!ae__stream_ok(s, fn))
        return AE_EINVAL;
    if (!cb)
        return ae__set_error(AE_EINVAL, "%s: callback is NULL", fn);
    if (s->failed || s->closing)
        return ae__set_error(AE_ESTATE, "%s: the stream %s", fn, s->closing ? "is closing" : "failed");
    ae_rreq req = {.cb = cb, .arg = arg};
    int rc = spec_take(s, &r, &req, fn);
    if (rc < 0)
        return rc;
    rc = rq_grow(s, fn);
    if (rc < 0)
        return rc;
    bool was_reading = ae__stream_reading(s);
    if (first) {
        s->rq_head = (s->rq_head + s->rq_cap - 1) % s->rq_cap;
        s->rq[s->rq_head] = req;
        s->rq_gen++;
        s->scanned = 0;
    } else {
        *rq_at(s, s->rq_count) = req;
        if (s->rq_count == 0)
            s->rq_gen++;
    }
    s->rq_count++;
    reading_changed(s, was_reading);
    return 0;
}

int ae_stream_read(ae_stream *s, ae_rspec r, ae_stream_data_cb cb, void *arg)
{
    return queue_request(s, r, cb, arg, false, "ae_stream_read");
}

int ae_stream_read_first(ae_stream *s, ae_rspec r, ae_stream_data_cb cb, void *arg)
{
    return queue_request(s, r, cb, arg, true, "ae_stream_read_first");
}

int ae_stream_on_read(ae_stream *s, ae_stream_frame_cb consume, void *arg)
{
    if (!ae__stream_ok(s, "ae_stream_on_read"))
        return AE_EINVAL;
    if (consume && (s->failed || s->closing))
        return ae__set_error(AE_ESTATE, "ae_stream_on_read: the stream %s", s->closing ? "is closing" : "failed");
    if (!consume && !s->has_on_read)
        return 0;
    ae_stream_cold *c = ae__stream_cold(s, "ae_stream_on_read");
    if (!c)
        return AE_ENOMEM;
    bool was_reading = ae__stream_reading(s);
    c->on_read = consume;
    c->on_read_arg = arg;
    s->has_on_read = consume != NULL;
    if (consume)
        reading_changed(s, was_reading);
    else if (s->depth == 0)
        ae__stream_interest(s);
    return 0;
}

/* ---- input -------------------------------------------------------------- */

void ae__stream_read_input(ae_stream *s)
{
    size_t rbuf_max = ae__rbuf_max(s);
    ae__rbuf_borrow(&s->rbuf, s->loop);
    for (int pass = 0; pass < READS_PER_PASS; pass++) {
        size_t have = ae__rbuf_len(&s->rbuf);
        if (have > rbuf_max)
            return; /* the limit is checked by the delivery */
        size_t room;
        char *p = ae__rbuf_reserve(&s->rbuf, (size_t)READ_SIZE_MIN << s->read_shift, &room);
        if (!p) {
            ae__stream_fail(s, ENOMEM, "read buffer: out of memory");
            return;
        }
        /* Never read far beyond the limit: one byte past it is enough to know. */
        size_t limit = rbuf_max + 1 - have;
        if (room > limit)
            room = limit;
        ssize_t n = s->tr ? s->tr->read(ae__tr_ctx(s), s->fd, p, room) : read(s->fd, p, room);
        if (n > 0) {
            s->rbuf.end += (size_t)n;
            ae__stream_active(s, true);
            if ((size_t)n < room)
                return; /* a short read: drained (saves the EAGAIN read) */
            if ((size_t)READ_SIZE_MIN << s->read_shift < READ_SIZE_MAX)
                s->read_shift++;
            if (s->rbuf.lent)
                return; /* serve the shared buffer's fill first (the watcher reports the rest) */
            continue;
        }
        if (n == 0) {
            s->eof = true;
            return;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            int err = errno;
            const char *why = s->tr && s->tr->error ? s->tr->error(ae__tr_ctx(s)) : NULL;
            if (why)
                ae__stream_fail(s, err, "%s", why);
            else
                ae__stream_fail(s, err, "read: %s", strerror(err));
        }
        return;
    }
}

/* ---- serving ------------------------------------------------------------ */

enum { MATCH_MORE = 0, MATCH_OK = 1, MATCH_BAD = -1 };

static size_t be_length(const unsigned char *p, size_t width)
{
    size_t v = 0;
    for (size_t i = 0; i < width; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Whether the head request can be served from p[0, avail): the data is
 * p[*off, *off + *len), and *take bytes are consumed. */
static int match(ae_stream *s, const ae_rreq *q, const char *p, size_t avail, size_t *off, size_t *len,
                 size_t *take)
{
    *off = 0;
    switch (q->kind) {
    case AE_RSPEC_LINE: {
        if (!q->a.delim) {
            const char *nl = avail > s->scanned ? memchr(p + s->scanned, '\n', avail - s->scanned) : NULL;
            if (!nl) {
                s->scanned = avail;
                return MATCH_MORE;
            }
            size_t i = (size_t)(nl - p);
            *len = i > 0 && p[i - 1] == '\r' ? i - 1 : i;
            *take = i + 1;
            return MATCH_OK;
        }
        size_t dlen = q->b.dlen;
        size_t from = s->scanned >= dlen ? s->scanned - (dlen - 1) : 0;
        const char *d = avail > from ? memmem(p + from, avail - from, q->a.delim, dlen) : NULL;
        if (!d) {
            s->scanned = avail;
            return MATCH_MORE;
        }
        *len = (size_t)(d - p);
        *take = *len + dlen;
        return MATCH_OK;
    }
    case AE_RSPEC_EXACTLY:
        if (avail < q->a.n)
            return MATCH_MORE;
        *len = *take = q->a.n;
        return MATCH_OK;
    case AE_RSPEC_UPTO:
        if (avail == 0)
            return MATCH_MORE;
        *len = *take = avail < q->a.n ? avail : q->a.n;
        return MATCH_OK;
    case AE_RSPEC_PREFIXED: {
        size_t w = q->a.n;
        if (avail < w)
            return MATCH_MORE;
        size_t n = be_length((const unsigned char *)p, w);
        size_t max = q->b.max ? q->b.max : ae__rbuf_max(s);
        if (n > max) {
            ae__stream_fail(s, EBADMSG, "AE_PREFIXED: length %zu is beyond the maximum %zu", n, max);
            return MATCH_BAD;
        }
        if (avail - w < n)
            return MATCH_MORE;
        *off = w;
        *len = n;
        *take = w + n;
        return MATCH_OK;
    }
    default: { /* AE_RSPEC_FRAMED */
        size_t n = q->a.frame(s, p, avail, s->eof, q->b.frame_arg);
        if (n == 0)
            return MATCH_MORE;
        if (n == AE_STREAM_BAD || n > avail) {
            if (!s->freed)
                ae__stream_fail(s, EBADMSG, "AE_FRAMED: the frame function refused the input");
            return MATCH_BAD;
        }
        *len = *take = n;
        return MATCH_OK;
    }
    }
}

/* The head request, served or not; false when nothing more can be done now. */
static bool serve_request(ae_stream *s)
{
    ae_rreq q = *rq_at(s, 0);
    unsigned gen = s->rq_gen;
    const char *p = s->rbuf.data + s->rbuf.start;
    size_t avail = ae__rbuf_len(&s->rbuf), off = 0, len = 0, take = 0;
    int m = match(s, &q, p, avail, &off, &len, &take);
    if (s->freed || s->failed || m == MATCH_BAD)
        return false;
    if (gen != s->rq_gen)
        return true; /* the frame function changed the queue: look again */
    if (m == MATCH_MORE) {
        if (s->eof)
            ae__stream_fail(s, EPIPE, "end of file while a read request waits for more");
        return false;
    }
    s->rq_head = (s->rq_head + 1) % s->rq_cap;
    s->rq_count--;
    s->rq_gen++;
    s->scanned = 0;
    /* Consumed before the callback, so requests it queues see what follows;
     * the memory does not move while a stream callback runs. */
    s->rbuf.start += take;
    q.cb(s, p + off, len, q.arg);
    return true;
}

static bool serve_on_read(ae_stream *s)
{
    size_t avail = ae__rbuf_len(&s->rbuf);
    if (s->eof_reported || (avail == 0 && !s->eof))
        return false;
    const char *p = s->rbuf.data + s->rbuf.start;
    bool at_eof = s->eof;
    size_t used = s->cold->on_read(s, p, avail, at_eof, s->cold->on_read_arg);
    if (s->freed || s->failed)
        return false;
    if (used == AE_STREAM_BAD || used > avail) {
        ae__stream_fail(s, EBADMSG, "on_read: the consumer refused the input");
        return false;
    }
    s->rbuf.start += used;
    if (at_eof) {
        if (ae__rbuf_len(&s->rbuf)) {
            if (used)
                return true; /* progress: it may take the rest */
            ae__stream_fail(s, EPIPE, "end of file with %zu bytes on_read left", ae__rbuf_len(&s->rbuf));
            return false;
        }
        s->eof_reported = true;
        s->cb(s, AE_STREAM_EOF, 0, s->arg);
        return true;
    }
    return used > 0 && ae__rbuf_len(&s->rbuf) > 0;
}

void ae__stream_deliver(ae_stream *s)
{
    while (!s->freed && !s->failed && !s->closing) {
        if (s->rq_count) {
            if (!serve_request(s))
                break;
        } else if (s->has_on_read) {
            if (!serve_on_read(s))
                break;
        } else {
            if (s->eof && !s->eof_reported) {
                s->eof_reported = true;
                s->cb(s, AE_STREAM_EOF, 0, s->arg);
                continue;
            }
            break;
        }
    }
    if (!s->freed && !s->failed && ae__rbuf_len(&s->rbuf) > ae__rbuf_max(s))
        ae__stream_fail(s, ENOSPC, "more than rbuf_max (%zu bytes) of unconsumed input", ae__rbuf_max(s));
}
