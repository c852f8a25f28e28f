/* The read buffer (one linear block, compacted in place) and the write queue
 * (a ring of owned blocks and referenced caller memory). Neither allocates
 * per message once warm: the read block is reused, and one written-out
 * write block is kept as a spare. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* An owned write block holds at least this much, so small writes join. */
#define WBLOCK_MIN 4096
/* The last block grows in place up to this before a new one is made. */
#define WBLOCK_GROW_MAX (256 * 1024)

size_t ae__rbuf_len(const ae_rbuf *b) { return b->end - b->start; }

char *ae__rbuf_reserve(ae_rbuf *b, size_t want, size_t *room)
{
    if (b->start == b->end)
        b->start = b->end = 0;
    if (b->cap - b->end < want && b->start > 0) {
        memmove(b->data, b->data + b->start, b->end - b->start);
        b->end -= b->start;
        b->start = 0;
    }
    if (b->cap - b->end < want) {
        size_t cap = b->cap ? b->cap : want;
        while (cap - b->end < want)
            cap *= 2;
        char *d;
        if (b->lent) { /* the shared buffer is too small: move to memory of our own */
            d = malloc(cap);
            if (!d)
                return NULL;
            memcpy(d, b->data, b->end);
            *b->lent = false;
            b->lent = NULL;
        } else {
            d = realloc(b->data, cap);
            if (!d)
                return NULL;
        }
        b->data = d;
        b->cap = cap;
    }
    *room = b->cap - b->end;
    return b->data + b->end;
}

bool ae__rbuf_borrow(ae_rbuf *b, ae_loop *loop)
{
    if (b->data)
        return false;
    bool *busy;
    char *p = ae__layer_rbuf_borrow(loop, &busy);
    if (!p)
        return false;
    *b = (ae_rbuf){p, 0, 0, AE_RBUF_SHARED_SIZE, busy};
    return true;
}

int ae__rbuf_settle(ae_rbuf *b)
{
    size_t len = b->end - b->start;
    if (len == 0 || b->lent) {
        char *own = NULL;
        if (len && !(own = malloc(len))) {
            ae__rbuf_fini(b);
            return AE_ENOMEM;
        }
        if (len)
            memcpy(own, b->data + b->start, len);
        ae__rbuf_fini(b);
        if (own)
            *b = (ae_rbuf){own, 0, len, len, NULL};
    }
    return 0;
}

void ae__rbuf_fini(ae_rbuf *b)
{
    if (b->lent)
        *b->lent = false;
    else
        free(b->data);
    *b = (ae_rbuf){0};
}

static ae_wseg *wq_at(const ae_wqueue *q, unsigned i) { return &q->segs[(q->head + i) % q->cap]; }

static ae_wseg *wq_push(ae_wqueue *q)
{
    if (q->count == q->cap) {
        unsigned cap = q->cap ? q->cap * 2 : 4;
        ae_wseg *segs = malloc(cap * sizeof *segs);
        if (!segs)
            return NULL;
        for (unsigned i = 0; i < q->count; i++)
            segs[i] = *wq_at(q, i);
        free(q->segs);
        q->segs = segs;
        q->head = 0;
        q->cap = cap;
    }
    ae_wseg *seg = wq_at(q, q->count++);
    *seg = (ae_wseg){0};
    return seg;
}

