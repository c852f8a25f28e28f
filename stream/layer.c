/* The stream layer's per-loop registry: every stream, connect, server and
 * command of a loop is linked here, so that ae_loop_free() frees what the
 * program left (quietly: no callback runs) through the core's per-loop free
 * hook. */
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
