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
} stream_layer;

static void layer_free(void *arg)
{
    stream_layer *l = arg;
    /* A drop may remove other nodes (a stream its connect): take the first each time. */
    while (l->head.next != &l->head) {
        ae_layer_node *n = l->head.next;
        ae__layer_remove(n);
        n->drop(n);
    }
    free(l->rbuf);
    free(l);
}

int ae__layer_add(ae_loop *loop, ae_layer_node *n, void (*drop)(ae_layer_node *n))
{
    stream_layer *l = ae__loop_layer(loop, layer_free);
    if (!l) {
        l = malloc(sizeof *l);
        if (!l)
            return ae__set_error(AE_ENOMEM, "out of memory");
        l->head.next = l->head.prev = &l->head;
        l->rbuf = NULL;
        l->rbuf_busy = false;
        if (ae__loop_on_free(loop, layer_free, l) < 0) {
            free(l);
            return AE_ENOMEM;
        }
    }
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
