/* Answers waiting for their time: a FIFO ring. Every answer is delayed by
 * the same amount, so arrival order is due order and the head is always the
 * next one due; many answers wait at once and none holds up the others. */
#ifndef DNS_RESPONDER_ANSWER_QUEUE_H
#define DNS_RESPONDER_ANSWER_QUEUE_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

#include "dns-wire.h"

struct pending_answer {
    double due;              /* ae_now() time at which to send it */
    struct sockaddr_in to;
    size_t len;
    uint8_t packet[DNS_ANSWER_MAX];
};

struct answer_queue {
    struct pending_answer *ring;
    size_t capacity, head, count;
    size_t max_count; /* the most that ever waited at once */
};

/* A free entry at the tail, to be filled in; NULL if out of memory. The
 * ring grows (doubling) only when full, so a steady load allocates nothing. */
struct pending_answer *answer_queue_push(struct answer_queue *q);

/* The oldest entry, or NULL if empty. */
struct pending_answer *answer_queue_head(struct answer_queue *q);

/* Drop the oldest entry. */
void answer_queue_pop(struct answer_queue *q);

void answer_queue_free(struct answer_queue *q);

#endif
