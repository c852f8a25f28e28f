/* The libevent backend: one struct event per fd (a second, used in turn,
 * for an fd whose interest changes while watched: see lev_fd), one timer
 * to bound a wait, and one that drives the core's timers when the host
 * program runs the event_base. libevent's own
 * signal events are not used: see docs/backends.md. */
#include <dlfcn.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <event2/event_struct.h>

#include "../plugin.h"

const ae_backend_services *ae_core;

/* Longer waits are cut to this many seconds: the core then just waits again. */
#define LEV_MAX_WAIT (86400.0 * 365)

/* One struct event per fd, for every direction watched: a socket ready both
 * ways is one callback with EV_READ|EV_WRITE, so the core is told once per
 * iteration with the combined revents and calls the fd's watchers once each,
 * in creation order. (With one event per direction libevent called the
 * newest event first: AE_WRITE, then AE_READ, two calls.)
 *
 * An event's directions are fixed while it is added, so an interest change
 * assigns the other event of the pair with the new mask, adds it, then
 * deletes the old one. Only the first event is in the fd's entry of the
 * core's fd table: the second is made at the fd's first such change (a read
 * watcher that never gains a writer never needs it) in pages outside the
 * table (lev_other), as a struct event is 128 bytes and the entry with one
 * 160. libevent's evmap counts events per direction and calls epoll_ctl
 * only for a direction whose count goes from 0 to 1 or from 1 to 0: R to
 * RW is one MOD (adding W), RW to R one MOD (deleting W), as with one event
 * per direction. Deleting and re-adding one event would be a
 * DEL and an ADD for every change: measured, 6000 changes between R and RW
 * cost 6000 epoll_ctl calls this way and 11999 that way.
 *
 * libevent registers an fd with the kernel in event_add, which fails on a
 * closed fd (ae_io_set then fails with AE_EBADF); an fd closed afterwards
 * silently leaves epoll and would never be reported. The fds whose interest
 * differs from what the loop last polled with are kept in a list through
 * their own memory (so fd_update never allocates) and checked with one
 * poll(2) when the next iteration starts. An fd paused and resumed with the
 * same interest before that (a pipe chain re-arming every fd) is not: its
 * event_add just checked it, and a close after it is the same case as a
 * close after the poll (docs/backends.md, "Closed fds").
 *
 * A pause followed by a resume with the same events (a pipe chain re-arms
 * every fd so each round; natively event_del and event_add, an epoll_ctl
 * DEL and ADD) need not reach libevent. In a loop of our own whose
 * event_base nobody else has (not adopted, ae_loop_native() not called) and
 * that polls with epoll, the pause of one fd at a time is deferred: its
 * event stays added (events keeps its mask) until the plugin's next call
 * for another fd or its next poll, whichever comes first (paused_flush).
 * Nothing else polls that base or adds events to it, so no one sees the
 * fd's registration before then; readiness reported for it meanwhile (the
 * rest of an iteration whose callback paused it) finds no interest in the
 * core and is dropped. Resumed before then with the same events, the fd may
 * name another file (closed and its number reused in between: conformance
 * io_reused_fd_rearmed), which libevent's epoll set would not hold: one
 * epoll_ctl(EPOLL_CTL_ADD) on a private epoll set of the plugin's asks
 * (ae_plugin_probe_fd; libevent does not tell its own set). EEXIST with
 * the set mirroring libevent's registration: the same file, nothing to do
 * (one system call instead of two); EBADF: closed, the pause done and ae_io_set
 * fails with AE_EBADF, as event_add would have; success: another file (or
 * the fd's first check), handed to libevent again with event_del and
 * event_add. */
typedef struct lev_fd {
    struct event ev;           /* the fd's event: the added one unless on_other */
    struct lev_fd *next_dirty;
    unsigned epoch;            /* the state's epoch when polled_events was taken */
    uint8_t events;            /* AE_READ|AE_WRITE added to libevent (its pause may be deferred) */
    uint8_t polled_events;     /* events when libevent last polled (valid while epoch is the state's) */
    bool on_other : 1;         /* the fd's second event (lev_other), not ev, is added while events != 0 */
    bool has_other : 1;        /* that second event is assigned */
    bool dirty : 1;            /* in the state's dirty list */
    bool mirrored;             /* the private set holds the file libevent registered for this fd */
} lev_fd;

