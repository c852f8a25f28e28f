/* Timers: a binary min-heap on (deadline, seq) over a monotonic clock, so
 * equal deadlines fire in the order they were armed and wall-clock jumps do
 * not matter. */
#include <math.h>
#include <stdlib.h>

#include "internal.h"

static bool entry_less(const ae_heap_entry *a, const ae_heap_entry *b)
{
    return a->deadline < b->deadline || (a->deadline == b->deadline && a->seq < b->seq);
}

static void heap_place(ae_loop *loop, size_t i, ae_heap_entry e)
{
    loop->heap[i] = e;
    e.w->u.timer.heap_index = i;
}

static void heap_up(ae_loop *loop, size_t i)
{
    ae_heap_entry e = loop->heap[i];
    while (i > 1 && entry_less(&e, &loop->heap[i / 2])) {
        heap_place(loop, i, loop->heap[i / 2]);
        i /= 2;
    }
    heap_place(loop, i, e);
}

static void heap_down(ae_loop *loop, size_t i)
{
    ae_heap_entry e = loop->heap[i];
    size_t n = loop->heap_len;
    for (;;) {
        size_t c = 2 * i;
        if (c > n)
            break;
        if (c + 1 <= n && entry_less(&loop->heap[c + 1], &loop->heap[c]))
            c++;
        if (!entry_less(&loop->heap[c], &e))
            break;
        heap_place(loop, i, loop->heap[c]);
        i = c;
    }
    heap_place(loop, i, e);
}

/* Room in the heap for one more timer: called when a timer is created, so
 * that arming and re-arming (ae_timer_set) never allocate. */
static int heap_reserve(ae_loop *loop)
{
    if (loop->timer_count + 1 < loop->heap_cap)
        return 0;
    size_t cap = loop->heap_cap ? loop->heap_cap * 2 : 64;
    ae_heap_entry *h = realloc(loop->heap, cap * sizeof *h);
    if (!h)
        return ae__set_error(AE_ENOMEM, "ae_timer: out of memory for the timer heap");
    loop->heap = h;
    loop->heap_cap = cap;
    return 0;
}

static void heap_insert(ae_loop *loop, ae_watcher *w, double deadline)
{
    size_t i = ++loop->heap_len;
    loop->heap[i] = (ae_heap_entry){deadline, loop->timer_seq++, w};
    heap_up(loop, i);
    if (w->u.timer.heap_index == 1)
        ae__reschedule(loop);
}

static void heap_remove(ae_loop *loop, ae_watcher *w)
{
    size_t i = w->u.timer.heap_index;
    w->u.timer.heap_index = 0;
    size_t last = loop->heap_len--;
    if (i != last) {
        ae_heap_entry moved = loop->heap[last];
        heap_place(loop, i, moved);
        if (i > 1 && entry_less(&moved, &loop->heap[i / 2]))
            heap_up(loop, i);
        else
            heap_down(loop, i);
    }
    if (i == 1)
        ae__reschedule(loop);
}

static int check_times(const char *fn, double after, double interval)
{
    if (!isfinite(after) || after < 0)
        return ae__set_error(AE_EINVAL, "%s: after %g: must be finite and >= 0", fn, after);
    if (!isfinite(interval) || interval < 0)
        return ae__set_error(AE_EINVAL, "%s: interval %g: must be finite and >= 0", fn, interval);
    return 0;
}

static void timer_arm(ae_watcher *w, double after, double interval)
{
    w->u.timer.after = after;
    w->u.timer.interval = interval;
    heap_insert(w->loop, w, ae__now_mono(w->loop) + after);
    ae__watcher_activate(w);
}

ae_watcher *ae_timer(ae_loop *loop, double after, double interval, ae_timer_cb cb, void *arg)
{
    if (!ae__loop_ok(loop, "ae_timer"))
        return NULL;
    if (!cb) {
        ae__set_error(AE_EINVAL, "ae_timer: callback is NULL");
        return NULL;
    }
    if (check_times("ae_timer", after, interval) < 0 || heap_reserve(loop) < 0)
        return NULL;
    ae_watcher *w = ae__watcher_alloc(loop, AE_KIND_TIMER, arg);
    if (!w)
        return NULL;
    w->cb.timer = cb;
    loop->timer_count++;
    ae__list_append(&loop->timers, w);
    timer_arm(w, after, interval);
    return w;
}

int ae_timer_set(ae_watcher *w, double after, double interval)
{
    if (!ae__watcher_ok(w, AE_KIND_TIMER, "ae_timer_set"))
        return AE_EINVAL;
    int rc = check_times("ae_timer_set", after, interval);
    if (rc < 0)
        return rc;
    if (w->u.timer.heap_index)
        heap_remove(w->loop, w);
    timer_arm(w, after, interval); /* into the slot reserved at creation */
    w->stopped = false;
    return 0;
}

/* Stop: disarm. Start: arm again from now, as last armed. */
int ae__timer_pause(ae_watcher *w, bool stop)
{
    if (w->u.timer.heap_index) {
        heap_remove(w->loop, w);
        ae__watcher_deactivate(w);
    }
    if (!stop)
        timer_arm(w, w->u.timer.after, w->u.timer.interval);
    return 0;
}

int ae_timer_stop(ae_watcher *w)
{
    if (!ae__watcher_ok(w, AE_KIND_TIMER, "ae_timer_stop"))
        return AE_EINVAL;
    if (w->u.timer.heap_index) {
        heap_remove(w->loop, w); /* re-arms an adopted loop's native timer if it was first */
        ae__watcher_deactivate(w);
    }
    return 0;
}

void ae__timer_stop(ae_watcher *w)
{
    if (w->u.timer.heap_index)
        heap_remove(w->loop, w);
    ae__list_unlink(w->loop, &w->loop->timers, w);
    w->loop->timer_count--;
}

double ae__timer_next(ae_loop *loop)
{
    if (!loop->heap_len)
        return -1;
    double d = loop->heap[1].deadline - ae__mono();
    return d > 0 ? d : 0;
}

/* The first deadline of a repeating timer still ahead of now: fire once for
 * any number of missed ticks, keeping the phase. */
static double next_deadline(double deadline, double interval, double now)
{
    double next = deadline + interval; /* infinite for a huge interval: never again */
    if (next <= now) {
        /* A tiny interval makes the tick count overflow to infinity. */
        double ticks = floor((now - deadline) / interval) + 1;
        next = isfinite(ticks) ? deadline + ticks * interval : now;
        if (next <= now) /* rounding, or an interval below the clock's resolution */
            next = nextafter(now, INFINITY);
    }
    return next;
}

/* Runs the timers due now that were armed before seq_limit (the iteration's
 * start): one armed during the iteration, even with after 0, waits for the
 * next iteration. */
int ae__timers_run(ae_loop *loop, uint64_t seq_limit)
{
    int ran = 0;
    double now = loop->now_mono;
    while (loop->heap_len && !loop->free_requested) {
        ae_heap_entry top = loop->heap[1];
        if (top.deadline > now || top.seq >= seq_limit)
            break;
        ae_watcher *w = top.w;
        heap_remove(loop, w);
        if (w->u.timer.interval > 0) {
            heap_insert(loop, w, next_deadline(top.deadline, w->u.timer.interval, now));
        } else {
            ae__watcher_deactivate(w);
        }
        loop->dispatched++;
        ran++;
        w->cb.timer(w, w->arg);
    }
    return ran;
}