int ae__wq_copy(ae_wqueue *q, const void *data, size_t len)
{
    if (len == 0)
        return 0;
    if (q->count) {
        ae_wseg *last = wq_at(q, q->count - 1);
        if (last->block && last->len) {
            size_t used = (size_t)(last->p - last->block) + last->len;
            if (last->block_cap - used < len && used + len <= WBLOCK_GROW_MAX) {
                /* A writer that fills the queue to wbuf_high round after
                 * round then finds one block, the spare, big enough for a
                 * round: no allocation per round (two blocks were). */
                size_t cap = last->block_cap;
                while (cap < used + len)
                    cap *= 2;
                char *b = realloc(last->block, cap);
                if (b) {
                    last->p = b + (last->p - last->block);
                    last->block = b;
                    last->block_cap = cap;
                }
            }
            if (last->block_cap - used >= len) {
                memcpy(last->block + used, data, len);
                last->len += len;
                q->bytes += len;
                return 0;
            }
        }
    }
    char *block;
    size_t cap;
    if (q->spare && q->spare_cap >= len) {
        block = q->spare;
        cap = q->spare_cap;
        q->spare = NULL;
        q->spare_cap = 0;
    } else {
        cap = len < WBLOCK_MIN ? WBLOCK_MIN : len;
        block = malloc(cap);
        if (!block)
            return AE_ENOMEM;
    }
    ae_wseg *seg = wq_push(q);
    if (!seg) {
        free(block);
        return AE_ENOMEM;
    }
    memcpy(block, data, len);
    seg->block = block;
    seg->block_cap = cap;
    seg->p = block;
    seg->len = len;
    q->bytes += len;
    return 0;
}

int ae__wq_ref(ae_wqueue *q, const void *data, size_t len, void (*done)(void *, void *), void *arg)
{
    ae_wseg *seg = wq_push(q);
    if (!seg)
        return AE_ENOMEM;
    seg->p = data;
    seg->len = len;
    seg->ref = data;
    seg->is_ref = true;
    seg->done = done;
    seg->done_arg = arg;
    q->bytes += len;
    return 0;
}

int ae__wq_iov(const ae_wqueue *q, struct iovec *iov, int max)
{
    int n = 0;
    for (unsigned i = 0; i < q->count && n < max; i++) {
        const ae_wseg *seg = wq_at(q, i);
        if (seg->len)
            iov[n++] = (struct iovec){(void *)seg->p, seg->len};
    }
    return n;
}

/* A written-out owned block: keep the largest as the spare. */
static void block_retire(ae_wqueue *q, ae_wseg *seg)
{
    if (!q->spare || q->spare_cap < seg->block_cap) {
        free(q->spare);
        q->spare = seg->block;
        q->spare_cap = seg->block_cap;
    } else {
        free(seg->block);
    }
    seg->block = NULL;
}

void ae__wq_advance(ae_wqueue *q, size_t n)
{
    q->bytes -= n;
    for (unsigned i = 0; i < q->count && n; i++) {
        ae_wseg *seg = wq_at(q, i);
        size_t k = seg->len < n ? seg->len : n;
        seg->p += k;
        seg->len -= k;
        n -= k;
    }
    /* Drop written owned segments from the head; refs wait for their done. */
    while (q->count) {
        ae_wseg *seg = wq_at(q, 0);
        if (seg->len || seg->is_ref)
            break;
        if (seg->block)
            block_retire(q, seg);
        q->head = (q->head + 1) % q->cap;
        q->count--;
    }
}

int ae__wq_pop_done(ae_wqueue *q, ae_wseg *out, bool all)
{
    while (q->count) {
        ae_wseg *seg = wq_at(q, 0);
        if (seg->len && !all)
            return 0;
        q->bytes -= seg->len;
        *out = *seg;
        q->head = (q->head + 1) % q->cap;
        q->count--;
        if (!out->is_ref) {
            if (out->block)
                block_retire(q, out);
            continue;
        }
        return 1;
    }
    return 0;
}

bool ae__wq_done_ready(const ae_wqueue *q) { return q->count && wq_at(q, 0)->len == 0; }

bool ae__wq_has_refs(const ae_wqueue *q)
{
    for (unsigned i = 0; i < q->count; i++)
        if (wq_at(q, i)->is_ref)
            return true;
    return false;
}

void ae__wq_fini(ae_wqueue *q)
{
    for (unsigned i = 0; i < q->count; i++)
        free(wq_at(q, i)->block);
    free(q->segs);
    free(q->spare);
    *q = (ae_wqueue){0};
}
