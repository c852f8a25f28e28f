/* What every backend plugin shares: the core's services, kept by the entry
 * function, and the check that the core is one the plugin can work with. */
#ifndef AE_BACKENDS_PLUGIN_H
#define AE_BACKENDS_PLUGIN_H

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>

#include "anyevent/backend.h"



/* The core's services; set once by the entry function. */
extern const ae_backend_services *ae_core;

/* Keeps services if they are complete; 0, or -1 (error set if possible). */
static inline int ae_plugin_accept(const ae_backend_services *services)
{
    if (!services || services->version < 1 || !AE_BACKEND_SERVICES_HAS(services, child_ready))
        return -1;
    ae_core = services;
    return 0;
}

/* The expire service, telling whether the loop outlived it: 1, or 0 when a
 * timer callback freed the loop (and the backend's state). A core older
 * than ABI version 3 cannot tell: 0 then, so that nothing is touched. */
static inline int ae_plugin_expire(ae_loop *loop)
{
    if (ae_core->version >= 3 && AE_BACKEND_SERVICES_HAS(ae_core, expire_checked) && ae_core->expire_checked)
        return ae_core->expire_checked(loop);
    ae_core->expire(loop);
    return 0;
}

/* The check every fd_update makes going from no interest to some, as the
 * native libraries do not all make it at once. */
static inline int ae_plugin_fd_check(int fd)
{
    if (fcntl(fd, F_GETFD) < 0)
        return ae_core->set_error(AE_EBADF, "ae_io: fd %d is not open", fd);
    return 0;
}

/* The fds changed since a backend last polled, checked before the native
 * library registers them (libev asserts, libuv aborts on a closed fd). Room
 * is reserved per fd in fd_init, so adding one never allocates;
 * ae_plugin_batch_poll() checks them all with one poll(2). */
typedef struct ae_plugin_batch {
    void **items;        /* the backend's per-fd records, in batch order */
    struct pollfd *pfds; /* their fds; revents POLLNVAL: closed */
    size_t n, cap;
} ae_plugin_batch;

/* Room for nfds fds (from fd_init, so that nothing allocates later). The
 * arrays double; while the batch holds nothing (n 0) they are allocated
 * anew rather than copied, so that room never used never becomes resident
 * (a realloc would write every old slot into the new block). */
static inline int ae_plugin_batch_reserve(ae_plugin_batch *b, size_t nfds)
{
    if (nfds <= b->cap)
        return 0;
    size_t cap = b->cap ? 2 * b->cap : 64;
    while (cap < nfds)
        cap *= 2;
    if (b->n == 0) {
        void **items = malloc(cap * sizeof *items);
        struct pollfd *pfds = malloc(cap * sizeof *pfds);
        if (!items || !pfds) {
            free(items);
            free(pfds);
            return -1;
        }
        free(b->items);
        free(b->pfds);
        b->items = items;
        b->pfds = pfds;
        b->cap = cap;
        return 0;
    }
    void **items = realloc(b->items, cap * sizeof *items);
    if (!items)
        return -1;
    b->items = items;
    struct pollfd *pfds = realloc(b->pfds, cap * sizeof *pfds);
    if (!pfds)
        return -1;
    b->pfds = pfds;
    b->cap = cap;
    return 0;
}

static inline void ae_plugin_batch_free(ae_plugin_batch *b)
{
    free(b->items);
    free(b->pfds);
}

/* Polls the batch's fds for events without waiting: afterwards
 * pfds[i].revents has POLLNVAL for each closed one. */
static inline void ae_plugin_batch_poll_events(ae_plugin_batch *b, short events)
{
    for (size_t i = 0; i < b->n; i++)
        b->pfds[i].events = events, b->pfds[i].revents = 0;
    while (poll(b->pfds, (nfds_t)b->n, 0) < 0 && errno == EINTR)
        ;
}

static inline void ae_plugin_batch_poll(ae_plugin_batch *b) { ae_plugin_batch_poll_events(b, 0); }

#endif
