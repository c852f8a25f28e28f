/* The libuv backend: one uv_poll_t per fd, one uv_timer_t to bound a wait,
 * and one that drives the core's timers when the host program runs the loop.
 * libuv's own timers, signal and process handles are not used: the core
 * keeps timers, signals and children for every backend.
 *
 * libuv releases a handle only through uv_close, whose callback runs later
 * in the loop, so every handle lives in memory of its own that its close
 * callback releases (the fds' handles in chunks that go with their last
 * one, fd_alloc): never in the core's fd table or in the backend state,
 * which the core frees before an adopted loop runs again. */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <uv.h>

#if defined(__linux__)
#include <sys/epoll.h>
#elif defined(__APPLE__) || defined(__FreeBSD__) || defined(__NetBSD__) || defined(__OpenBSD__) || \
    defined(__DragonFly__)
#define LUV_KQUEUE 1
#include <sys/event.h>
#else
#include <poll.h>
#endif

#include "../plugin.h"

const ae_backend_services *ae_core;

/* One per fd the core knows, made in fd_init; the core's fd_data holds the
 * pointer. The handle is bound to the fd number by uv_poll_init, done when
 * the fd is first watched, and stays bound until fd_fini closes it. */
typedef struct luv_fd {
    uv_poll_t poll; /* first: the close callback releases the whole struct */
    int fd;
    uint8_t events;          /* AE_READ|AE_WRITE the handle is started with, or 0 */
    bool dirty;              /* in the state's dirty list */
    bool stop_pending;       /* paused: check_cb stops the handle, unless resumed as it was before */
    bool probe;              /* resumed as it was before check_cb: it asks libuv's epoll whether the fd is the file registered */
    struct luv_fd *next_dirty; /* that list, linked through the fds' own memory */
    void *fd_data;           /* the core's memory for the fd (holding the pointer to this): fd_event's argument */
} luv_fd;

/* An fd paused and resumed with the same events before libuv polls again (a
 * pipe chain re-arms every fd each round) costs libuv an EPOLL_CTL_DEL at
 * uv_poll_stop and an ADD at its next poll, and may name another file when
 * resumed (closed and its number reused while paused: conformance check
 * io_reused_fd_rearmed). So the stop waits for check_cb, and a resumed
 * handle stays as it was; check_cb then asks libuv's epoll set with one
 * EPOLL_CTL_ADD: EEXIST means libuv's registration of this very file stands
 * (epoll keys on the file and the number), anything else is handled as a
 * changed fd. Linux only (the epoll set is libuv's uv_backend_fd). */
#if defined(__linux__)
#define LUV_DEFER_STOP 1
#else
#define LUV_DEFER_STOP 0
#endif

_Static_assert(offsetof(luv_fd, poll) == 0, "fd_released releases a luv_fd through its uv_poll_t");
_Static_assert(UV_UNKNOWN_HANDLE == 0, "a zeroed luv_fd's handle is not initialised (fd_bound)");

/* uv_poll_init has run on f's handle (its type is set then): only uv_close
 * may end it. */
static inline bool fd_bound(const luv_fd *f)
{
    return f->poll.type == UV_POLL;
}

/* The luv_fds are carved out of chunks of this many, so that an fd costs no
 * allocation of its own (nor malloc's 8 bytes). A luv_fd lives as long as
 * the loop (fd_init to fd_fini), and its handle's close callback may run
 * after the loop and this plugin's state are gone (an adopted loop closes
 * when its host runs it next): so each chunk counts its live luv_fds and
 * frees itself with the last one. A handle's data points to its chunk. */
#define LUV_CHUNK_FDS 64

typedef struct luv_chunk {
    struct luv_state *state; /* the state whose fds these are (poll_cb_slow) */
    uint32_t used;           /* fds[0..used) handed out */
    uint32_t live;           /* of those, not released yet */
    luv_fd fds[LUV_CHUNK_FDS];
} luv_chunk;

/* A zeroed luv_fd from s's current chunk, or a new one; NULL if out of memory. */
static luv_fd *fd_alloc(struct luv_state *s, luv_chunk **current)
{
    luv_chunk *c = *current;
    if (!c || c->used == LUV_CHUNK_FDS) {
        c = malloc(sizeof *c);
        if (!c)
            return NULL;
        c->state = s;
        c->used = 0;
        c->live = 0;
        *current = c;
    }
    luv_fd *f = &c->fds[c->used++];
    c->live++;
    memset(f, 0, sizeof *f);
    f->poll.data = c;
    return f;
}