typedef struct lev_state {
    struct event_base *base;
    ae_loop *loop;
    bool adopted;
    bool coarse_clock;   /* libevent's time may trail CLOCK_MONOTONIC (timeout_after) */
    struct event wake;   /* bounds ae_run_once()'s wait */
    struct event expire; /* adopted: the core's next timer deadline */
    lev_fd *dirty;       /* given interest since the last wait */
    ae_plugin_batch batch; /* room for every fd the core knows */
    size_t nfds;
    unsigned epoch;      /* event_base_loop calls by run() and wait(): an fd's interest changes since */
    unsigned waits;      /* those by wait(): epoch - waits counts run()'s (lev_iterations) */
    bool hook;           /* run() calls the iteration service (the core's iteration_hook) */
    bool shared;         /* the program has the base too: adopted, or ae_loop_native() was called */
    bool defer;          /* pauses may be deferred (see lev_fd): not shared, polled with epoll */
    unsigned returned;   /* epoch when event_base_loop last returned; while it runs (epoch is
                          * ahead) pauses are done at once (see lev_fd) */
    lev_fd *paused;      /* the fd whose pause is deferred: interest 0, its event still added */
    struct event **others; /* pages of the fds' second events, by fd (lev_other); a page made on first need */
    size_t others_len;
    ae_plugin_probe probe; /* the private epoll set that tells a resumed fd's file */
} lev_state;

/* The fds' second events, in pages of this many (4 KiB), by fd number,
 * outside the fd table: a page is made when one of its fds first changes
 * its interest while watched (see lev_fd), so that fds that never do cost
 * nothing for it, and no fd costs an allocation of its own. */
#define LEV_OTHERS_PAGE 32

/* fd's second event; its page exists (has_other). */
static inline struct event *lev_other(const lev_state *s, int fd)
{
    return s->others[(unsigned)fd / LEV_OTHERS_PAGE] + (unsigned)fd % LEV_OTHERS_PAGE;
}

/* fd's second event, its page made if need be; NULL when out of memory. */
static struct event *lev_other_make(lev_state *s, int fd)
{
    size_t page = (unsigned)fd / LEV_OTHERS_PAGE;
    if (page >= s->others_len) {
        size_t len = s->others_len ? s->others_len : 4;
        while (len <= page)
            len *= 2;
        struct event **others = realloc(s->others, len * sizeof *others);
        if (!others)
            return NULL;
        memset(others + s->others_len, 0, (len - s->others_len) * sizeof *others);
        s->others = others;
        s->others_len = len;
    }
    if (!s->others[page] && !(s->others[page] = malloc(LEV_OTHERS_PAGE * sizeof **s->others)))
        return NULL;
    return lev_other(s, fd);
}

/* The fd's current event: the one added while events != 0. */
static inline struct event *lev_current(const lev_state *s, lev_fd *f, int fd)
{
    return f->on_other ? lev_other(s, fd) : &f->ev;
}

/* libevent's EV_READ and EV_WRITE are anyevent's bits, one place up. */
_Static_assert(EV_READ == (int)AE_READ << 1 && EV_WRITE == (int)AE_WRITE << 1,
               "EV_READ, EV_WRITE are AE_READ, AE_WRITE << 1");

/* arg is the fd's lev_fd, its fd_data: the core needs no table lookup. */
static void io_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    ae_plugin_fd_event(arg, what >> 1); /* EV_READ, EV_WRITE shifted; fd_event ignores the other bits */
}

static void wake_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

static void expire_cb(evutil_socket_t fd, short what, void *loop)
{
    (void)fd;
    (void)what;
    ae_core->expire(loop);
}

/* Rounded up: libevent must not wake before the deadline. */
static struct timeval to_timeval(double seconds)
{
    if (!(seconds <= LEV_MAX_WAIT))
        seconds = LEV_MAX_WAIT;
    double us = seconds * 1e6;
    long long n = (long long)us;
    if ((double)n < us)
        n++;
    return (struct timeval){.tv_sec = (time_t)(n / 1000000), .tv_usec = (suseconds_t)(n % 1000000)};
}

