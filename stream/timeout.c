/* The three inactivity timeouts and the linger deadline on one timer per
 * stream. Activity only stores ae_now() in a stamp; the timer is armed for
 * the earliest deadline and, when it fires, looks at the stamps and re-arms
 * itself for what is left (libev's "be smart about timeouts"): no timer
 * operation per read or write. */
#include <errno.h>
#include <math.h>

#include "internal.h"

/* Timer and loop clocks are both double seconds; allow their rounding. */
#define SLACK 1e-6

static double deadline_next(const ae_stream *s)
{
    if (s->freed || s->failed)
        return INFINITY;
    if (s->closing)
        return s->linger_until;
    double d = INFINITY;
    if (s->o.timeout > 0)
        d = fmin(d, s->last_any + s->o.timeout);
    if (s->o.rtimeout > 0 && ae__stream_reading(s))
        d = fmin(d, s->last_read + s->o.rtimeout);
    if (s->o.wtimeout > 0 && s->wq.bytes)
        d = fmin(d, s->last_write + s->o.wtimeout);
    return d;
}

void ae__stream_timer_rearm(ae_stream *s)
{
    double d = deadline_next(s);
    if (d >= s->timer_due)
        return; /* the timer fires first, and looks again then */
    double now = ae_now(s->loop);
    if (ae_timer_set(s->timer, d > now ? d - now : 0, 0) == 0)
        s->timer_due = d;
}

void ae__stream_timeouts_check(ae_stream *s)
{
    double now = ae_now(s->loop);
    /* The stamp is reset before the callback: returning re-arms it. */
    if (s->o.timeout > 0 && now - s->last_any >= s->o.timeout - SLACK) {
        s->last_any = now;
        s->cb(s, AE_STREAM_TIMEOUT, ETIMEDOUT, s->arg);
        if (s->freed || s->failed)
            return;
    }
    if (s->o.rtimeout > 0 && ae__stream_reading(s) && now - s->last_read >= s->o.rtimeout - SLACK) {
        s->last_read = now;
        s->cb(s, AE_STREAM_RTIMEOUT, ETIMEDOUT, s->arg);
        if (s->freed || s->failed)
            return;
    }
    if (s->o.wtimeout > 0 && s->wq.bytes && now - s->last_write >= s->o.wtimeout - SLACK) {
        s->last_write = now;
        s->cb(s, AE_STREAM_WTIMEOUT, ETIMEDOUT, s->arg);
    }
}