/* f is done with (fd_fini, or its handle's close callback): its chunk goes
 * with its last luv_fd. Released only as the loop is freed, after the last
 * fd_alloc (see luv_destroy). */
static void fd_release(luv_fd *f)
{
    luv_chunk *c = f->poll.data;
    if (--c->live == 0)
        free(c);
}

static void fd_released(uv_handle_t *h) { fd_release((luv_fd *)h); }

/* libuv registers a started handle with the kernel only when it next polls,
 * and abort()s if that fails (the fd was closed in between). The handles
 * started since the last poll are checked first, by a prepare handle, and a
 * bad fd is reported with AE_ERROR instead of reaching libuv. */
typedef struct luv_state {
    uv_loop_t *uv;
    ae_loop *loop;
    bool owned;          /* made by init, not adopted: destroy closes and frees it */
    bool waiting;        /* inside wait() or run(): our uv_run, not the host's */
    int running;         /* run() calls under way */
    bool iterated;       /* iter_cb ran in the innermost run() */
    bool deadline_armed; /* expire or soon was started since last stopped by us: iter_cb looks at them */
    uv_timer_t *wake;    /* bounds wait() */
    uv_timer_t *expire;  /* the core's next timer deadline (run(), or an adopted loop) */
    uv_idle_t *soon;     /* the same: "as soon as possible", once per iteration */
    uv_idle_t *awake;    /* our loop, while the core has started idle watchers: the poll does not block */
    uv_prepare_t *check; /* runs right before libuv polls */
    uv_check_t *iter;    /* while run() runs: the core's iteration service, after the poll */
    luv_fd *dirty;         /* started since the last poll, last started first */
    size_t ndirty;
    ae_plugin_batch batch; /* being checked, in the order of the starts (room for nfds) */
    size_t nfds;           /* every fd the core knows */
    uv_prepare_t *hook_prepare; /* adopted: the core's prepare hooks in the host's iterations; made on first need */
    uv_check_t *hook_check;     /* adopted: its check hooks, likewise */
    luv_chunk *chunk;           /* the luv_fds' chunk being filled (fd_alloc) */
} luv_state;

static void free_handle(uv_handle_t *h) { free(h); }

/* libuv's codes are negative errno values on Unix, so this takes both. */
static int fd_error(int err, int fd, const char *what)
{
    switch (err) {
    case UV_EBADF:
        return ae_core->set_error(AE_EBADF, "ae_io: fd %d is not open", fd);
    case UV_ENOMEM:
        return ae_core->set_error(AE_ENOMEM, "libuv: %s fd %d: out of memory", what, fd);
    case UV_EEXIST:
        return ae_core->set_error(AE_ESTATE, "libuv: fd %d already has another uv_poll_t on this loop (libuv allows one)",
                                  fd);
    case UV_EPERM:
        return ae_core->set_error(AE_ENOTSUP, "libuv: cannot watch fd %d: the system's poller does not take this kind of "
                                  "file (a regular file or a directory?)", fd);
    default:
        return ae_core->set_error(AE_ESYS, "libuv: %s fd %d: %s", what, fd, uv_strerror(err));
    }
}

/* What uv_poll_init checks before it binds a handle to fd (libuv's
 * uv__io_check_fd, not public): that the loop's poller accepts the fd, as
 * libuv abort()s if it refuses a started handle's fd later. Returns 0 or a
 * negative errno value. */
static int poller_accepts(uv_loop_t *uv, int fd)
{
    int backend = uv_backend_fd(uv);
#if defined(__linux__)
    struct epoll_event e = {.events = EPOLLIN, .data.fd = -1};
    if (epoll_ctl(backend, EPOLL_CTL_ADD, fd, &e) < 0)
        return errno == EEXIST ? 0 : -errno;
    epoll_ctl(backend, EPOLL_CTL_DEL, fd, &e);
#elif defined(LUV_KQUEUE)
    struct kevent ev;
    EV_SET(&ev, fd, EVFILT_READ, EV_ADD, 0, 0, 0);
    if (kevent(backend, &ev, 1, NULL, 0, NULL) < 0)
        return -errno;
    EV_SET(&ev, fd, EVFILT_READ, EV_DELETE, 0, 0, 0);
    kevent(backend, &ev, 1, NULL, 0, NULL);
#else
    /* libuv's poll(2) backends make this check; for the others it is the
     * nearest portable one. */
    (void)backend;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int n;
    while ((n = poll(&p, 1, 0)) < 0 && (errno == EINTR || errno == EAGAIN))
        ;
    if (n < 0)
        return -errno;
    if (p.revents & POLLNVAL)
        return -EBADF;
#endif
    return 0;
}

