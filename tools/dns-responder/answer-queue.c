#include "answer-queue.h"

#include <stdlib.h>
#include <string.h>

static int grow(struct answer_queue *q)
{
    size_t capacity = q->capacity ? q->capacity * 2 : 1024;
    struct pending_answer *ring = malloc(capacity * sizeof *ring);
    if (!ring)
        return -1;
    /* Unwrap: the oldest entry goes to index 0. */
    for (size_t i = 0; i < q->count; i++)
        ring[i] = q->ring[(q->head + i) % q->capacity];
    free(q->ring);
    q->ring = ring;
    q->capacity = capacity;
    q->head = 0;
    return 0;
}

struct pending_answer *answer_queue_push(struct answer_queue *q)
{
    if (q->count == q->capacity && grow(q) < 0)
        return NULL;
    struct pending_answer *a = &q->ring[(q->head + q->count) % q->capacity];
    q->count++;
    if (q->count > q->max_count)
        q->max_count = q->count;
    return a;
}

struct pending_answer *answer_queue_head(struct answer_queue *q)
{
    return q->count ? &q->ring[q->head] : NULL;
}

void answer_queue_pop(struct answer_queue *q)
{
    q->head = (q->head + 1) % q->capacity;
    q->count--;
}

void answer_queue_free(struct answer_queue *q)
{
    free(q->ring);
    memset(q, 0, sizeof *q);
}
