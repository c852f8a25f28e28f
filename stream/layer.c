/* The stream layer's per-loop registry: every stream, connect, server and
 * command of a loop is linked here, so that ae_loop_free() frees what the
 * program left (quietly: no callback runs) through the core's per-loop free
 * hook. */
#include <math.h>
#include <stdlib.h>

#include "internal.h"
#include "../core/internal.h"

typedef struct stream_layer {
    ae_layer_node head; /* a ring; head.next is the newest */
    char *rbuf;         /* the shared read buffer, AE_RBUF_SHARED_SIZE bytes */
    bool rbuf_busy;
    bool has_resolver;  /* ae_connect_set_resolver() */
    ae_resolver resolver;
    void *resolver_ctx;
    /* Streams with work for the loop (ae__stream_wake), serviced from one
     * zero timer: a FIFO linked through ae_stream.wake_next/wake_pprev. */
    ae_watcher *wake_timer;
    ae_stream *wake_head, **wake_tail;
    size_t wake_count;
    /* Stream timeouts: a binary min-heap of the streams whose deadline is
     * set, by tm->timer_due, with room for every stream that has a timing
     * part (tmo_streams), and one timer armed for the top (tmo_armed). */
    ae_loop *loop;
    ae_watcher *tmo_timer;
    ae_stream **heap;
    size_t heap_len, tmo_streams, heap_cap;
    double tmo_armed; /* INFINITY: not armed */
} stream_layer;

static void layer_free(void *arg)
{
    stream_layer *l = arg;
    for (ae_stream *s = l->wake_head; s; s = s->wake_next)
        s->woken = false; /* the list goes with the layer */
    /* A drop may remove other nodes (a stream its connect): take the first each time. */
    while (l->head.next != &l->head) {
        ae_layer_node *n = l->head.next;
        ae__layer_remove(n);
        n->drop(n);
    }
    ae_watcher_free(l->wake_timer);
    ae_watcher_free(l->tmo_timer);
    free(l->heap);
    free(l->rbuf);
    free(l);
}

static void wake_unlink(stream_layer *l, ae_stream *s)
{
    *s->wake_pprev = s->wake_next;
    if (s->wake_next)
        s->wake_next->wake_pprev = s->wake_pprev;
    else
        l->wake_tail = s->wake_pprev;
    s->wake_next = NULL;
    s->wake_pprev = NULL;
    s->woken = false;
    l->wake_count--;
}

/* The wake list's timer fired: service the streams that were on it, oldest
 * first (one destroyed meanwhile has left it); a stream woken during the
 * pass waits for the next iteration. */
static void on_wake(ae_watcher *w, void *arg)
{
    (void)w;
    stream_layer *l = arg;
    for (size_t n = l->wake_count; n && l->wake_head; n--) {
        ae_stream *s = l->wake_head;
        wake_unlink(l, s);
        ae__stream_woken(s);
    }
}

static stream_layer *layer_get(ae_loop *loop)
{
    stream_layer *l = ae__loop_layer(loop, layer_free);
    if (!l) {
        l = calloc(1, sizeof *l);
        if (!l) {
            ae__set_error(AE_ENOMEM, "out of memory");
            return NULL;
        }
        l->head.next = l->head.prev = &l->head;
        l->wake_tail = &l->wake_head;
        l->loop = loop;
        l->tmo_armed = INFINITY;
        l->wake_timer = ae_timer(loop, 0, 0, on_wake, l);
        if (!l->wake_timer) {
            free(l);
            return NULL;
        }
        ae_timer_stop(l->wake_timer);
        if (ae__loop_on_free(loop, layer_free, l) < 0) {
            ae_watcher_free(l->wake_timer);
            free(l);
            return NULL;
        }
    }
    return l;
}

void ae__layer_wake(ae_loop *loop, ae_stream *s)
{
    stream_layer *l = ae__loop_layer(loop, layer_free);
    if (!l || s->woken)
        return; /* no layer: the stream is not registered (cannot happen) */
    s->woken = true;
    s->wake_next = NULL;
    s->wake_pprev = l->wake_tail;
    *l->wake_tail = s;
    l->wake_tail = &s->wake_next;
    if (l->wake_count++ == 0)
        ae_timer_set(l->wake_timer, 0, 0);
}

/* ---- stream timeouts ---- */

/* Timer and loop clocks are both double seconds; allow their rounding. */
#define TMO_SLACK 1e-6

static double due_at(const stream_layer *l, size_t i) { return l->heap[i]->tm->timer_due; }

static void heap_put(stream_layer *l, size_t i, ae_stream *s)
{
    l->heap[i] = s;
    s->tm->heap_idx = i;
}