static int uv_interest(int events)
{
    /* UV_DISCONNECT (a peer's shutdown) is asked for only with reading, as
     * it is reported as readable: a writer alone would see it fire forever. */
    return (events & AE_READ ? UV_READABLE | UV_DISCONNECT : 0) | (events & AE_WRITE ? UV_WRITABLE : 0);
}

static void check_cb(uv_prepare_t *check);

static void mark_dirty(luv_state *s, luv_fd *f)
{
    if (!AE_PLUGIN_DIRTY_PUT(s->dirty, f))
        return;
    s->ndirty++;
    uv_prepare_start(s->check, check_cb); /* a no-op while started */
}

/* Also removes the fd from the kernel at once, by number: so it is done
 * only while the handle is started, or just after libuv stopped it. */
static void poll_stop(luv_fd *f)
{
    uv_poll_stop(&f->poll);
    f->events = 0;
}

static void poll_cb(uv_poll_t *poll, int status, int uv_events);

/* Starts the handle of f with events, from no interest or some. */
static int poll_start(luv_state *s, luv_fd *f, int events)
{
    int rc = uv_poll_start(&f->poll, uv_interest(events), poll_cb);
    if (rc < 0)
        return rc;
    f->events = (uint8_t)events;
    /* Even a change between two masks is a new registration at the next
     * poll: uv_poll_start stops the handle first, which removes the fd from
     * the kernel at once (EPOLL_CTL_DEL), and the poll adds it back. */
    mark_dirty(s, f);
    return 0;
}

/* poll_cb's uncommon cases: a paused or unchecked handle (see LUV_DEFER_STOP),
 * or an error status. Out of line, so that the common case has no frame. */
__attribute__((noinline, cold)) static void poll_cb_slow(luv_fd *f, int status)
{
    luv_state *s = ((luv_chunk *)f->poll.data)->state;
    int revents;
    /* Paused (the core has no interest; check_cb stops it), or resumed
     * since and not checked yet: this poll's readiness may be the file's
     * that had the number before (closed and reused in between), and is
     * dropped as when the handle is stopped; a level-triggered fd still
     * ready is reported by the next poll. */
    if (f->stop_pending || f->probe) {
        if (status >= 0)
            return;
        /* libuv stopped the handle (below): a paused one stays so; a
         * resumed one starts again, checked as a changed fd. */
        int events = f->events;
        f->events = 0;
        if (f->stop_pending) {
            f->stop_pending = false;
            return;
        }
        f->probe = false;
        if (poll_start(s, f, events) == 0)
            return;
        revents = AE_ERROR;
    } else {
        /* libuv reports POLLERR this way and stops the handle. The fd is
         * valid still (a pipe without reader, a socket error): report what
         * it is watched for, as poll(2) does, so that the next read or write
         * returns the error, and keep watching, level-triggered. */
        revents = f->events;
        if (poller_accepts(s->uv, f->fd) < 0 || poll_start(s, f, f->events) < 0) {
            poll_stop(f);
            revents = AE_ERROR;
        }
    }
    /* Nothing of s or f may be used after this: from the host's uv_run, a
     * callback may free the anyevent loop. */
    ae_core->io_ready(s->loop, f->fd, revents);
}

static void poll_cb(uv_poll_t *poll, int status, int uv_events)
{
    luv_fd *f = (luv_fd *)poll;
    if (__builtin_expect(f->stop_pending || f->probe || status < 0, 0)) {
        poll_cb_slow(f, status);
        return;
    }
    int revents = (uv_events & (UV_READABLE | UV_DISCONNECT) ? AE_READ : 0) | (uv_events & UV_WRITABLE ? AE_WRITE : 0);
    if (revents)
        ae_plugin_fd_event(f->fd_data, revents); /* the last use of f: a callback may free the loop (see above) */
}

/* Whether libuv's epoll_ctl would refuse the fd polled as p: closed
 * (POLLNVAL), or its number reused by a regular file or a directory (EPERM).
 * Those always poll readable and writable; so does a socket ready both ways,
 * and only then an fstat tells them apart. */
