/* The three inactivity timeouts and the linger deadline, for a stream that
 * has a timeout or lingers: one deadline per stream in the loop's heap
 * (layer.c), under one timer per loop. Activity only stores ae_now() in a
 * stamp; the deadline is the earliest one and, when it passes, the stamps
 * are looked at and the deadline moves to what is left (libev's "be smart
 * about timeouts"): no timer or heap operation per read or write. */
#include <errno.h>
#include <math.h>

#include "internal.h"

/* Timer and loop clocks are both double seconds; allow their rounding. */
#define SLACK 1e-6

static double deadline_next(const ae_stream *s)
{
    const ae_stream_timing *t = s->tm;
    if (s->freed || s->failed)
        return INFINITY;
    if (s->closing)
        return t->linger_until;
    double d = INFINITY;
    if (t->timeout > 0)
        d = fmin(d, t->last_any + t->timeout);
    if (t->rtimeout > 0 && ae__stream_reading(s))
        d = fmin(d, t->last_read + t->rtimeout);
    if (t->wtimeout > 0 && ae__wq_bytes(s))
        d = fmin(d, t->last_write + t->wtimeout);
    return d;
}

void ae__stream_timer_rearm(ae_stream *s)
{
    if (!s->tm)
        return; /* no timeout, no linger */
    double d = deadline_next(s);
    if (d >= s->tm->timer_due)
        return; /* the old deadline comes first, and looks again then */
    ae__layer_tmo_set(s->loop, s, d);
}

void ae__stream_timeouts_check(ae_stream *s)
{
    ae_stream_timing *t = s->tm;
    if (!t)
        return;
    double now = ae_now(s->loop);
    /* The stamp is reset before the callback: returning re-arms it. */
    if (t->timeout > 0 && now - t->last_any >= t->timeout - SLACK) {
        t->last_any = now;
        s->cb(s, AE_STREAM_TIMEOUT, ETIMEDOUT, s->arg);
        if (s->freed || s->failed)
            return;
    }
    if (t->rtimeout > 0 && ae__stream_reading(s) && now - t->last_read >= t->rtimeout - SLACK) {
        t->last_read = now;
        s->cb(s, AE_STREAM_RTIMEOUT, ETIMEDOUT, s->arg);
        if (s->freed || s->failed)
            return;
    }
    if (t->wtimeout > 0 && ae__wq_bytes(s) && now - t->last_write >= t->wtimeout - SLACK) {
        t->last_write = now;
        s->cb(s, AE_STREAM_WTIMEOUT, ETIMEDOUT, s->arg);
    }
}