static void timers_init(ae_loop *loop, lev_state *s)
{
    s->hook = true; /* until the core says otherwise (it may predate iteration_hook) */
    s->loop = loop;
    ae_plugin_probe_init(&s->probe);
    evtimer_assign(&s->wake, s->base, wake_cb, NULL);
    evtimer_assign(&s->expire, s->base, expire_cb, loop);
}

static void timers_fini(lev_state *s)
{
    evtimer_del(&s->wake);
    evtimer_del(&s->expire);
    /* Only does something if the host turned on libevent's debug mode. */
    event_debug_unassign(&s->wake);
    event_debug_unassign(&s->expire);
}

/* Whether libevent's clock may be CLOCK_MONOTONIC_COARSE: it is for a base
 * made without EVENT_BASE_FLAG_PRECISE_TIMER (by flag, or the environment
 * variable EVENT_PRECISE_TIMER) where the kernel has that clock. A host's
 * base may have been made either way and libevent does not say: it is
 * taken to be coarse, so that timers are never early (at worst a tick late
 * in a precise one). */
static bool clock_may_be_coarse(bool adopted)
{
    struct timespec res;
    if (clock_getres(CLOCK_MONOTONIC_COARSE, &res) < 0)
        return false;
    return adopted || !secure_getenv("EVENT_PRECISE_TIMER");
}

static int lev_init(ae_loop *loop, void *state)
{
    lev_state *s = state;
    errno = 0;
    s->base = event_base_new();
    if (!s->base) {
        if (errno)
            return ae_core->set_errno("libevent: event_base_new failed");
        return ae_core->set_error(AE_ESYS, "libevent: event_base_new failed");
    }
    s->coarse_clock = clock_may_be_coarse(false);
    timers_init(loop, s);
#ifdef __linux__
    /* The probe tells files apart as epoll does: under another method
     * libevent polls by number, and nothing is deferred. */
    s->defer = !strcmp(event_base_get_method(s->base), "epoll");
#endif
    return 0;
}

static int lev_adopt(ae_loop *loop, void *state, void *native)
{
    lev_state *s = state;
    s->base = native;
    s->adopted = true;
    s->shared = true;
    s->coarse_clock = clock_may_be_coarse(true);
    timers_init(loop, s);
    /* libevent's timer heap never shrinks: growing it for our timer now means
     * timer_update will not have to (unless the host's timers fill it). */
    struct timeval now = {0, 0};
    if (evtimer_add(&s->expire, &now) < 0) {
        timers_fini(s);
        return ae_core->set_error(AE_ENOMEM, "libevent: out of memory for a timer");
    }
    evtimer_del(&s->expire);
    return 0;
}

static void lev_destroy(ae_loop *loop, void *state)
{
    (void)loop;
    lev_state *s = state;
    timers_fini(s);
    ae_plugin_probe_close(&s->probe);
    if (!s->adopted)
        event_base_free(s->base);
    ae_plugin_batch_free(&s->batch);
    for (size_t p = 0; p < s->others_len; p++)
        free(s->others[p]);
    free(s->others);
}

static int lev_fd_init(ae_loop *loop, void *state, int fd, void *fd_data)
{
    (void)loop;
    lev_state *s = state;
    lev_fd *f = fd_data;
    if (ae_plugin_batch_reserve(&s->batch, s->nfds + 1) < 0)
        return ae_core->set_error(AE_ENOMEM, "libevent: out of memory");
    s->nfds++;
    /* Assigned now, so that event_get_fd and event_debug_unassign work on
     * it; fd_update assigns it again with the mask it needs. */
    event_assign(&f->ev, s->base, fd, EV_READ | EV_PERSIST, io_cb, f);
    return 0;
}

/* The deferred pause done: its event deleted. */
static void paused_flush(lev_state *s)
{
    lev_fd *f = s->paused;
    s->paused = NULL;
    event_del(lev_current(s, f, (int)event_get_fd(&f->ev)));
    f->events = 0;
}

static void lev_fd_fini(ae_loop *loop, void *state, int fd, void *fd_data)
{
    (void)loop;
    lev_state *s = state;
    lev_fd *f = fd_data;
    if (s->paused == f)
        paused_flush(s);
    event_debug_unassign(&f->ev);
    if (f->has_other)
        event_debug_unassign(lev_other(s, fd));
}

