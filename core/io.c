/* io watchers: the fd table, combining every watcher on one fd into one
 * backend registration, and fanning readiness back out. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define AE_IO_EVENTS (AE_READ | AE_WRITE)

/* The fd table: pages of AE_FD_PAGE entries, each entry an ae_fd with the
 * backend's bytes inline. A page is allocated when one of its fds is first
 * used and stays where it is until the loop is freed (backend memory never
 * moves); only the small array of page pointers grows. Page numbers are at
 * most INT_MAX / AE_FD_PAGE, so no size here can overflow. */
#define AE_FD_PAGE 64
_Static_assert(offsetof(ae_fd, backend_data) % _Alignof(max_align_t) == 0,
               "an entry's backend bytes are aligned as far as its start is");

/* Bytes from one entry to the next: ae_fd and the backend's bytes, rounded
 * up to the alignment the backend's bytes need (fd_data_align; any type's
 * before ABI version 7) and ae_fd's own. A page is aligned for any type, and
 * backend_data's offset (16) is a multiple of every such alignment. */
static size_t fd_stride(const ae_loop *loop)
{
    const ae_backend_ops *ops = loop->ops;
    size_t align = AE_BACKEND_OPS_HAS(ops, fd_data_align) && ops->fd_data_align ? ops->fd_data_align
                                                                                 : _Alignof(max_align_t);
    if (align < _Alignof(ae_fd))
        align = _Alignof(ae_fd);
    return (sizeof(ae_fd) + ops->fd_data_size + align - 1) / align * align;
}

/* The fd's entry if its page exists, used or not (an unused one has no
 * watchers and no interest), else NULL. A negative fd converts to a page
 * number past any table. */
static ae_fd *fd_entry(const ae_loop *loop, int fd)
{
    size_t page = (unsigned)fd / AE_FD_PAGE;
    if (page >= loop->fd_pages_len || !loop->fd_pages[page])
        return NULL;
    return (ae_fd *)(loop->fd_pages[page] + (unsigned)fd % AE_FD_PAGE * loop->fd_stride);
}

/* The fd's entry if it was ever used in this loop, else NULL. */
static ae_fd *fd_lookup(const ae_loop *loop, int fd)
{
    ae_fd *f = fd_entry(loop, fd);
    return f && f->used ? f : NULL;
}

/* The fd's entry, made on first use (the backend reserves what it needs for
 * the fd then); NULL with the error set. */
static ae_fd *fd_slot(ae_loop *loop, int fd)
{
    ae_fd *f = fd_lookup(loop, fd);
    if (f)
        return f;
    size_t page = (size_t)fd / AE_FD_PAGE;
    if (page >= loop->fd_pages_len) {
        size_t len = loop->fd_pages_len ? loop->fd_pages_len : 4;
        while (len <= page)
            len *= 2;
        unsigned char **pages = realloc(loop->fd_pages, len * sizeof *pages);
        if (!pages) {
            ae__set_error(AE_ENOMEM, "ae_io: out of memory for fd %d", fd);
            return NULL;
        }
        memset(pages + loop->fd_pages_len, 0, (len - loop->fd_pages_len) * sizeof *pages);
        loop->fd_pages = pages;
        loop->fd_pages_len = len;
    }
    if (!loop->fd_pages[page]) {
        loop->fd_stride = fd_stride(loop);
        loop->fd_pages[page] = calloc(AE_FD_PAGE, loop->fd_stride);
        if (!loop->fd_pages[page]) {
            ae__set_error(AE_ENOMEM, "ae_io: out of memory for fd %d", fd);
            return NULL;
        }
    }
    f = (ae_fd *)(loop->fd_pages[page] + (size_t)fd % AE_FD_PAGE * loop->fd_stride);
    if (loop->ops->fd_init && loop->ops->fd_init(loop, loop->backend_state, fd, f->backend_data) < 0) {
        memset(f, 0, loop->fd_stride); /* zeroed again for the next try */
        return NULL;
    }
    f->used = true;
    return f;
}

/* Calls fn for every fd entry in use, in fd order. */
static void fds_each(ae_loop *loop, void (*fn)(ae_loop *loop, int fd, ae_fd *f, void *ctx), void *ctx)
{
    for (size_t p = 0; p < loop->fd_pages_len; p++) {
        if (!loop->fd_pages[p])
            continue;
        for (size_t i = 0; i < AE_FD_PAGE; i++) {
            ae_fd *f = (ae_fd *)(loop->fd_pages[p] + i * loop->fd_stride);
            if (f->used)
                fn(loop, (int)(p * AE_FD_PAGE + i), f, ctx);
        }
    }
}

