/* Timers over a monotonic clock, so that wall-clock jumps do not matter.
 *
 * A 4-ary min-heap holds one entry per distinct deadline armed; the entry
 * leads a ring of every timer due then, in arming order (a circular list
 * through the watchers' next/prev). Deadlines are the cached loop time plus
 * the delay, so timers armed together mostly share one: arming appends to
 * the ring armed into last when its deadline is the same, and firing takes
 * the ring's first timer, both in constant time, with no sift. Another
 * deadline gets a ring of its own, in O(log4 n).
 *
 * Equal deadlines fire in arming order: a ring is appended to only while it
 * is the last one armed into, so every timer of a ring was armed before any
 * timer of a later ring of the same deadline, and the heap orders rings of
 * equal deadlines by the arming number of their first timer. Each heap slot
 * is reserved when its timer is created: arming never allocates. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* In a ring: timer_remove sets next to NULL, a new slot is zero. */
static inline bool timer_armed(const ae_watcher *w) { return w->next != NULL; }

static bool entry_less(const ae_heap_entry *a, const ae_heap_entry *b)
{
    return a->deadline < b->deadline || (a->deadline == b->deadline && a->w->u.timer.seq < b->w->u.timer.seq);
}

static void heap_place(ae_loop *loop, size_t i, ae_heap_entry e)
{
    loop->heap[i] = e;
    e.w->k.heap_index = (uint32_t)(i + 1);
}

static void heap_up(ae_loop *loop, size_t i)
{
    ae_heap_entry e = loop->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 4;
        if (!entry_less(&e, &loop->heap[parent]))
            break;
        heap_place(loop, i, loop->heap[parent]);
        i = parent;
    }
    heap_place(loop, i, e);
}

static void heap_down(ae_loop *loop, size_t i)
{
    ae_heap_entry e = loop->heap[i];
    size_t n = loop->heap_len;
    for (;;) {
        size_t first = 4 * i + 1;
        if (first >= n)
            break;
        size_t end = first + 4 < n ? first + 4 : n, min = first;
        for (size_t c = first + 1; c < end; c++)
            if (entry_less(&loop->heap[c], &loop->heap[min]))
                min = c;
        if (!entry_less(&loop->heap[min], &e))
            break;
        heap_place(loop, i, loop->heap[min]);
        i = min;
    }
    heap_place(loop, i, e);
}

/* heap_reserve when the heap is full: out of line, so that creating a timer
 * saves no registers for it. */
static __attribute__((noinline)) int heap_grow(ae_loop *loop)
{
    size_t cap = loop->heap_cap ? loop->heap_cap * 2 : 64;
    if (cap > UINT32_MAX) /* heap_index is 32 bits */
        return ae__set_error(AE_ENOMEM, "ae_timer: too many timers");
    /* Not realloc: that copies the whole old block, reserved room included,
     * and so makes resident memory that timers sharing deadlines (one entry
     * per ring) never use. Only the entries in use are copied. */
    ae_heap_entry *h = malloc(cap * sizeof *h);
    if (!h)
        return ae__set_error(AE_ENOMEM, "ae_timer: out of memory for the timer heap");
    if (loop->heap_len)
        memcpy(h, loop->heap, loop->heap_len * sizeof *h);
    free(loop->heap);
    loop->heap = h;
    loop->heap_cap = cap;
    return 0;
}

/* Room in the heap for one more timer: called when a timer is created, so
 * that arming and re-arming (ae_timer_set) never allocate. */
static inline int heap_reserve(ae_loop *loop)
{
    return __builtin_expect(loop->timer_count < loop->heap_cap, 1) ? 0 : heap_grow(loop);
}

/* timer_insert's new ring: out of line, as the common case appends. */
static __attribute__((noinline)) void timer_insert_ring(ae_loop *loop, ae_watcher *w, double deadline)
{
    w->next = w->prev = w;
    size_t i = loop->heap_len++;
    loop->heap[i] = (ae_heap_entry){deadline, w};
    heap_up(loop, i);
    loop->timer_last = w;
    if (w->k.heap_index == 1)
        ae__reschedule(loop);
}

/* Arm w for deadline: at the end of the ring armed into last if it is due
 * then too, else in a ring of its own. */
static inline __attribute__((always_inline)) void timer_insert(ae_loop *loop, ae_watcher *w, double deadline)
{
    w->u.timer.seq = loop->timer_seq++;
    ae_watcher *last = loop->timer_last;
    if (__builtin_expect(last && loop->heap[last->k.heap_index - 1].deadline == deadline, 1)) {
        w->k.heap_index = 0;
        w->next = last;
        w->prev = last->prev;
        last->prev->next = w;
        last->prev = w;
        return;
    }
    timer_insert_ring(loop, w, deadline);
}

/* Disarm w. The next timer of its ring takes over its heap slot (same
 * deadline, armed later than w but before any other ring of that deadline:
 * the heap stays ordered); a ring left empty leaves the heap. Returns true
 * if the first deadline changed: the caller re-arms the native timer (once,
 * where a new deadline for w follows). */