/* strerror() may share one buffer between threads (loops run on several):
 * strerror_r(), in its GNU flavour (returns the text) or the POSIX one. */
static const char *lev_errno_text(int err, char *buf, size_t size)
{
#if defined(__GLIBC__) && defined(_GNU_SOURCE)
    return strerror_r(err, buf, size);
#else
    if (strerror_r(err, buf, size) != 0)
        snprintf(buf, size, "error %d", err);
    return buf;
#endif
}

/* event_add failed (errno err): say why as precisely as we can. */
static int add_failed(int fd, const char *direction, int err)
{
    if (fcntl(fd, F_GETFD) < 0)
        return ae_plugin_fd_check(fd);
    char buf[128];
    /* EPERM: the poller refuses this kind of file, as libuv's does. */
    return ae_core->set_error(err == ENOMEM ? AE_ENOMEM : err == EPERM ? AE_ENOTSUP : AE_ESYS,
                              "libevent: cannot watch fd %d for %s: event_add: %s%s", fd, direction,
                              err ? lev_errno_text(err, buf, sizeof buf) : "failed",
                              err == EPERM ? " (epoll cannot watch regular files)" : "");
}

static short to_libevent(int events)
{
    return (short)((events & AE_READ ? EV_READ : 0) | (events & AE_WRITE ? EV_WRITE : 0));
}

/* f, whose pause was deferred, resumed with the events its event has: the
 * private set says whether the fd still names the file libevent has (see
 * lev_fd). Out of line: a system call follows anyway. */
__attribute__((noinline)) static int resume_probed(lev_state *s, lev_fd *f, int fd)
{
    ae_plugin_probed probed = ae_plugin_probe_fd(&s->probe, fd, &f->mirrored);
    if (probed == AE_PLUGIN_PROBED_SAME)
        return 0; /* libevent's registration stands */
    /* Closed, another file, or not known (the first check, no private
     * set): the pause is done, and libevent is told again. */
    int events = f->events;
    struct event *ev = lev_current(s, f, fd);
    event_del(ev);
    f->events = 0;
    errno = probed == AE_PLUGIN_PROBED_CLOSED ? EBADF : 0;
    if (probed == AE_PLUGIN_PROBED_CLOSED || event_add(ev, NULL) < 0) {
        f->mirrored = false;
        return add_failed(fd, events & AE_READ ? "reading" : "writing", errno);
    }
    f->events = events;
    return 0;
}

static int lev_fd_update(ae_loop *loop, void *state, int fd, void *fd_data, int old_events, int new_events)
{
    (void)loop;
    (void)old_events; /* f->events is what libevent has; wait() may have dropped a closed fd */
    lev_state *s = state;
    lev_fd *f = fd_data;
    if (s->paused) {
        if (s->paused == f && new_events == f->events) {
            s->paused = NULL;
            return resume_probed(s, f, fd);
        }
        paused_flush(s); /* f itself with another mask: from no events, as after a pause */
    }
    if (!new_events && s->defer && s->returned == s->epoch && f->events) {
        s->paused = f;
        return 0;
    }
    if (f->epoch != s->epoch) {
        /* The first change since libevent last polled: what it polled with. */
        f->epoch = s->epoch;
        f->polled_events = f->events;
    }
    if (new_events != f->events) {
        struct event *old = f->events ? lev_current(s, f, fd) : NULL;
        if (new_events) {
            bool next = old ? !f->on_other : f->on_other;
            short what = to_libevent(new_events) | EV_PERSIST;
            if (next && !f->has_other) {
                struct event *other = lev_other_make(s, fd);
                if (!other)
                    return ae_core->set_error(AE_ENOMEM, "libevent: out of memory for fd %d's second event", fd);
                event_assign(other, s->base, fd, what, io_cb, f);
                f->has_other = true;
            }
            struct event *ev = next ? lev_other(s, fd) : &f->ev;
            /* Not added now; assigned with this mask already (an fd paused
             * and resumed, or toggled between two masks) is ready to add. */
            if (event_get_events(ev) != what)
                event_assign(ev, s->base, fd, what, io_cb, f);
            /* Adding first: a failed add leaves the old event as it was.
             * A closed fd makes it fail: add_failed says AE_EBADF. */
            errno = 0;
            if (event_add(ev, NULL) < 0) {
                int added = new_events & ~f->events;
                return add_failed(fd, added & AE_READ ? "reading" : "writing", errno);
            }
            f->on_other = next;
            f->mirrored = false; /* the private set was not asked */
        }
        /* event_del forgets the event even when epoll_ctl fails (a closed
         * fd), and takes it out of the active queue: readiness found in
         * this iteration and not reported yet (a callback of another fd
         * changed this one) is reported by the next poll instead, the fd
         * being level-triggered. libevent's public API cannot tell an
         * added event's readiness from its interest. */
        if (old)
            event_del(old);
        f->events = (uint8_t)new_events;
    }
    if (new_events && new_events != f->polled_events)
        AE_PLUGIN_DIRTY_PUT(s->dirty, f);
    return 0;
}