/* An fd's list of watchers: a head and next, ending in NULL. An io
 * watcher's slot has no prev (ae__watcher_size), so appending and unlinking
 * walk the list; each is followed by fd_sync's walk for the interest
 * anyway, and with one watcher on the fd (the common case) neither walks. */
static ae_watcher *fd_last(const ae_fd *f)
{
    ae_watcher *w = f->head;
    if (w)
        while (w->next)
            w = w->next;
    return w;
}

static void fd_append(ae_fd *f, ae_watcher *w)
{
    w->next = NULL;
    ae_watcher *last = fd_last(f);
    if (last)
        last->next = w;
    else
        f->head = w;
}

static void fd_unlink(ae_loop *loop, ae_fd *f, ae_watcher *w)
{
    ae_watcher *before = NULL;
    if (w != f->head) {
        before = f->head;
        while (before->next != w)
            before = before->next;
    }
    ae__cursors_unlink(loop, w, before);
    if (before)
        before->next = w->next;
    else
        f->head = w->next;
    w->next = NULL;
}

/* A walk over the fd's watchers as they are now. */
static void fd_cursor_push(ae_loop *loop, ae_cursor *c, const ae_fd *f)
{
    ae__cursor_push_range(loop, c, f->head, fd_last(f));
}

static int fd_interest(const ae_fd *f)
{
    int events = 0;
    for (const ae_watcher *w = f->head; w; w = w->next)
        events |= w->io.events;
    return events;
}

/* The backend's fd_update, and the fd's interest as registered. */
static inline int fd_update(ae_loop *loop, int fd, ae_fd *f, int events)
{
    int rc = loop->ops->fd_update(loop, loop->backend_state, fd, f->backend_data, f->events, events);
    if (rc == 0)
        f->events = events;
    return rc;
}

/* fd_push in a child of fork() that the loop has not taken yet: the
 * parent's kernel state must not be changed, so the loop takes the fork
 * first. */
__attribute__((noinline, cold)) static int fd_push_forked(ae_loop *loop, int fd, ae_fd *f, int events)
{
    int rc = ae__loop_fork_check(loop);
    return rc < 0 ? rc : fd_update(loop, fd, f, events);
}

/* Tells the backend the fd's new combined interest (a change). The fork
 * generation is compared inline: it matches every time but one. */
static inline int fd_push(ae_loop *loop, int fd, ae_fd *f, int events)
{
    if (__builtin_expect(loop->fork_gen != atomic_load_explicit(&ae__fork_generation, memory_order_relaxed), 0))
        return fd_push_forked(loop, fd, f, events);
    return fd_update(loop, fd, f, events);
}

/* Bring the backend's registration of fd in line with its watchers. */
static int fd_sync(ae_loop *loop, int fd, ae_fd *f)
{
    int events = fd_interest(f);
    if (events == f->events)
        return 0;
    return fd_push(loop, fd, f, events);
}

int ae__io_register(ae_loop *loop, int fd, ae_watcher *w, int events)
{
    ae_fd *f = fd_slot(loop, fd);
    if (!f)
        return ae_last_error_code();
    w->k.fd = fd;
    w->io.events = events;
    fd_append(f, w);
    int rc = fd_sync(loop, fd, f);
    if (rc < 0) {
        fd_unlink(loop, f, w);
        return rc;
    }
    if (events)
        ae__watcher_activate(w);
    return 0;
}

ae_watcher *ae_io(ae_loop *loop, int fd, int events, ae_io_cb cb, void *arg)
{
    if (!ae__loop_ok(loop, "ae_io"))
        return NULL;
    if (!cb) {
        ae__set_error(AE_EINVAL, "ae_io: callback is NULL");
        return NULL;
    }
    if (events & ~AE_IO_EVENTS) {
        ae__set_error(AE_EINVAL, "ae_io: events %#x: only AE_READ and AE_WRITE can be watched", events);
        return NULL;
    }
    /* Checked once, here: re-arming with ae_io_set() makes no system call
     * the native library would not make; a backend reports an fd closed
     * later with AE_ERROR when it notices. */
    if (fd < 0 || fcntl(fd, F_GETFD) < 0) {
        ae__set_error(AE_EBADF, "ae_io: fd %d is not open", fd);
        return NULL;
    }
    ae_watcher *w = ae__watcher_alloc(loop, AE_KIND_IO, arg);
    if (!w)
        return NULL;
    w->cb.io = cb;
    if (ae__io_register(loop, fd, w, events) < 0) {
        ae__watcher_release(w);
        return NULL;
    }
    return w;
}

/* A registered watcher's fd entry: its page was made at registration and
 * stays until the loop is freed, so no check. */
static inline ae_fd *fd_of(const ae_loop *loop, int fd)
{
    return (ae_fd *)(loop->fd_pages[(unsigned)fd / AE_FD_PAGE] + (unsigned)fd % AE_FD_PAGE * loop->fd_stride);
}