static bool timer_unlink(ae_loop *loop, ae_watcher *w)
{
    size_t slot = w->k.heap_index;
    w->k.heap_index = 0;
    ae_watcher *next = w->next;
    if (next != w) {
        next->prev = w->prev;
        w->prev->next = next;
    }
    w->next = w->prev = NULL;
    if (!slot)
        return false; /* inside a ring: its leader is unchanged */
    size_t i = slot - 1;
    if (next != w) {
        loop->heap[i].w = next;
        next->k.heap_index = (uint32_t)slot;
        if (loop->timer_last == w)
            loop->timer_last = next;
        return false;
    }
    if (loop->timer_last == w)
        loop->timer_last = NULL;
    size_t last = --loop->heap_len;
    if (i != last) {
        ae_heap_entry moved = loop->heap[last];
        heap_place(loop, i, moved);
        if (i > 0 && entry_less(&moved, &loop->heap[(i - 1) / 4]))
            heap_up(loop, i);
        else
            heap_down(loop, i);
    }
    return i == 0;
}

static void timer_remove(ae_loop *loop, ae_watcher *w)
{
    if (timer_unlink(loop, w))
        ae__reschedule(loop);
}

static __attribute__((noinline, cold)) int check_times_fail(const char *fn, double after, double interval)
{
    if (!isfinite(after) || after < 0)
        return ae__set_error(AE_EINVAL, "%s: after %g: must be finite and >= 0", fn, after);
    if (!isfinite(interval) || interval < 0)
        return ae__set_error(AE_EINVAL, "%s: interval %g: must be finite and >= 0", fn, interval);
    return 0;
}

/* Both finite and >= 0 (false for NaN): two comparisons each inline, the
 * message out of line. */
static inline int check_times(const char *fn, double after, double interval)
{
    if (__builtin_expect(after >= 0 && after <= DBL_MAX && interval >= 0 && interval <= DBL_MAX, 1))
        return 0;
    return check_times_fail(fn, after, interval);
}

static inline __attribute__((always_inline)) void timer_arm(ae_watcher *w, double after, double interval)
{
    w->u.timer.after = after;
    w->u.timer.interval = interval;
    timer_insert(w->loop, w, ae__now_mono(w->loop) + after);
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
    /* A re-arm moves the native timer once, not twice (c-ares and libcurl
     * push their timeouts back at every request). */
    bool was_first = timer_armed(w) && timer_unlink(w->loop, w);
    timer_arm(w, after, interval); /* into the slot reserved at creation; re-arms if w is first now */
    if (was_first && w->k.heap_index != 1)
        ae__reschedule(w->loop);
    w->stopped = false;
    return 0;
}

/* Stop: disarm. Start: arm again from now, as last armed. */
int ae__timer_pause(ae_watcher *w, bool stop)
{
    if (timer_armed(w)) {
        timer_remove(w->loop, w);
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
    if (timer_armed(w)) {
        timer_remove(w->loop, w); /* re-arms an adopted loop's native timer if it was first */
        ae__watcher_deactivate(w);
    }
    return 0;
}

double ae_timer_remaining(ae_watcher *w)
{
    if (!ae__watcher_ok(w, AE_KIND_TIMER, "ae_timer_remaining"))
        return NAN;
    if (!timer_armed(w)) {
        ae__set_error(AE_ESTATE, "ae_timer_remaining: the timer is not armed");
        return NAN;
    }
    double now = ae__now_mono(w->loop);
    /* The deadline is kept by the ring's first timer, in the heap. */
    const ae_watcher *lead = w;
    while (!lead->k.heap_index)
        lead = lead->prev;
    return w->loop->heap[lead->k.heap_index - 1].deadline - now;
}

void ae__timer_stop(ae_watcher *w)
{
    if (timer_armed(w))
        timer_remove(w->loop, w);
    w->loop->timer_count--;
}


double ae__timer_next(ae_loop *loop)
{
    if (!loop->heap_len)
        return -1;
    double d = loop->heap[0].deadline - ae__mono();
    return d > 0 ? d : 0;
}

void ae__timers_free(ae_loop *loop)
{
    free(loop->heap);
    loop->heap = NULL;
    loop->heap_len = loop->heap_cap = 0;
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
        double deadline = loop->heap[0].deadline;
        ae_watcher *w = loop->heap[0].w;
        /* The rest of the ring was armed later still. */
        if (deadline > now || w->u.timer.seq >= seq_limit)
            break;
        timer_remove(loop, w);
        if (w->u.timer.interval > 0) {
            timer_insert(loop, w, next_deadline(deadline, w->u.timer.interval, now));
        } else {
            ae__watcher_deactivate(w);
        }
        loop->dispatched++;
        ran++;
        w->cb.timer(w, w->arg);
    }
    return ran;
}