/* Reports the fds of the dirty list that were closed while watched with
 * AE_ERROR; returns how many. */
static int report_closed(lev_state *s)
{
    int reported = 0;
    /* One poll(2) for the whole list; the callbacks run from here may
     * change more fds: go until none is left. */
    while (s->dirty) {
        ae_plugin_batch *b = &s->batch;
        b->n = 0;
        while (s->dirty) {
            lev_fd *f = s->dirty;
            s->dirty = f->next_dirty;
            f->next_dirty = NULL;
            f->dirty = false;
            b->items[b->n] = f;
            b->pfds[b->n++].fd = (int)event_get_fd(&f->ev);
        }
        ae_plugin_batch_poll(b);
        for (size_t i = 0; i < b->n; i++) {
            lev_fd *f = b->items[i];
            int fd = b->pfds[i].fd;
            if (!(b->pfds[i].revents & POLLNVAL) || !f->events)
                continue;
            event_del(lev_current(s, f, fd));
            f->events = 0;
            ae_core->io_ready(s->loop, fd, AE_ERROR);
            reported++;
        }
    }
    return reported;
}

static int loop_failed(void)
{
    if (errno)
        return ae_core->set_errno("libevent: event_base_loop failed");
    return ae_core->set_error(AE_ESTATE, "libevent: event_base_loop failed: the event_base is already running "
                                         "(anyevent run from a callback of the host's event_base_dispatch?)");
}

/* event_base_loop owns the iteration, one EVLOOP_ONCE at a time (libevent
 * 2.1 has no prepare or check events): the core's timers come through the
 * expire event, re-armed only when the first deadline changes, and its
 * per-iteration work runs between two iterations. */
/* before_poll when there is something to do: out of line, as an
 * iteration mostly finds nothing. */
__attribute__((noinline)) static int before_poll_work(lev_state *s)
{
    if (s->paused)
        paused_flush(s);
    if (!s->dirty)
        return 0;
    int reported = report_closed(s);
    if (s->paused)
        paused_flush(s);
    return reported;
}

/* Before libevent polls: the deferred pause done, and the changed fds
 * checked (whose callbacks may pause another). Returns report_closed's. */
static inline int before_poll(lev_state *s)
{
    /* One test for both (in every iteration). */
    return ((uintptr_t)s->paused | (uintptr_t)s->dirty) ? before_poll_work(s) : 0;
}

static int lev_run(ae_loop *loop, void *state, int flags)
{
    lev_state *s = state;
    for (;;) {
        int reported = before_poll(s);
        /* Only a base the program has too can be running already (the
         * core runs its own once at a time): loop_failed tells that case,
         * with no errno, from a failed poll, which sets errno. */
        if (s->shared)
            errno = 0;
        /* EVLOOP_NONBLOCK alone keeps polling for as long as events fire;
         * with EVLOOP_ONCE it stops after one run. A branch, not a select:
         * the common iteration blocks. */
        int how = EVLOOP_ONCE;
        if (__builtin_expect(reported || (flags & AE_BACKEND_RUN_NOWAIT), 0))
            how |= EVLOOP_NONBLOCK;
        s->epoch++; /* one more of run()'s iterations (lev_iterations) */
        int rc = event_base_loop(s->base, how);
        s->returned = s->epoch;
        if (rc < 0)
            return loop_failed();
        /* The hook is on whenever the core needs this iteration's end (it
         * turns it on from the callbacks that need it). */
        if ((s->hook && !ae_core->iteration(loop)) || flags)
            return 0;
    }
}