static bool epoll_would_refuse(const struct pollfd *p)
{
    if (p->revents & POLLNVAL)
        return true;
    if ((p->revents & (POLLIN | POLLOUT)) != (POLLIN | POLLOUT))
        return false;
    struct stat st;
    return fstat(p->fd, &st) < 0 || S_ISREG(st.st_mode) || S_ISDIR(st.st_mode);
}

#if LUV_DEFER_STOP
/* A resumed handle (see LUV_DEFER_STOP): true if libuv's epoll set has this
 * file at this number already, or it does not and the handle was restarted
 * so that libuv registers it (checked again as a changed fd); false if
 * libuv's epoll_ctl would refuse the fd (closed, a regular file). */
static bool probe_registered(luv_state *s, luv_fd *f)
{
    int backend = uv_backend_fd(s->uv);
    int err = ae_plugin_epoll_ask(backend, f->fd, UINT64_MAX); /* data.fd -1: libuv skips it */
    if (err == EEXIST)
        return true;
    if (err)
        return false;
    int events = f->events;
    poll_stop(f);
    return poll_start(s, f, events) == 0;
}
#else
static bool probe_registered(luv_state *s, luv_fd *f) /* never called: nothing is resumed unchecked */
{
    (void)s;
    (void)f;
    return false;
}
#endif

static void check_cb(uv_prepare_t *check)
{
    luv_state *s = check->data;
    bool reported = false;
    /* Callbacks run from here may start more handles: go until none is left. */
    while (s->dirty) {
        /* Take the list (new changes go to an empty one) into the batch,
         * in the order of the changes. */
        ae_plugin_batch *b = &s->batch;
        luv_fd *f;
        size_t polled = 0;
        AE_PLUGIN_DIRTY_TAKE(b, s->dirty, s->ndirty, f, i) {
            if (f->stop_pending) {
                f->stop_pending = false;
                f->probe = false;
                poll_stop(f);
            }
            /* poll(2) skips a negative fd; a resumed one is asked below */
            b->pfds[i].fd = f->probe || !f->events ? -1 : f->fd;
            polled += b->pfds[i].fd >= 0;
        }
        /* One poll(2) for every changed fd: libuv abort()s if epoll refuses
         * one (closed: EBADF; a regular file or directory: EPERM). */
        if (polled)
            ae_plugin_batch_poll_events(b, POLLIN | POLLOUT);
        for (size_t i = 0; i < b->n; i++) {
            luv_fd *f = b->items[i];
            if (!f->events || f->dirty)
                continue;
            if (b->pfds[i].fd < 0) {
                f->probe = false;
                if (probe_registered(s, f))
                    continue;
            } else if (!epoll_would_refuse(&b->pfds[i])) {
                continue;
            }
            poll_stop(f);
            reported = true;
            /* From the host's uv_run a callback may free the anyevent loop,
             * and s with it. */
            if (!ae_core->io_ready(s->loop, f->fd, AE_ERROR))
                return;
        }
        b->n = 0;
    }
    uv_prepare_stop(check);
    /* Our own wait returns with what it reported rather than blocking in
     * the poll that follows; the host's uv_run goes on as it would. */
    if (reported && s->waiting)
        uv_stop(s->uv);
}

static void wake_cb(uv_timer_t *timer) { (void)timer; }

/* An adopted loop the host runs: the core's "at once" runs from the idle
 * handle. Under our own run(), the active idle handle only keeps the poll
 * from blocking, and iter_cb runs the core after the poll's io, so that
 * idle watchers see whether io came in this iteration. */
static void soon_cb(uv_idle_t *idle)
{
    luv_state *s = idle->data;
    if (s->running)
        return;
    uv_idle_stop(idle);
    ae_core->expire(s->loop);
}

/* Under our own run(), libuv runs due timers at the start of an iteration,
 * before its prepare handles and before the core's prepare hooks have seen
 * what those timers batch. The core's timers run only in iter_cb, after the
 * poll, as on every other backend: a deadline found due here makes the poll
 * not block (the soon handle) and iter_cb runs it. */
static void expire_cb(uv_timer_t *timer)
{
    luv_state *s = timer->data;
    if (s->running) {
        uv_idle_start(s->soon, soon_cb);
        return;
    }
    ae_core->expire(s->loop);
}

/* The delay to give a libuv timer so that it fires no earlier than `seconds`
 * from now on the core's clock. libuv counts whole milliseconds of its cached
 * loop time, which trails the clock (truncated, or a coarse clock): a delay
 * of ceil(seconds * 1000) from it can fire up to a millisecond before the
 * core's deadline, and that iteration would find no timer due and run
 * nothing. Counted from the cached time to the deadline's millisecond, the
 * timer fires at the deadline's millisecond or after. */
