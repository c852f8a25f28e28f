/* What every backend plugin shares: the core's services, kept by the entry
 * function, and the check that the core is one the plugin can work with. */
#ifndef AE_BACKENDS_PLUGIN_H
#define AE_BACKENDS_PLUGIN_H

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/epoll.h>
#endif

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

/* The fd_event service (ABI version 8), copied out of ae_core by a plugin
 * that reports readiness with it: one load per event instead of two. */
__attribute__((unused)) static void (*ae_plugin_fd_event)(void *fd_data, int revents);

/* ae_plugin_accept for a plugin that reports readiness with fd_event: -1,
 * with the error set (naming the plugin), under a core before version 8. */
static inline int ae_plugin_accept_fd_event(const ae_backend_services *services, const char *plugin)
{
    if (ae_plugin_accept(services) < 0)
        return -1;
    if (!AE_BACKEND_SERVICES_HAS(services, fd_event)) {
        services->set_error(AE_ENOTSUP, "%s: needs a core of ABI version 8 (fd_event)", plugin);
        return -1;
    }
    ae_plugin_fd_event = services->fd_event;
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

/* The dirty list: a backend's per-fd records changed since it last polled,
 * linked through their own memory (each record a struct with a field
 * `struct T *next_dirty` and a field `bool dirty`, true while on the list),
 * so that putting one on it never allocates. The last put comes first.
 * Arguments are evaluated more than once. */

/* Puts record f on the list at head unless it is on it; true if it was not. */
#define AE_PLUGIN_DIRTY_PUT(head, f) \
    (!(f)->dirty && ((f)->dirty = true, (f)->next_dirty = (head), (head) = (f), true))

/* A loop that takes the list at head, of count records, into batch in the
 * order they were put (items[0] the first put) and runs its body for each:
 * record f (a variable of the caller's) at index i, already off the list (a
 * callback may put it back). The list is empty from the start: new changes
 * go to a new one. */
#define AE_PLUGIN_DIRTY_TAKE(batch, head, count, f, i)                                      \
    for (size_t i = ((f) = (head), (head) = NULL, (batch)->n = (count), (count) = 0, (batch)->n); \
         i-- > 0 && ((batch)->items[i] = (f), (f)->dirty = false, true); (f) = (f)->next_dirty)

#ifdef __linux__
/* Whether the epoll set epfd holds the file fd names, asked with one
 * EPOLL_CTL_ADD of fd with no events (epoll keys its entries on the file
 * and the number). 0: it did not, and now does (another file, or the first
 * time; a library's set must get the entry taken out again before it
 * waits); EEXIST: it does; EBADF: fd is closed; another errno value: epoll
 * refuses the file (EPERM: a regular file or a directory) or is out of
 * memory. data is the entry's, chosen so that the library would skip an
 * event of it (no events are asked for, but a hang-up is always reported). */
static inline int ae_plugin_epoll_add_probe(int epfd, int fd, uint64_t data)
{
    struct epoll_event e = {.events = 0, .data.u64 = data};
    return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &e) < 0 ? errno : 0;
}

/* ae_plugin_epoll_add_probe on a library's own epoll set, which must not
 * keep the probe's entry: 0 (it did not hold the file; the entry made is
 * taken out again), or the errno of the ADD. */
static inline int ae_plugin_epoll_ask(int epfd, int fd, uint64_t data)
{
    int err = ae_plugin_epoll_add_probe(epfd, fd, data);
    if (err == 0) {
        struct epoll_event e = {0};
        epoll_ctl(epfd, EPOLL_CTL_DEL, fd, &e);
    }
    return err;
}
#endif

/* The check of an fd paused and resumed with the same events before the
 * native library saw either (a pipe chain re-arms every fd so each round):
 * whether it still names the file the library has registered, or was
 * closed and its number reused meanwhile, without a system call of the
 * library's, where the library's own epoll set cannot be asked instead
 * (libevent's; libuv gives its set, the libev plugin finds libev's). A
 * private epoll set of the plugin's, never waited on, remembers the file
 * of each fd probed; it is made on first use. Limitation, as with epoll
 * itself: a file put back at a number it had before while it stays open at
 * another number (dup2 games) is taken for the same file.
 * The set's entry stands, and every wake-up of the file also runs the set's
 * callback in the kernel; telling a socket by its fstat inode instead (a
 * pipe's or an eventfd's inode is shared) was measured and is no cheaper:
 * fstat costs more than the ADD (docs/benchmarks.md, "libev pipe chain at
 * 1,000 active"). */
typedef struct ae_plugin_probe {
    int epfd; /* the private set; -1 until first used (or none could be made) */
} ae_plugin_probe;

typedef enum ae_plugin_probed {
    AE_PLUGIN_PROBED_SAME,    /* the file the set held at fd's last probe: the library's registration stands */
    AE_PLUGIN_PROBED_OTHER,   /* another file, the first probe, or one epoll refuses: tell the library again */
    AE_PLUGIN_PROBED_CLOSED,  /* fd is not open */
    AE_PLUGIN_PROBED_UNKNOWN, /* no private set (not Linux, or epoll_create1 failed): check another way */
} ae_plugin_probed;

static inline void ae_plugin_probe_init(ae_plugin_probe *p) { p->epfd = -1; }

/* At destroy, and in the child of a fork (the set is the parent's too: a
 * new one when next needed, which holds no file, so that every fd's next
 * probe says AE_PLUGIN_PROBED_OTHER). */
static inline void ae_plugin_probe_close(ae_plugin_probe *p)
{
    if (p->epfd >= 0) {
        close(p->epfd);
        p->epfd = -1;
    }
}

/* Probes fd. *mirrored is the plugin's per-fd flag: whether the set held,
 * at fd's last probe, the file the library has registered for fd now (the
 * plugin clears it whenever it tells the library of fd without a probe).
 * It is updated for the plugin telling the library of fd again after
 * AE_PLUGIN_PROBED_OTHER, false after AE_PLUGIN_PROBED_UNKNOWN, and left
 * as it was otherwise. */
static inline ae_plugin_probed ae_plugin_probe_fd(ae_plugin_probe *p, int fd, bool *mirrored)
{
#ifdef __linux__
    if (p->epfd < 0)
        p->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (p->epfd >= 0) {
        int err = ae_plugin_epoll_add_probe(p->epfd, fd, 0); /* never waited on */
        if (__builtin_expect(err == EEXIST && *mirrored, 1)) /* a pipe chain's every round */
            return AE_PLUGIN_PROBED_SAME;
        if (err == EBADF)
            return AE_PLUGIN_PROBED_CLOSED;
        *mirrored = err == 0 || err == EEXIST; /* the set holds this file now */
        return AE_PLUGIN_PROBED_OTHER;
    }
#else
    (void)fd;
#endif
    *mirrored = false;
    return AE_PLUGIN_PROBED_UNKNOWN;
}

#endif