/* io_set_events for an fd with other watchers: the interest is theirs
 * combined with events. */
__attribute__((noinline)) static int io_set_events_shared(ae_watcher *w, ae_fd *f, int events)
{
    int old = w->io.events;
    w->io.events = events;
    int rc = fd_sync(w->loop, w->k.fd, f);
    if (rc < 0) {
        w->io.events = old;
        return rc;
    }
    if (events)
        ae__watcher_activate(w);
    else
        ae__watcher_deactivate(w);
    return 0;
}

/* The watcher's events become events, and the fd's registration follows.
 * Inline in ae_io_set: a pipe chain re-arms every fd twice per round. An fd
 * with this one watcher (the common case) needs no walk for its interest,
 * and the watcher changes only once the backend took the change. */
static inline __attribute__((always_inline)) int io_set_events(ae_watcher *w, int events)
{
    ae_loop *loop = w->loop;
    int fd = w->k.fd;
    ae_fd *f = fd_of(loop, fd);
    if (__builtin_expect(f->head != w || w->next, 0))
        return io_set_events_shared(w, f, events);
    if (events != f->events) {
        int rc = fd_push(loop, fd, f, events);
        if (__builtin_expect(rc < 0, 0))
            return rc;
    }
    w->io.events = events;
    if (events)
        ae__watcher_activate(w);
    else
        ae__watcher_deactivate(w);
    return 0;
}

__attribute__((noinline, cold)) static int io_set_bad_events(int events)
{
    return ae__set_error(AE_EINVAL, "ae_io_set: events %#x: only AE_READ and AE_WRITE can be watched", events);
}

int ae_io_set(ae_watcher *w, int events)
{
    if (!ae__watcher_ok(w, AE_KIND_IO, "ae_io_set"))
        return AE_EINVAL;
    if (events & ~AE_IO_EVENTS)
        return io_set_bad_events(events);
    int rc = io_set_events(w, events);
    if (rc == 0)
        w->stopped = false; /* set anew: nothing left to resume */
    return rc;
}

int ae__io_pause(ae_watcher *w, bool stop)
{
    if (!stop)
        return ae__io_set_events(w, w->io.stopped_events);
    int events = w->io.events;
    int rc = ae__io_set_events(w, 0);
    if (rc == 0)
        w->io.stopped_events = events;
    return rc;
}

int ae__io_set_events(ae_watcher *w, int events) { return io_set_events(w, events); }

void ae__io_stop(ae_watcher *w)
{
    ae_loop *loop = w->loop;
    int fd = w->k.fd;
    ae_fd *f = fd_lookup(loop, fd);
    fd_unlink(loop, f, w);
    w->io.events = 0;
    /* Removing interest cannot usefully fail: a backend that cannot drop a
     * closed fd has nothing registered for it any more. */
    if (fd_sync(loop, fd, f) < 0)
        f->events = fd_interest(f);
}

static void fd_reannounce(ae_loop *loop, int fd, ae_fd *f, void *ctx)
{
    int *rc = ctx;
    if (*rc == 0 && f->events)
        *rc = loop->ops->fd_update(loop, loop->backend_state, fd, f->backend_data, 0, f->events);
}

int ae__fds_reannounce(ae_loop *loop)
{
    int rc = 0;
    fds_each(loop, fd_reannounce, &rc);
    return rc;
}

static void fd_fini(ae_loop *loop, int fd, ae_fd *f, void *ctx)
{
    (void)ctx;
    loop->ops->fd_fini(loop, loop->backend_state, fd, f->backend_data);
}

void ae__fds_fini(ae_loop *loop)
{
    if (loop->ops->fd_fini)
        fds_each(loop, fd_fini, NULL);
}

void ae__fds_free(ae_loop *loop)
{
    for (size_t p = 0; p < loop->fd_pages_len; p++)
        free(loop->fd_pages[p]);
    free(loop->fd_pages);
    loop->fd_pages = NULL;
    loop->fd_pages_len = 0;
}

/* The fd is no longer valid: drop its registration, pause every watcher on
 * it and tell each once with AE_ERROR. */
static void fd_invalid(ae_loop *loop, int fd, ae_fd *f)
{
    if (f->events) {
        loop->ops->fd_update(loop, loop->backend_state, fd, f->backend_data, f->events, 0);
        f->events = 0;
    }
    ae_cursor cur;
    fd_cursor_push(loop, &cur, f);
    ae_watcher *w;
    while ((w = ae__cursor_take(loop, &cur))) {
        if (!w->io.events)
            continue;
        w->io.events = 0;
        ae__watcher_deactivate(w);
        loop->dispatched++; /* the wake-up fd's callback takes its count back */
        w->cb.io(w, AE_ERROR, w->arg);
    }
    ae__cursor_pop(loop, &cur);
}

