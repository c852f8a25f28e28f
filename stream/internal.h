/* The stream layer's private structures, shared by the files of stream/.
 * Everything here is built on the public watchers of <anyevent.h>. */
#ifndef AE_STREAM_INTERNAL_H
#define AE_STREAM_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "anyevent/stream.h"
#include "backend.h" /* ae__set_error, ae__set_errno */

#define AE_STREAM_MAGIC 0x61657374u /* "aest" */

/* ---- layer.c: what ae_loop_free() frees -------------------------------- */

/* A node of the loop's list of streams, connects, servers and commands;
 * drop frees its object quietly when the loop is freed first. */
typedef struct ae_layer_node {
    struct ae_layer_node *next, *prev;
    void (*drop)(struct ae_layer_node *n);
} ae_layer_node;

int ae__layer_add(ae_loop *loop, ae_layer_node *n, void (*drop)(ae_layer_node *n)); /* loop must be valid */
void ae__layer_remove(ae_layer_node *n); /* also for a node not linked */
/* The loop's one shared read buffer (AE_RBUF_SHARED_SIZE bytes, made on
 * first use): a stream with nothing buffered reads into it, and gives it
 * back once its callbacks returned, so that a stream waiting for input holds
 * no read memory. NULL when it is lent already (a callback runs a loop of
 * its own) or cannot be made; *busy is the flag that giving it back clears. */
char *ae__layer_rbuf_borrow(ae_loop *loop, bool **busy);
/* The loop's stream timeouts: one timer per loop and a heap of the streams
 * with a timing part, by tm->timer_due. reserve makes room for one more
 * stream (at its timing part's birth: AE_ENOMEM), so that set never fails;
 * set puts s at due (INFINITY: out of the heap); release takes s out and
 * gives its room back. The timer runs ae__stream_timer_fired(s) for each
 * stream due. */
int ae__layer_tmo_reserve(ae_loop *loop);
void ae__layer_tmo_set(ae_loop *loop, ae_stream *s, double due);
void ae__layer_tmo_release(ae_loop *loop, ae_stream *s);
/* Have the loop run ae__stream_woken(s) soon (a zero timer shared by the
 * loop's streams); nothing if s is on the list already. Cannot fail. */
void ae__layer_wake(ae_loop *loop, ae_stream *s);
void ae__layer_unwake(ae_loop *loop, ae_stream *s); /* off the list (a stream destroyed) */
/* The loop's resolver set with ae_connect_set_resolver(), or NULL. */
const ae_resolver *ae__layer_resolver(ae_loop *loop, void **ctx);
#define AE_RBUF_SHARED_SIZE (256 * 1024)

/* ---- resolve.c: getaddrinfo() on a thread ------------------------------ */

struct addrinfo;
typedef struct ae_resolve ae_resolve;
/* The answer (valid until the callback returns) or gai_err, from the loop.
 * The loop's resolver (ae_connect_set_resolver) looks up if it has one. */
typedef void (*ae_resolve_cb)(struct addrinfo *answer, int gai_err, void *arg);
ae_resolve *ae__resolve_start(ae_loop *loop, const char *host, const char *service, int family, ae_resolve_cb cb,
                              void *arg);
void ae__resolve_cancel(ae_resolve *r); /* no callback after it */

/* ---- buffer.c: the read buffer and the write queue ---------------------- */

/* Unconsumed input is data[start, end). The memory is the loop's shared
 * buffer (lent set) from a read until the stream's callbacks returned, or
 * the stream's own while input is left over; none while nothing is. */
typedef struct ae_rbuf {
    char *data;
    size_t start, end, cap;
    bool *lent; /* the shared buffer's busy flag while it is borrowed */
} ae_rbuf;

/* One segment of the write queue: bytes still to write are p[0, len). An
 * owned segment's memory is block (block_cap bytes) and p points into it; a
 * referenced one is the caller's, and done runs once it is written. */
typedef struct ae_wseg {
    const char *p;
    size_t len;
    char *block;
    size_t block_cap;
    void (*done)(void *data, void *arg);
    const void *ref;
    void *done_arg;
    bool is_ref;
} ae_wseg;

typedef struct ae_wqueue {
    ae_wseg *segs; /* a ring */
    unsigned head, count, cap;
    size_t bytes; /* still to write */
    char *spare;  /* one written-out block kept for the next write */
    size_t spare_cap;
} ae_wqueue;

size_t ae__rbuf_len(const ae_rbuf *b);
/* Room for at least want more bytes at the end (compacting first); NULL if
 * out of memory. *room gets what is free. */
