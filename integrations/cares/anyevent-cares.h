/*
 * anyevent-cares: run c-ares (asynchronous DNS) on an anyevent loop.
 *
 * ae_cares_new() makes an ares_channel whose sockets and timeouts are driven
 * by an ae_loop, on any backend and inside an adopted host loop:
 *
 *  - c-ares tells the integration about its sockets through the socket-state
 *    callback (ARES_OPT_SOCK_STATE_CB). Each socket gets one io watcher,
 *    created when c-ares opens the socket, switched in place with
 *    ae_io_set() when c-ares changes its interest, and freed when c-ares
 *    closes the socket (it reports readable=0, writable=0 just before).
 *    Readiness runs ares_process_fd().
 *  - One timer per channel runs ares_process_fd() with no socket, which is
 *    how c-ares times queries out and retries them. It is re-armed with
 *    ae_timer_set() from ares_timeout() after every processing step, and
 *    stopped with ae_timer_stop() when no query is pending; a
 *    query started by the ae_cares_* functions below arms it for the next
 *    iteration, which then re-arms it from ares_timeout().
 *
 * Nothing is allocated per event: one record and one watcher per socket, one
 * timer per channel. docs/integrations/c-ares.md is the long form.
 *
 * Ownership: the integration owns the channel's socket-state callback
 * (ARES_OPT_SOCK_STATE_CB) and its socket-create callback
 * (ares_set_socket_callback()); do not set either yourself. Everything else
 * about the channel (servers, flags, timeouts, tries, ...) is yours.
 *
 * Threads: a channel belongs to the thread that runs its loop.
 */
#ifndef ANYEVENT_CARES_H
#define ANYEVENT_CARES_H

#include <ares.h>
#include <anyevent.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ae_cares ae_cares;

/* Create a channel on loop with ares_init_options(opts, optmask) plus the
 * integration's own socket callbacks. opts may be NULL (then optmask must be
 * 0) for c-ares' defaults. Call ares_library_init() once per process before
 * this, as c-ares requires. Returns ARES_SUCCESS and stores the new object
 * in *out, or an ARES_E* status with *out set to NULL:
 *   ARES_EBADFLAGS  loop or out is NULL, optmask without opts, or optmask
 *                   contains ARES_OPT_SOCK_STATE_CB (the integration's own);
 *   ARES_ENOMEM     out of memory, or the channel's timer could not be made;
 *   anything ares_init_options() returns. */
int ae_cares_new(ae_loop *loop, const struct ares_options *opts, int optmask, ae_cares **out);

/* The channel, for any c-ares call: configure it (ares_set_servers_*, ...)
 * and start queries on it. After starting a query with a c-ares function
 * directly (rather than an ae_cares_* wrapper below), call
 * ae_cares_reschedule(), or the query's timeout is only noticed once some
 * other event of the channel runs c-ares. */
ares_channel ae_cares_channel(const ae_cares *c);

/* Re-arm the channel's timer from ares_timeout(): at the channel's next
 * timeout, or, when no query is pending, stop it (ae_timer_stop), so that it
 * no longer holds the loop (ae_run() returns once no query and no socket is left). Never
 * allocates, but ares_timeout() walks every pending query: after starting
 * many queries with c-ares directly, call it once, after the last. */
void ae_cares_reschedule(ae_cares *c);

/* ares_gethostbyname(), ares_getaddrinfo(), ares_query(), ares_search() and
 * ares_send() on the channel, then the channel's timer is armed to fire in
 * the next iteration, where it re-arms itself from ares_timeout(): constant
 * time per query, so starting thousands at once stays linear. Same arguments
 * and callbacks as the c-ares functions; the callbacks run from the loop (or
 * at once, from inside the call, when c-ares can answer without the
 * network). */
void ae_cares_gethostbyname(ae_cares *c, const char *name, int family,
                            ares_host_callback callback, void *arg);
void ae_cares_getaddrinfo(ae_cares *c, const char *node, const char *service,
                          const struct ares_addrinfo_hints *hints,
                          ares_addrinfo_callback callback, void *arg);
void ae_cares_query(ae_cares *c, const char *name, int dnsclass, int type,
                    ares_callback callback, void *arg);
void ae_cares_search(ae_cares *c, const char *name, int dnsclass, int type,
                     ares_callback callback, void *arg);
void ae_cares_send(ae_cares *c, const unsigned char *qbuf, int qlen,
                   ares_callback callback, void *arg);

/* ares_cancel() on the channel: every pending query's callback runs with
 * ARES_ECANCELLED. Then stops the timer (it no longer holds the loop). */
void ae_cares_cancel(ae_cares *c);

/* ares_destroy() the channel: every pending query's callback runs with
 * ARES_EDESTRUCTION, every socket is closed and its watcher freed; then the
 * timer and c are freed. NULL is ignored. As with ares_destroy(), not from
 * inside a callback of this channel. */
void ae_cares_free(ae_cares *c);

/* Make ae_tcp_connect() and ae_stream_connect() on c's loop look names up
 * through c (ares_getaddrinfo, SOCK_STREAM) instead of a getaddrinfo()
 * thread per lookup, until ae_cares_free(c), which puts the thread back
 * (with ae_connect_set_resolver() of <anyevent/stream.h>) unless another
 * resolver, another channel's too, was set on the loop since. Answers reach the
 * connect from the loop, also those c-ares gives inside the call; a
 * cancelled connect's lookup is dropped when c-ares answers it. A lookup cut
 * off by ae_cares_cancel() or ae_cares_free() fails its connect with EAGAIN.
 * Returns 0, or AE_EINVAL (c NULL) / AE_ENOMEM. */
int ae_cares_resolve_connects(ae_cares *c);

/* How many sockets of the channel are open (each with its io watcher). */
int ae_cares_sockets(const ae_cares *c);

/* The first failure of the integration itself since ae_cares_new(), or ""
 * if none: an io watcher that could not be made or armed for a socket
 * (AE_ELIMIT on select past FD_SETSIZE, AE_ENOMEM, ...). Such a socket is
 * refused when c-ares opens it (its queries fail or move to another server);
 * the message says which fd and why. Valid until ae_cares_free(). */
const char *ae_cares_error(const ae_cares *c);

#ifdef __cplusplus
}
#endif

#endif /* ANYEVENT_CARES_H */