static void fd_dispatch(ae_loop *loop, ae_fd *f, int revents)
{
    ae_cursor cur;
    fd_cursor_push(loop, &cur, f);
    ae_watcher *w;
    while ((w = ae__cursor_take(loop, &cur))) {
        int ready = w->io.events & revents;
        if (!ready)
            continue;
        loop->dispatched++;
        w->cb.io(w, ready, w->arg);
    }
    ae__cursor_pop(loop, &cur);
}

/* The uncommon cases: the host's own loop dispatches (adopted, nothing of
 * ours running), AE_ERROR, a loop being freed; f is fd's entry, or NULL if
 * its page does not exist. */
__attribute__((noinline, cold)) static int io_ready_slow(ae_loop *loop, int fd, ae_fd *f, int revents)
{
    /* Called by the host's own loop: the loop time goes stale for each such
     * dispatch (read again when needed), and the loop stays alive until it
     * is over. */
    bool from_host = loop->busy == 0;
    if (from_host)
        loop->time_stale = true;
    if (loop->free_requested || !f) /* an unused entry dispatches to nobody */
        return 1;
    if (from_host)
        ae__loop_enter(loop);
    if (revents & AE_ERROR)
        fd_invalid(loop, fd, f);
    else
        fd_dispatch(loop, f, revents);
    if (from_host) {
        bool freeing = loop->free_requested;
        ae__loop_leave(loop); /* frees the loop if a callback asked for it */
        return !freeing;
    }
    return 1;
}

/* Dispatch to f's watchers: the common case inline, the rest out of line.
 * dispatch_inline: inside the loop's run, and the loop is not being freed.
 * Every io callback counts in dispatched (the wake-up fd's callback takes
 * its count back: no test of internal here). */
static inline int fd_ready(ae_loop *loop, int fd, ae_fd *f, int revents)
{
    if (__builtin_expect(!f || !loop->dispatch_inline || (revents & AE_ERROR), 0))
        return io_ready_slow(loop, fd, f, revents);
    ae_watcher *w = f->head;
    if (w && !w->next) {
        /* One watcher on the fd (the common case): no walk to keep valid,
         * so no cursor. Watchers made by the callback wait for the next
         * event, as in a walk. */
        int ready = w->io.events & revents;
        if (ready) {
            loop->dispatched++;
            w->cb.io(w, ready, w->arg);
        }
        return 1;
    }
    fd_dispatch(loop, f, revents);
    return 1;
}

int ae_backend_io_ready(ae_loop *loop, int fd, int revents) { return fd_ready(loop, fd, fd_entry(loop, fd), revents); }

static inline ae_fd *fd_of_data(void *fd_data) { return (ae_fd *)((unsigned char *)fd_data - offsetof(ae_fd, backend_data)); }

int ae_backend_fd_ready(ae_loop *loop, int fd, void *fd_data, int revents)
{
    return fd_ready(loop, fd, fd_of_data(fd_data), revents);
}

/* fd_event with more than one watcher on the fd, or outside the loop's run:
 * the fd's entry found again from w, so that the short way keeps nothing
 * for this one. */
#if defined(__GNUC__) && !defined(__clang__)
#define FD_EVENT_SLOW_ATTR __attribute__((noipa)) /* no clone with other arguments: fd_event jumps here as it was called */
#else
#define FD_EVENT_SLOW_ATTR __attribute__((noinline))
#endif
FD_EVENT_SLOW_ATTR static void fd_event_slow(ae_watcher *w, int revents)
{
    ae_loop *loop = w->loop;
    int fd = w->k.fd;
    ae_fd *f = fd_of(loop, fd);
    revents &= AE_IO_EVENTS; /* the rest is ignored (see fd_event), AE_ERROR too */
    if (loop->dispatch_inline)
        fd_dispatch(loop, f, revents);
    else
        io_ready_slow(loop, fd, f, revents);
}

/* The fd_event service: fd_ready's common case with the fewest loads. The
 * fd's first watcher gives the loop and the fd; an fd without watchers has
 * nothing to run. Bits of revents beyond AE_READ and AE_WRITE go in the
 * watcher's events mask. The callback is the last call: nothing of the loop
 * is touched after it. */
void ae_backend_fd_event(void *fd_data, int revents)
{
    ae_watcher *w = fd_of_data(fd_data)->head;
    if (!w)
        return;
    if (__builtin_expect(w->next || !w->loop->dispatch_inline, 0)) {
        fd_event_slow(w, revents);
        return;
    }
    int ready = w->io.events & revents;
    if (ready) {
        w->loop->dispatched++;
        w->cb.io(w, ready, w->arg);
    }
}