static uint64_t timeout_ms(const luv_state *s, double seconds)
{
    double deadline_ms = ceil((double)uv_hrtime() * 1e-6 + seconds * 1000);
    double delay = deadline_ms - (double)uv_now(s->uv);
    if (!(delay < 0x1p63))
        return UINT64_MAX;
    return delay > 0 ? (uint64_t)delay : 0;
}

/* The state's own handles. They are allocated apart from the state, which
 * the core frees as soon as destroy returns, before their close callbacks
 * run in an adopted loop. */
/* Whether the core's next timer deadline has come: soon started, or expire
 * due (which libuv would run only at the start of the next iteration). */
static bool deadline_due(const luv_state *s)
{
    return uv_is_active((const uv_handle_t *)s->soon) ||
           (uv_is_active((const uv_handle_t *)s->expire) && uv_timer_get_due_in(s->expire) == 0);
}

static void deadline_stop(luv_state *s)
{
    uv_timer_stop(s->expire);
    uv_idle_stop(s->soon);
    s->deadline_armed = false;
}

static void iter_cb(uv_check_t *iter)
{
    luv_state *s = iter->data;
    /* The core's timers run after this iteration's io and before its check
     * hooks, as on every backend: libuv would run a timer that fell due
     * during the poll only at the start of the next iteration. */
    if (s->deadline_armed && deadline_due(s)) {
        deadline_stop(s);
        ae_core->expire(s->loop);
    }
    s->iterated = true;
    if (!ae_core->iteration(s->loop))
        uv_stop(s->uv);
}

static int watchers_open(ae_loop *loop, luv_state *s, uv_loop_t *uv)
{
    uv_timer_t *wake = malloc(sizeof *wake);
    uv_prepare_t *check = malloc(sizeof *check);
    uv_timer_t *expire = malloc(sizeof *expire);
    uv_idle_t *soon = malloc(sizeof *soon);
    uv_idle_t *awake = malloc(sizeof *awake);
    uv_check_t *iter = malloc(sizeof *iter);
    if (!wake || !check || !expire || !soon || !awake || !iter) {
        free(wake);
        free(check);
        free(expire);
        free(soon);
        free(awake);
        free(iter);
        return ae_core->set_error(AE_ENOMEM, "libuv: out of memory");
    }
    s->uv = uv;
    s->loop = loop;
    /* The init functions of timers and prepare handles cannot fail. */
    uv_timer_init(uv, wake);
    s->wake = wake;
    uv_prepare_init(uv, check);
    check->data = s;
    /* The fds it checks keep the loop alive; it alone must not. */
    uv_unref((uv_handle_t *)check);
    s->check = check;
    uv_timer_init(uv, expire);
    expire->data = s;
    s->expire = expire;
    uv_idle_init(uv, soon);
    soon->data = s;
    s->soon = soon;
    uv_idle_init(uv, awake);
    s->awake = awake;
    uv_check_init(uv, iter);
    iter->data = s;
    uv_unref((uv_handle_t *)iter);
    s->iter = iter;
    return 0;
}

static int luv_init(ae_loop *loop, void *state)
{
    luv_state *s = state;
    uv_loop_t *uv = malloc(sizeof *uv);
    if (!uv)
        return ae_core->set_error(AE_ENOMEM, "libuv: out of memory");
    int rc = uv_loop_init(uv);
    if (rc < 0) {
        free(uv);
        return ae_core->set_error(AE_ESYS, "libuv: uv_loop_init: %s", uv_strerror(rc));
    }
    if (watchers_open(loop, s, uv) < 0) {
        uv_loop_close(uv); /* no handle was made */
        free(uv);
        return AE_ENOMEM;
    }
    s->owned = true;
    return 0;
}

static int luv_adopt(ae_loop *loop, void *state, void *native)
{
    return watchers_open(loop, state, native);
}

static void note_closing(uv_handle_t *h, void *arg)
{
    if (uv_is_closing(h))
        *(bool *)arg = true;
}

/* Close callbacks run at the end of a loop iteration: iterate until they
 * have, then close and free the loop. */
static void owned_loop_close(uv_loop_t *uv)
{
    while (uv_loop_close(uv) == UV_EBUSY) {
        bool closing = false;
        uv_walk(uv, note_closing, &closing);
        if (!closing)
            return; /* handles or requests others made through ae_loop_native() are open:
                     * leak the loop rather than free it under them */
        uv_run(uv, UV_RUN_NOWAIT);
    }
    free(uv);
}