static void sift_up(stream_layer *l, size_t i)
{
    ae_stream *s = l->heap[i];
    double d = s->tm->timer_due;
    while (i > 0 && due_at(l, (i - 1) / 2) > d) {
        heap_put(l, i, l->heap[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    heap_put(l, i, s);
}

static void sift_down(stream_layer *l, size_t i)
{
    ae_stream *s = l->heap[i];
    double d = s->tm->timer_due;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= l->heap_len)
            break;
        if (c + 1 < l->heap_len && due_at(l, c + 1) < due_at(l, c))
            c++;
        if (due_at(l, c) >= d)
            break;
        heap_put(l, i, l->heap[c]);
        i = c;
    }
    heap_put(l, i, s);
}

static void heap_remove(stream_layer *l, ae_stream *s)
{
    size_t i = s->tm->heap_idx;
    ae_stream *last = l->heap[--l->heap_len];
    s->tm->timer_due = INFINITY;
    if (last == s)
        return;
    heap_put(l, i, last);
    sift_up(l, i);
    sift_down(l, last->tm->heap_idx);
}

/* The timer follows the heap's top only when the top comes earlier than it
 * is armed for; a later top (the earliest stream left) is found when it
 * fires. */
static void tmo_arm(stream_layer *l)
{
    if (!l->heap_len || due_at(l, 0) >= l->tmo_armed)
        return;
    double d = due_at(l, 0), now = ae_now(l->loop);
    if (ae_timer_set(l->tmo_timer, d > now ? d - now : 0, 0) == 0)
        l->tmo_armed = d;
}

/* Each stream due when the timer fired is looked at once (one whose
 * deadline its callbacks set again, at once, waits for the next pass). */
static void on_tmo(ae_watcher *w, void *arg)
{
    (void)w;
    stream_layer *l = arg;
    l->tmo_armed = INFINITY;
    double now = ae_now(l->loop);
    for (size_t n = l->heap_len; n && l->heap_len && due_at(l, 0) <= now + TMO_SLACK; n--) {
        ae_stream *s = l->heap[0];
        heap_remove(l, s);
        ae__stream_timer_fired(s);
    }
    tmo_arm(l);
}

int ae__layer_tmo_reserve(ae_loop *loop)
{
    stream_layer *l = layer_get(loop);
    if (!l)
        return AE_ENOMEM;
    if (!l->tmo_timer) {
        l->tmo_timer = ae_timer(loop, 0, 0, on_tmo, l);
        if (!l->tmo_timer)
            return ae_last_error_code();
        ae_timer_stop(l->tmo_timer);
    }
    if (l->tmo_streams == l->heap_cap) {
        size_t cap = l->heap_cap ? 2 * l->heap_cap : 16;
        ae_stream **h = realloc(l->heap, cap * sizeof *h);
        if (!h)
            return ae__set_error(AE_ENOMEM, "out of memory");
        l->heap = h;
        l->heap_cap = cap;
    }
    l->tmo_streams++;
    return 0;
}

void ae__layer_tmo_set(ae_loop *loop, ae_stream *s, double due)
{
    stream_layer *l = ae__loop_layer(loop, layer_free);
    if (!l)
        return; /* cannot happen: the stream reserved its room */
    if (s->tm->timer_due < INFINITY)
        heap_remove(l, s);
    if (due < INFINITY) {
        s->tm->timer_due = due;
        heap_put(l, l->heap_len++, s);
        sift_up(l, l->heap_len - 1);
    }
    tmo_arm(l);
}

void ae__layer_tmo_release(ae_loop *loop, ae_stream *s)
{
    stream_layer *l = ae__loop_layer(loop, layer_free);
    if (!l)
        return; /* the loop is going, and its layer with the heap */
    if (s->tm->timer_due < INFINITY)
        heap_remove(l, s);
    l->tmo_streams--;
}

void ae__layer_unwake(ae_loop *loop, ae_stream *s)
{
    stream_layer *l = ae__loop_layer(loop, layer_free);
    if (l && s->woken)
        wake_unlink(l, s);
}

int ae__layer_add(ae_loop *loop, ae_layer_node *n, void (*drop)(ae_layer_node *n))
{
    stream_layer *l = layer_get(loop);
    if (!l)
        return AE_ENOMEM;
    n->drop = drop;
    n->prev = &l->head;
    n->next = l->head.next;
    l->head.next->prev = n;
    l->head.next = n;
    return 0;
}

void ae__layer_remove(ae_layer_node *n)
{
    if (!n->next)
        return;
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->next = n->prev = NULL;
}

char *ae__layer_rbuf_borrow(ae_loop *loop, bool **busy)
{
    stream_layer *l = ae__loop_layer(loop, layer_free);
    if (!l || l->rbuf_busy)
        return NULL;
    if (!l->rbuf && !(l->rbuf = malloc(AE_RBUF_SHARED_SIZE)))
        return NULL;
    l->rbuf_busy = true;
    *busy = &l->rbuf_busy;
    return l->rbuf;
}

const ae_resolver *ae__layer_resolver(ae_loop *loop, void **ctx)
{
    stream_layer *l = ae__loop_layer(loop, layer_free);
    if (!l || !l->has_resolver)
        return NULL;
    *ctx = l->resolver_ctx;
    return &l->resolver;
}

const ae_resolver *ae_connect_get_resolver(ae_loop *loop, void **ctx)
{
    if (!loop) {
        ae__set_error(AE_EINVAL, "ae_connect_get_resolver: loop is NULL");
        return NULL;
    }
    void *c = NULL;
    const ae_resolver *r = ae__layer_resolver(loop, &c);
    if (ctx)
        *ctx = c;
    return r;
}

int ae_connect_set_resolver(ae_loop *loop, const ae_resolver *r, void *ctx)
{
    if (!loop)
        return ae__set_error(AE_EINVAL, "ae_connect_set_resolver: loop is NULL");
    if (r && (!r->start || !r->cancel || !r->free_answer))
        return ae__set_error(AE_EINVAL, "ae_connect_set_resolver: start, cancel and free_answer must be set");
    stream_layer *l = r ? layer_get(loop) : ae__loop_layer(loop, layer_free);
    if (!l)
        return r ? AE_ENOMEM : 0;
    l->has_resolver = r != NULL;
    l->resolver = r ? *r : (ae_resolver){0};
    l->resolver_ctx = r ? ctx : NULL;
    return 0;
}
