/*
 * hiredis's event hooks on anyevent: one io watcher per context, made once
 * and switched with ae_io_set(); with hiredis >= 1.0 one timer for its
 * timeouts, re-armed with ae_timer_set(). hiredis calls addRead on every
 * read and addWrite on every command, so the hooks only note the interest
 * wanted, and anyevent is called when the interest applied must change.
 *
 * Inside the watcher's callback the change waits until the callback ends:
 * commands sent from reply callbacks are written right away, in the same
 * callback, and write interest is only taken (and dropped again in a later
 * iteration) when the socket could not take everything. A pipelined client
 * then changes no interest at all in most iterations, where a direct
 * adapter pays two epoll_ctl per iteration to turn write interest on and off.
 */
#include "anyevent-hiredis.h"

#include <stdio.h>
#include <stdlib.h>

#include <hiredis/hiredis.h>

#if HIREDIS_MAJOR >= 1
#define AE_HIREDIS_TIMER 1
#else
#define AE_HIREDIS_TIMER 0
#endif

struct ae_hiredis {
    redisAsyncContext *ac;
    ae_loop *loop;
    ae_watcher *io;
    int events; /* the interest last given to io */
    int want;   /* the interest hiredis asked for */
    int depth;  /* on_io calls running (a reply callback may run the loop) */
    /* While on_io runs: points at its local flag, which on_cleanup sets, so
     * on_io does not touch the context or this struct once they are gone. */
    int *freed;
#if AE_HIREDIS_TIMER
    ae_watcher *timer; /* made on the first scheduleTimer */
#endif
};

/* A hook cannot return an error to hiredis. The context gets one instead,
 * as if its socket had failed: hiredis's next read or write on it fails and
 * it disconnects with this message, running every pending callback. */
static void fail_context(struct ae_hiredis *h, const char *what)
{
    redisContext *c = &h->ac->c;
    if (c->err)
        return;
    c->err = REDIS_ERR_OTHER;
    snprintf(c->errstr, sizeof c->errstr, "anyevent-hiredis: %s: %s", what, ae_last_error());
}

static void apply_events(struct ae_hiredis *h)
{
    if (h->want == h->events)
        return;
    if (ae_io_set(h->io, h->want) < 0) {
        fail_context(h, "ae_io_set");
        return;
    }
    h->events = h->want;
}

/* A hook's change: applied now, or when on_io ends if it is running. */
static void want_events(struct ae_hiredis *h, int events)
{
    h->want = events;
    if (!h->depth)
        apply_events(h);
}

static void on_io(ae_watcher *w, int revents, void *arg)
{
    (void)w;
    struct ae_hiredis *h = arg;
    redisAsyncContext *ac = h->ac;
    int freed = 0;
    int *outer = h->freed; /* set if a reply callback runs the loop again */
    h->freed = &freed;
    h->depth++;
    /* AE_ERROR (the fd was closed behind hiredis's back): anyevent paused
     * the watcher; the read fails, and hiredis disconnects with the error. */
    if (revents & AE_ERROR)
        h->events = 0;
    if (revents & (AE_READ | AE_ERROR))
        redisAsyncHandleRead(ac);
    if (!freed && (h->want & AE_WRITE)) {
        /* Ready for writing, or commands were sent from the replies just
         * handled: write them now rather than in the next iteration. */
        int added_now = !(h->events & AE_WRITE) && (ac->c.flags & REDIS_CONNECTED);
        if ((revents & AE_WRITE) || added_now)
            redisAsyncHandleWrite(ac);
    }
    if (freed) {
        if (outer)
            *outer = 1;
        return;
    }
    h->freed = outer;
    h->depth--;
    apply_events(h);
}

static void add_read(void *privdata)
{
    struct ae_hiredis *h = privdata;
    want_events(h, h->want | AE_READ);
}

static void del_read(void *privdata)
{
    struct ae_hiredis *h = privdata;
    want_events(h, h->want & ~AE_READ);
}

static void add_write(void *privdata)
{
    struct ae_hiredis *h = privdata;
    want_events(h, h->want | AE_WRITE);
}

static void del_write(void *privdata)
{
    struct ae_hiredis *h = privdata;
    want_events(h, h->want & ~AE_WRITE);
}

#if AE_HIREDIS_TIMER
static void on_timeout(ae_watcher *w, void *arg)
{
    (void)w;
    struct ae_hiredis *h = arg;
    redisAsyncHandleTimeout(h->ac);
}

static void schedule_timer(void *privdata, struct timeval tv)
{
    struct ae_hiredis *h = privdata;
    double after = (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
    if (after < 0)
        after = 0;
    if (!h->timer) {
        h->timer = ae_timer(h->loop, after, 0, on_timeout, h);
        if (!h->timer)
            fail_context(h, "ae_timer");
        return;
    }
    if (ae_timer_set(h->timer, after, 0) < 0)
        fail_context(h, "ae_timer_set");
}
#endif

static void on_cleanup(void *privdata)
{
    struct ae_hiredis *h = privdata;
    redisAsyncContext *ac = h->ac;
    ae_watcher_free(h->io);
#if AE_HIREDIS_TIMER
    ae_watcher_free(h->timer);
#endif
    if (h->freed)
        *h->freed = 1;
    /* hiredis refuses new commands from here on; should any hook still be
     * called, it finds nothing to act on rather than freed memory. */
    ac->ev.addRead = NULL;
    ac->ev.delRead = NULL;
    ac->ev.addWrite = NULL;
    ac->ev.delWrite = NULL;
    ac->ev.cleanup = NULL;
#if AE_HIREDIS_TIMER
    ac->ev.scheduleTimer = NULL;
#endif
    ac->ev.data = NULL;
    free(h);
}

int ae_hiredis_attach(redisAsyncContext *ac, ae_loop *loop)
{
    if (!ac || !loop)
        return AE_EINVAL;
    if (ac->ev.data)
        return AE_ESTATE;
    if (ac->c.fd < 0)
        return AE_EBADF;
    struct ae_hiredis *h = calloc(1, sizeof *h);
    if (!h)
        return AE_ENOMEM;
    h->ac = ac;
    h->loop = loop;
    h->io = ae_io(loop, ac->c.fd, 0, on_io, h);
    if (!h->io) {
        free(h);
        return ae_last_error_code();
    }
    /* A paused watcher reports a backend's limit on the fd (select's
     * FD_SETSIZE) only when first given events: find out now, while the
     * caller can still be told, not in a hook that cannot return it. */
    int rc = ae_io_set(h->io, AE_READ | AE_WRITE);
    if (rc == 0)
        rc = ae_io_set(h->io, 0);
    if (rc < 0) {
        ae_watcher_free(h->io);
        free(h);
        return rc;
    }
    ac->ev.addRead = add_read;
    ac->ev.delRead = del_read;
    ac->ev.addWrite = add_write;
    ac->ev.delWrite = del_write;
    ac->ev.cleanup = on_cleanup;
#if AE_HIREDIS_TIMER
    ac->ev.scheduleTimer = schedule_timer;
#endif
    ac->ev.data = h;
    return 0;
}