static void luv_destroy(ae_loop *loop, void *state)
{
    (void)loop;
    luv_state *s = state;
    /* The fds' handles are closed (fd_fini): drop the list unread. Their
     * chunks go with the last close callback. */
    ae_plugin_batch_free(&s->batch);
    uv_close((uv_handle_t *)s->wake, free_handle);
    uv_close((uv_handle_t *)s->check, free_handle);
    uv_close((uv_handle_t *)s->expire, free_handle);
    uv_close((uv_handle_t *)s->soon, free_handle);
    uv_close((uv_handle_t *)s->awake, free_handle);
    uv_close((uv_handle_t *)s->iter, free_handle);
    if (s->hook_prepare)
        uv_close((uv_handle_t *)s->hook_prepare, free_handle);
    if (s->hook_check)
        uv_close((uv_handle_t *)s->hook_check, free_handle);
    /* An adopted loop is the host's: the close callbacks run when it next
     * runs it, and free only the handles. */
    if (s->owned)
        owned_loop_close(s->uv);
}

/* The handle, and room in the closed-fd check's batch for it, so that
 * fd_update and the check never allocate (the dirty list is linked through
 * the luv_fds). */
static int luv_fd_init(ae_loop *loop, void *state, int fd, void *fd_data)
{
    (void)loop;
    luv_state *s = state;
    if (ae_plugin_batch_reserve(&s->batch, s->nfds + 1) < 0)
        return ae_core->set_error(AE_ENOMEM, "libuv: out of memory for fd %d", fd);
    luv_fd *f = fd_alloc(s, &s->chunk);
    if (!f)
        return ae_core->set_error(AE_ENOMEM, "libuv: out of memory for fd %d", fd);
    f->fd = fd;
    f->fd_data = fd_data;
    s->nfds++;
    *(luv_fd **)fd_data = f;
    return 0;
}

static void luv_fd_fini(ae_loop *loop, void *state, int fd, void *fd_data)
{
    (void)loop;
    (void)state;
    (void)fd;
    luv_fd *f = *(luv_fd **)fd_data;
    if (fd_bound(f))
        uv_close((uv_handle_t *)&f->poll, fd_released);
    else
        fd_release(f);
}

/* Make the handle ready to start from no interest: bind it to fd the first
 * time. Later the number may name another file than the one uv_poll_init
 * saw (closed and reopened in between). The handle keeps only the number,
 * and stopping it removed the old file from the kernel, so starting it
 * registers the new one; but uv_poll_init cannot be repeated on a live
 * handle, so what it did for the old file is done here for the new. */
static int poll_ready(luv_state *s, luv_fd *f, int fd)
{
    if (!fd_bound(f)) {
        /* This also makes fd non-blocking: documented libuv behaviour.
         * libuv leaves data alone; kept across it all the same. */
        void *chunk = f->poll.data;
        int rc = uv_poll_init(s->uv, &f->poll, fd);
        f->poll.data = chunk;
        if (rc < 0)
            return fd_error(rc, fd, "uv_poll_init");
        return 0;
    }
    /* Bound already: the handle keeps only the number, and stopping it took
     * the old file out of the kernel, so starting it registers whatever the
     * number names now; check_cb vets that file before libuv polls it. */
    return 0;
}

static int luv_fd_update(ae_loop *loop, void *state, int fd, void *fd_data, int old_events, int new_events)
{
    (void)loop;
    luv_state *s = state;
    luv_fd *f = *(luv_fd **)fd_data;
    if (new_events == 0) {
        /* Never fails, also for a closed fd. A handle that poll_cb or
         * check_cb stopped already is left alone. */
        if (f->events && !f->stop_pending) {
            if (LUV_DEFER_STOP) {
                f->stop_pending = true; /* check_cb stops it, unless resumed as it was */
                mark_dirty(s, f);
            } else {
                poll_stop(f);
            }
        }
        return 0;
    }
    if (f->stop_pending) {
        f->stop_pending = false;
        if (new_events == f->events) {
            f->probe = true; /* in the dirty list since the pause */
            return 0;
        }
        poll_stop(f);
    }
    /* f->events is 0 also if poll_cb or check_cb stopped the handle for a
     * bad fd that the core could not be told about (the loop was being
     * freed): start it as from no interest. */
    if (old_events == 0 || f->events == 0) {
        int rc = poll_ready(s, f, fd);
        if (rc < 0)
            return rc;
    }
    /* Only an fd another uv_poll_t has taken (a host's, in an adopted loop)
     * fails here, before the handle is touched: the old interest stays. */
    f->probe = false;
    int rc = poll_start(s, f, new_events);
    return rc < 0 ? fd_error(rc, fd, "uv_poll_start") : 0;
}