char *ae__rbuf_reserve(ae_rbuf *b, size_t want, size_t *room);
/* Borrow the loop's shared buffer if b holds no memory; false if not. */
bool ae__rbuf_borrow(ae_rbuf *b, ae_loop *loop);
/* After the stream's callbacks: the shared buffer goes back (what is left
 * of it moved to memory of the stream's own), and the stream's own memory is
 * freed once empty. AE_ENOMEM if the left-over input could not be kept (it
 * is dropped). */
int ae__rbuf_settle(ae_rbuf *b);
void ae__rbuf_fini(ae_rbuf *b);

/* Append a copy of len bytes (joining the last owned segment when it has
 * room); AE_ENOMEM. */
int ae__wq_copy(ae_wqueue *q, const void *data, size_t len);
/* Append the caller's bytes; a done of a zero-length ref still queues. */
int ae__wq_ref(ae_wqueue *q, const void *data, size_t len, void (*done)(void *, void *), void *arg);
/* The first iovcnt (at most max) segments with bytes left. */
int ae__wq_iov(const ae_wqueue *q, struct iovec *iov, int max);
/* n bytes were written: advance, dropping written owned segments; written
 * refs stay at the head, empty, until ae__wq_pop_done() takes them. */
void ae__wq_advance(ae_wqueue *q, size_t n);
/* Take the first segment if it is a written (or, with all, any) ref or an
 * empty owned segment: its done in *seg. 1 if one was taken. */
int ae__wq_pop_done(ae_wqueue *q, ae_wseg *seg, bool all);
bool ae__wq_has_refs(const ae_wqueue *q);
bool ae__wq_done_ready(const ae_wqueue *q); /* a written ref waits at the head */
void ae__wq_fini(ae_wqueue *q);

/* ---- the stream --------------------------------------------------------- */

/* A read request, its spec folded into two words: a is EXACTLY/UPTO/PREFIXED's
 * n, LINE's delimiter or FRAMED's function; b is PREFIXED's max, LINE's
 * delimiter length or FRAMED's arg. */
typedef struct ae_rreq {
    ae_stream_data_cb cb;
    void *arg;
    union {
        size_t n;
        const char *delim;
        ae_stream_frame_cb frame;
    } a;
    union {
        size_t max;
        size_t dlen;
        void *frame_arg;
    } b;
    int kind; /* AE_RSPEC_* */
} ae_rreq;

/* What most streams never use, made the first time one of its parts is
 * needed (once per stream at most, never per event): limits other than the
 * defaults, the write queue, on_read, the transport's context, the connect
 * of ae_stream_connect(), the fatal error. */
typedef struct ae_stream_cold {
    size_t rbuf_max, wbuf_high, wbuf_low, wbuf_max;
    ae_wqueue wq;
    ae_stream_frame_cb on_read;
    void *on_read_arg;
    void *tr_ctx;
    void *conn; /* ae_stream_connect()'s connect, and how to cancel it */
    void (*conn_cancel)(void *conn);
    char *error; /* fatal error message */
    int fail_err; /* the fatal error's errno */
} ae_stream_cold;

/* The timeouts, made when the stream has a timeout or lingers in
 * ae_stream_close(). Stamps are ae_now() seconds. Their timer is the loop's
 * (ae__layer_tmo_*), where heap_idx is the stream's place while timer_due
 * is finite. */
typedef struct ae_stream_timing {
    size_t heap_idx;
    double timeout, rtimeout, wtimeout;
    double last_any, last_read, last_write; /* the last activity */
    double timer_due; /* when the loop's timer looks at this stream; INFINITY: never */
    double linger_until;
} ae_stream_timing;

/* The hot part: what every read and write uses. */
struct ae_stream {
    uint32_t magic;
    int fd;
    ae_loop *loop;
    ae_layer_node node;
    ae_watcher *io; /* NULL while connecting and after the stop */
    ae_stream_event_cb cb;
    void *arg;
    const ae_stream_transport *tr; /* ae_stream_set_transport(); its ctx is cold */
    ae_stream_cold *cold;          /* NULL until needed */
    ae_stream_timing *tm;          /* NULL without a timeout */
    ae_stream *wake_next, **wake_pprev; /* the loop's list of streams to service (ae__stream_wake) */

    /* reading */
    ae_rbuf rbuf;
    size_t scanned; /* LINE: bytes of the head request's input searched already */
    ae_rreq *rq;    /* a ring of read requests: rq_one until two are queued */
    ae_rreq rq_one;
    unsigned rq_head, rq_count, rq_cap;
    unsigned rq_gen; /* changes when the queue's head may have changed */