static unsigned lev_iterations(void *state)
{
    const lev_state *s = state;
    return s->epoch - s->waits;
}

static void lev_iteration_hook(ae_loop *loop, void *state, int on)
{
    (void)loop;
    ((lev_state *)state)->hook = on;
}

static double clock_ms(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

/* The timeout to give a libevent timer so that it fires no earlier than
 * `seconds` from now on the core's clock (CLOCK_MONOTONIC). libevent counts
 * from its cached time, in whole microseconds, on CLOCK_MONOTONIC_COARSE
 * unless the base was made with EVENT_BASE_FLAG_PRECISE_TIMER: that clock
 * trails the core's by up to a tick (4 ms at HZ=250), so a timeout counted
 * from it can fire before the core's deadline, and that iteration would find
 * no timer due and run nothing. The lag is added: a coarse read taken before
 * libevent's own (which is not earlier) against a precise one; and a
 * microsecond for libevent's truncation. Call before libevent reads its
 * time for the timer (event_base_update_cache_time, evtimer_add). A
 * deadline already due is due on every clock. */
static struct timeval timeout_after(const lev_state *s, double seconds)
{
    if (seconds <= 0)
        return to_timeval(0); /* due already: the next iteration runs it */
    double lag_ms = 0;
    if (s->coarse_clock) {
        double coarse = clock_ms(CLOCK_MONOTONIC_COARSE);
        lag_ms = clock_ms(CLOCK_MONOTONIC) - coarse;
    }
    return to_timeval(seconds + lag_ms * 1e-3 + 1e-6);
}

static int lev_wait(ae_loop *loop, void *state, double timeout)
{
    (void)loop;
    lev_state *s = state;
    int reported = before_poll(s);
    int rc;
    errno = 0;
    s->epoch++;
    s->waits++;
    if (timeout == 0 || reported) {
        /* Also when something was reported already: poll, do not block.
         * EVLOOP_NONBLOCK alone keeps polling for as long as events fire (a
         * writable fd: for ever); with EVLOOP_ONCE it stops after one run. */
        rc = event_base_loop(s->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    } else {
        if (timeout > 0) {
            struct timeval tv = timeout_after(s, timeout);
            if (evtimer_add(&s->wake, &tv) < 0) {
                s->returned = s->epoch;
                return ae_core->set_error(AE_ENOMEM, "libevent: out of memory for a timer");
            }
        }
        /* EVLOOP_ONCE: waits until some event is active, runs the active
         * ones, returns. */
        rc = event_base_loop(s->base, EVLOOP_ONCE);
        evtimer_del(&s->wake);
    }
    s->returned = s->epoch;
    if (rc < 0)
        return loop_failed();
    return 0;
}

/* Whether the expire timer's time has come and its callback has not run
 * yet. event_pending() says EV_TIMEOUT alike for a timer in libevent's heap
 * and for one moved to the active queue, but an iteration moves every timer
 * whose expiry is not after its time at once, before any callback: a timer
 * still pending with such an expiry has fired (or will at the next
 * iteration, without waiting). Public API only (no struct event field). */
static bool expire_due(lev_state *s)
{
    struct timeval when, now;
    if (!event_pending(&s->expire, EV_TIMEOUT, &when) || event_base_gettimeofday_cached(s->base, &now) < 0)
        return false;
    return !evutil_timercmp(&when, &now, >);
}

static void lev_timer_update(ae_loop *loop, void *state, double timeout)
{
    (void)loop;
    lev_state *s = state;
    /* Fired in this iteration and not run yet (a callback before it changed
     * the first deadline): it runs the due timers, then arms again. */
    if (expire_due(s))
        return;
    evtimer_del(&s->expire);
    if (timeout >= 0) {
        struct timeval tv = timeout_after(s, timeout);
        /* Inside the host's callbacks libevent counts from its cached time. */
        event_base_update_cache_time(s->base);
        /* Takes the heap slot the timer just left or adopt reserved: no
         * allocation, unless the host's own timers filled the heap since. */
        evtimer_add(&s->expire, &tv);
    }
}

/* The program may add events of its own to the base from now on (for fds
 * the core has paused too): pauses are no longer deferred. */
static void *lev_native(void *state)
{
    lev_state *s = state;
    if (s->paused)
        paused_flush(s);
    s->defer = false;
    s->shared = true;
    return s->base;
}

/* event_reinit re-creates the base's kernel state and re-adds every event. */
static int lev_fork(ae_loop *loop, void *state)
{
    (void)loop;
    lev_state *s = state;
    if (event_reinit(s->base) < 0)
        return ae_core->set_error(AE_ESYS, "libevent: event_reinit failed after fork");
    /* After event_reinit: the parent's epoll set is not ours to change. */
    if (s->paused)
        paused_flush(s);
    /* The private set is the parent's too (every fd's next check
     * re-registers it). */
    ae_plugin_probe_close(&s->probe);
    return 0;
}

static const ae_backend_ops libevent_ops = {
    .abi_version = AE_BACKEND_ABI_VERSION,
    .struct_size = sizeof(ae_backend_ops),
    .name = "libevent",
    .state_size = sizeof(lev_state),
    .fd_data_size = sizeof(lev_fd),
    .fd_data_align = _Alignof(lev_fd),
    .features = 0, /* event_base_loop cannot be called recursively */
    .init = lev_init,
    .destroy = lev_destroy,
    .fd_init = lev_fd_init,
    .fd_fini = lev_fd_fini,
    .fd_update = lev_fd_update,
    .wait = lev_wait,
    .native = lev_native,
    .adopt = lev_adopt,
    .timer_update = lev_timer_update,
    .fork = lev_fork,
    .run = lev_run,
    .rank = 30, /* after libuv: cannot nest */
    .iterations = lev_iterations,
    .iteration_hook = lev_iteration_hook,
};

AE_BACKEND_ENTRY(services)
{
    if (ae_plugin_accept_fd_event(services, "libevent") < 0)
        return NULL;
    /* In a program that links libev, our event_* references bind to libev's
     * compatibility functions, which would take our struct events for its own. */
    Dl_info info;
    if (!dladdr((void *)event_base_new, &info) || !info.dli_fname) {
        ae_core->set_error(AE_ENOTSUP, "libevent: cannot tell which library event_base_new resolves to");
        return NULL;
    }
    if (!strstr(info.dli_fname, "libevent")) {
        ae_core->set_error(AE_ENOTSUP,
                           "libevent: event_base_new resolves to %s, not libevent (the program links libev, whose "
                           "libev.so also defines libevent's names); this plugin cannot run in this process",
                           info.dli_fname);
        return NULL;
    }
    /* struct event's size and layout are compiled in: same major.minor only. */
    if ((event_get_version_number() ^ LIBEVENT_VERSION_NUMBER) & 0xffff0000u) {
        ae_core->set_error(AE_ENOTSUP, "libevent: built for libevent %s, running with %s", LIBEVENT_VERSION,
                           event_get_version());
        return NULL;
    }
    return &libevent_ops;
}

/* How a host program makes and runs an event_base, for ae-conformance's
 * adoption checks (docs/conformance.md). */
static void *host_loop_new(void) { return event_base_new(); }

static int host_run_once(void *native, int block)
{
    return event_base_loop(native, block ? EVLOOP_ONCE : EVLOOP_ONCE | EVLOOP_NONBLOCK) < 0 ? -1 : 0;
}

static void host_loop_free(void *native) { event_base_free(native); }

static int host_loop_fork(void *native) { return event_reinit(native) == 0 ? 0 : -1; }

static const ae_backend_test_host libevent_host = {
    .version = AE_BACKEND_ABI_VERSION,
    .struct_size = sizeof(ae_backend_test_host),
    .loop_new = host_loop_new,
    .run_once = host_run_once,
    .loop_free = host_loop_free,
    .loop_fork = host_loop_fork,
};

AE_BACKEND_TEST_HOST() { return &libevent_host; }