static int luv_wait(ae_loop *loop, void *state, double timeout)
{
    (void)loop;
    luv_state *s = state;
    s->waiting = true;
    if (timeout == 0) {
        uv_run(s->uv, UV_RUN_NOWAIT);
    } else {
        if (timeout > 0) {
            uv_timer_start(s->wake, wake_cb, timeout_ms(s, timeout), 0);
        }
        uv_run(s->uv, UV_RUN_ONCE);
        uv_timer_stop(s->wake);
    }
    s->waiting = false;
    return 0;
}

/* uv_run owns the iteration: the core's timers come through the expire
 * timer (run by libuv at the start of the next iteration, after this one's
 * io), its per-iteration work through the iter check handle, after the
 * poll's callbacks; uv_stop there ends uv_run at the end of the iteration. */
static int luv_run(ae_loop *loop, void *state, int flags)
{
    luv_state *s = state;
    bool waiting = s->waiting;
    s->waiting = true;
    if (s->running++ == 0)
        uv_check_start(s->iter, iter_cb);
    s->iterated = false;
    uv_run(s->uv, flags & AE_BACKEND_RUN_NOWAIT ? UV_RUN_NOWAIT : flags & AE_BACKEND_RUN_ONCE ? UV_RUN_ONCE : UV_RUN_DEFAULT);
    /* With nothing of libuv's alive, uv_run runs no iteration at all: the
     * core's still ends one (its check hooks). */
    if (!s->iterated)
        ae_core->iteration(loop);
    if (--s->running == 0)
        uv_check_stop(s->iter);
    s->waiting = waiting;
    return 0;
}

/* From a callback: uv_run returns at the end of this iteration; a poll that
 * is still to come in it does not block. */
static void luv_run_break(ae_loop *loop, void *state)
{
    (void)loop;
    uv_stop(((luv_state *)state)->uv);
}

static void luv_timer_update(ae_loop *loop, void *state, double timeout)
{
    (void)loop;
    luv_state *s = state;
    deadline_stop(s);
    if (timeout < 0)
        return;
    s->deadline_armed = true;
    if (timeout == 0) {
        /* Not a 0 ms timer: libuv 1.44 runs a timer re-armed to 0 from its
         * own callback again in the same pass, never reaching the poll. An
         * idle handle runs once per iteration and makes the poll not block. */
        uv_idle_start(s->soon, soon_cb);
        return;
    }
    uv_timer_start(s->expire, expire_cb, timeout_ms(s, timeout), 0);
}

static void awake_cb(uv_idle_t *idle) { (void)idle; }

/* An active idle handle makes the poll not block; iter_cb's iteration
 * service runs the core's idle watchers when nothing ran in the iteration
 * (libuv runs idle handles in every iteration, before the poll). */
static void luv_idle_update(ae_loop *loop, void *state, int on)
{
    (void)loop;
    luv_state *s = state;
    if (on)
        uv_idle_start(s->awake, awake_cb);
    else
        uv_idle_stop(s->awake);
}

/* ---- loop hooks in the host's iterations (adopted loops) ---- */

static void hook_prepare_cb(uv_prepare_t *h)
{
    luv_state *s = h->data;
    ae_core->hooks_run(s->loop, AE_BACKEND_HOOK_PREPARE);
}

static void hook_check_cb(uv_check_t *h)
{
    luv_state *s = h->data;
    /* As in iter_cb: a core timer that fell due during the poll runs
     * before the check hooks, not at the start of the next iteration. */
    if (s->deadline_armed && deadline_due(s)) {
        deadline_stop(s);
        if (!ae_core->expire_checked(s->loop))
            return; /* a timer callback freed the loop, and s with it */
    }
    ae_core->hooks_run(s->loop, AE_BACKEND_HOOK_CHECK);
}

/* The handles are made on first need and kept (stopped) until destroy;
 * unref'd: hooks never keep the host's uv_run going. */