    /* state */
    int depth;           /* stream callbacks on the stack; free waits for 0 */
    uint8_t io_events;   /* what io watches now */
    uint8_t read_shift;  /* the next read's size: READ_SIZE_MIN << read_shift */
    bool is_socket : 1;
    bool close_fd : 1;   /* AE_STREAM_CLOSE_FD */
    bool nodelay : 1;    /* AE_STREAM_NODELAY */
    bool keepalive : 1;  /* AE_STREAM_KEEPALIVE */
    bool has_on_read : 1;
    bool again : 1;      /* work arrived while inside the stream's callbacks */
    bool eof : 1;        /* read returned 0 */
    bool eof_reported : 1; /* AE_STREAM_EOF, or on_read's eof call, is done */
    bool failed : 1;     /* a fatal error happened: the stream is stopped */
    bool fail_reported : 1; /* its AE_STREAM_ERROR ran (or runs) */
    bool freed : 1;
    bool closing : 1;    /* ae_stream_close(): lingering */
    bool shut_wanted : 1;
    bool shut_done : 1;
    bool connecting : 1;
    bool connected_due : 1; /* AE_STREAM_CONNECTED to report */
    bool above_low : 1;  /* the queue is above wbuf_low: DRAIN when it falls */
    bool drain_due : 1;
    bool timer_fired : 1; /* its deadline passed: look at the timeouts */
    bool tr_pending : 1; /* the transport's events() said it holds input the fd will not signal */
    bool woken : 1;      /* on the loop's wake list */
};

#define AE_RBUF_MAX_DEFAULT (1024 * 1024)
#define AE_WBUF_HIGH_DEFAULT (64 * 1024)

/* The limits and the write queue, wherever they are. */
static inline size_t ae__rbuf_max(const ae_stream *s) { return s->cold ? s->cold->rbuf_max : AE_RBUF_MAX_DEFAULT; }
static inline size_t ae__wbuf_high(const ae_stream *s) { return s->cold ? s->cold->wbuf_high : AE_WBUF_HIGH_DEFAULT; }
static inline size_t ae__wbuf_low(const ae_stream *s) { return s->cold ? s->cold->wbuf_low : 0; }
static inline size_t ae__wbuf_max(const ae_stream *s) { return s->cold ? s->cold->wbuf_max : 0; }
static inline size_t ae__wq_bytes(const ae_stream *s) { return s->cold ? s->cold->wq.bytes : 0; }
static inline unsigned ae__wq_count(const ae_stream *s) { return s->cold ? s->cold->wq.count : 0; }
static inline void *ae__tr_ctx(const ae_stream *s) { return s->cold->tr_ctx; } /* set with tr */

/* stream.c */
ae_stream *ae__stream_make(ae_loop *loop, const ae_stream_opts *o, ae_stream_event_cb cb, void *arg,
                           const char *fn); /* without an fd yet */
bool ae__stream_ok(const ae_stream *s, const char *fn);
void ae__stream_service(ae_stream *s); /* from the loop: deliver everything due */
void ae__stream_wake(ae_stream *s);    /* from a call: have the loop service it */
void ae__stream_woken(ae_stream *s);   /* the wake list's turn (layer.c) */
void ae__stream_timer_fired(ae_stream *s); /* its timer_due came (layer.c) */
void ae__stream_fail(ae_stream *s, int err, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
void ae__stream_interest(ae_stream *s); /* set the io watcher's events */
/* The cold part, made on first need; NULL with AE_ENOMEM set (fn names the call). */
ae_stream_cold *ae__stream_cold(ae_stream *s, const char *fn);
bool ae__stream_reading(const ae_stream *s);
int ae__stream_attach(ae_stream *s, int fd); /* the fd of a connected stream */

/* read.c */
void ae__stream_read_input(ae_stream *s); /* read(2) once or a few times */
void ae__stream_deliver(ae_stream *s);    /* serve requests / on_read from the buffer */
void ae__stream_rq_fini(ae_stream *s);

/* write.c */
void ae__stream_flush(ae_stream *s); /* writev what the kernel takes */
void ae__stream_run_dones(ae_stream *s, bool all);
void ae__stream_shutdown_now(ae_stream *s); /* FIN (a transport's end) now that the queue is written */

/* timeout.c */
void ae__stream_timeouts_check(ae_stream *s); /* the deadline passed */
void ae__stream_timer_rearm(ae_stream *s);    /* after activity changes what is watched */
/* The timing part (and room in the loop's timeout heap), made on first need; AE_ENOMEM. */
int ae__stream_timing(ae_stream *s, const char *fn);
void ae__stream_timing_fini(ae_stream *s);
/* Activity: the stamps, if the stream has timeouts. */
static inline void ae__stream_active(ae_stream *s, bool read)
{
    if (s->tm) {
        double now = ae_now(s->loop);
        s->tm->last_any = now;
        if (read)
            s->tm->last_read = now;
        else
            s->tm->last_write = now;
    }
}

#endif /* AE_STREAM_INTERNAL_H */