static int luv_hooks_update(ae_loop *loop, void *state, int kind, int on)
{
    (void)loop;
    luv_state *s = state;
    if (kind == AE_BACKEND_HOOK_PREPARE) {
        if (!on) {
            uv_prepare_stop(s->hook_prepare);
            return 0;
        }
        if (!s->hook_prepare) {
            if (!(s->hook_prepare = malloc(sizeof *s->hook_prepare)))
                return ae_core->set_error(AE_ENOMEM, "libuv: out of memory");
            uv_prepare_init(s->uv, s->hook_prepare); /* cannot fail */
            s->hook_prepare->data = s;
            uv_unref((uv_handle_t *)s->hook_prepare);
        }
        uv_prepare_start(s->hook_prepare, hook_prepare_cb);
        return 0;
    }
    if (!on) {
        uv_check_stop(s->hook_check);
        return 0;
    }
    if (!s->hook_check) {
        if (!(s->hook_check = malloc(sizeof *s->hook_check)))
            return ae_core->set_error(AE_ENOMEM, "libuv: out of memory");
        uv_check_init(s->uv, s->hook_check);
        s->hook_check->data = s;
        uv_unref((uv_handle_t *)s->hook_check);
    }
    uv_check_start(s->hook_check, hook_check_cb);
    return 0;
}

static void *luv_native(void *state) { return ((luv_state *)state)->uv; }

/* uv_loop_fork re-creates the loop's kernel state; every active poll handle
 * is registered again at the next poll. */
static int luv_fork(ae_loop *loop, void *state)
{
    (void)loop;
    int rc = uv_loop_fork(((luv_state *)state)->uv);
    if (rc != 0)
        return ae_core->set_error(AE_ESYS, "libuv: uv_loop_fork: %s", uv_strerror(rc));
    return 0;
}

static void *luv_default_native(void) { return uv_default_loop(); }

static const ae_backend_ops libuv_ops = {
    .abi_version = AE_BACKEND_ABI_VERSION,
    .struct_size = sizeof(ae_backend_ops),
    .name = "libuv",
    .state_size = sizeof(luv_state),
    .fd_data_size = sizeof(luv_fd *),
    .fd_data_align = _Alignof(luv_fd *),
    .features = 0, /* uv_run must not be called recursively */
    .init = luv_init,
    .destroy = luv_destroy,
    .fd_init = luv_fd_init,
    .fd_fini = luv_fd_fini,
    .fd_update = luv_fd_update,
    .wait = luv_wait,
    .native = luv_native,
    .adopt = luv_adopt,
    .timer_update = luv_timer_update,
    .fork = luv_fork,
    .default_native = luv_default_native,
    .run = luv_run,
    .run_break = luv_run_break,
    .host_symbol = "uv_default_loop",
    .rank = 20,
    .hooks_update = luv_hooks_update,
    .idle_update = luv_idle_update,
};

AE_BACKEND_ENTRY(services)
{
    if (ae_plugin_accept_fd_event(services, "libuv") < 0)
        return NULL;
    if ((uv_version() >> 16) != UV_VERSION_MAJOR) {
        ae_core->set_error(AE_ENOTSUP, "libuv: built for libuv %d.x, running with %s", UV_VERSION_MAJOR,
                           uv_version_string());
        return NULL;
    }
    return &libuv_ops;
}

/* How a host program makes and runs a uv_loop_t, for ae-conformance's
 * adoption checks (docs/conformance.md). */
static void *host_loop_new(void)
{
    uv_loop_t *uv = malloc(sizeof *uv);
    if (uv && uv_loop_init(uv) != 0) {
        free(uv);
        return NULL;
    }
    return uv;
}

static int host_run_once(void *native, int block)
{
    uv_run(native, block ? UV_RUN_ONCE : UV_RUN_NOWAIT);
    return 0;
}

static int host_loop_fork(void *native) { return uv_loop_fork(native) == 0 ? 0 : -1; }

/* Handles closed by others (anyevent's) finish their close here. */
static void host_loop_free(void *native)
{
    while (uv_loop_close(native) == UV_EBUSY)
        uv_run(native, UV_RUN_NOWAIT);
    free(native);
}

static const ae_backend_test_host libuv_host = {
    .version = AE_BACKEND_ABI_VERSION,
    .struct_size = sizeof(ae_backend_test_host),
    .loop_new = host_loop_new,
    .run_once = host_run_once,
    .loop_free = host_loop_free,
    .loop_fork = host_loop_fork,
};

AE_BACKEND_TEST_HOST() { return &libuv_host; }
