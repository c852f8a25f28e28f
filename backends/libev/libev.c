/* The libev backend: one ev_io per fd (in the core's per-fd memory), one
 * ev_timer to bound a wait, and one that drives the core's timers when the
 * host program runs the loop. libev's own timers, signal and child watchers
 * are not used: see docs/backends.md. */
#include <ev.h>
#include <stdbool.h>
#include <stdlib.h>

#include "../plugin.h"

const ae_backend_services *ae_core;

/* libev's readiness bits are anyevent's: io_cb passes them on as they are. */
_Static_assert((int)EV_READ == (int)AE_READ && (int)EV_WRITE == (int)AE_WRITE,
               "libev's EV_READ and EV_WRITE are AE_READ and AE_WRITE");

/* libev registers a changed fd with the kernel only when it next polls, and
 * asserts if the fd was closed in between. The fds changed since the last
 * poll are checked first, by a prepare watcher, and a closed one is reported
 * with AE_ERROR instead of reaching libev: with one poll(2) for all of them.
 *
 * An fd paused and resumed with the same events before libev polls again (a
 * pipe chain re-arming every fd each round) is cheaper. Its ev_io is stopped
 * only by the prepare watcher (under libev's epoll backend), so that a
 * resume before then leaves libev untouched: libev then makes no system
 * call for it, as it would need to if the fd names another file now (closed
 * and its number reused while paused: conformance check
 * io_reused_fd_rearmed). Instead of ev_io_set, a poll and libev's
 * epoll_ctl, the prepare watcher asks libev's own epoll set, with one
 * epoll_ctl(ADD) as libev's would be: EEXIST, libev's registration of this
 * file at this number stands; EBADF, closed; success, another file: the
 * entry is taken out again and the fd handed to libev with ev_io_set. Until
 * then the fd's readiness is dropped (it may be the old file's; a
 * level-triggered fd still ready comes back at the next poll). Where
 * libev's set cannot be found, a private set of the plugin's is asked
 * instead (ae_plugin_probe_fd), whose standing entries make every wake-up
 * of the fds' files dearer. */
typedef struct evb_fd {
    ev_io io;
    struct evb_fd *next_dirty; /* the dirty list, linked through the fds' own memory */
    bool dirty;        /* in the state's dirty list */
    bool stop_pending; /* paused: the check stops the ev_io, unless resumed as it was before */
    bool probe;        /* resumed without ev_io_set: the check asks libev's epoll set */
    bool mirrored;     /* the private set (if asked) holds the file libev registered last */
    unsigned handed;   /* ev_iteration() at the last ev_io_set: libev registers it in that iteration */
} evb_fd;

typedef struct evb_state {
    struct ev_loop *ev;
    ae_loop *loop;
    bool adopted;
    ev_timer wake;    /* bounds ae_run_once()'s wait */
    ev_timer expire;  /* adopted: the core's next timer deadline */
    ev_prepare check; /* runs before libev registers changed fds */
    ev_prepare iter;  /* while run() runs: the core's iteration service */
    ev_check tail;    /* never started, fed: the service at the end of this iteration's callbacks */
    int running;      /* run() calls under way (they nest) */
    unsigned iteration; /* ev_iteration() when the innermost run() last ended one */
    ev_idle nowait;   /* once check reported something: poll without blocking */
    ev_idle idle;     /* our loop, while the core has started idle watchers: their run */
    evb_fd *dirty;         /* changed since the last poll, last changed first */
    size_t ndirty;
    ae_plugin_batch batch; /* being checked, in the order of the changes (room for nfds) */
    size_t batch_next;     /* batch's next item: a check nested in a callback goes on from there */
    size_t nfds;           /* every fd the core knows */
    ev_prepare hook_prepare; /* adopted: the core's prepare hooks, in the host's iterations */
    ev_check hook_check;     /* adopted: the core's check hooks, likewise */
    bool epoll;     /* libev polls with epoll: resumed fds are checked with probe_fd */
    int libev_set;  /* libev's epoll set (probe_fd asks it), LIBEV_SET_NONE, or _UNKNOWN since evb_fork */
    unsigned fork_iteration; /* ev_iteration() at evb_fork */
    ae_plugin_probe probe;   /* the private epoll set, where libev's is not to be found */
} evb_state;

enum { LIBEV_SET_NONE = -1, LIBEV_SET_UNKNOWN = -2 };

/* w is the fd's evb_fd, its fd_data. */
static void io_cb(struct ev_loop *ev, ev_io *w, int revents)
{
    (void)ev;
    if (__builtin_expect(revents & EV_ERROR, 0)) {
        /* libev found the fd invalid and stopped the watcher */
        ae_core->fd_ready(w->data, w->fd, w, AE_ERROR);
        return;
    }
    if (((evb_fd *)w)->stop_pending || ((evb_fd *)w)->probe)
        return; /* paused, or resumed and not checked yet (see evb_fd) */
    ae_plugin_fd_event(w, revents); /* EV_READ, EV_WRITE as they are; fd_event ignores the rest */
}

static void wake_cb(struct ev_loop *ev, ev_timer *w, int revents)
{
    (void)ev;
    (void)w;
    (void)revents;
}

static void expire_cb(struct ev_loop *ev, ev_timer *w, int revents)
{
    (void)ev;
    (void)revents;
    ae_core->expire(w->data);
}

/* Tells libev that the fd may name another file (its next poll registers it
 * with epoll_ctl, as after a new ev_io_set). */
static void evb_reregister(evb_state *s, evb_fd *f)
{
    int events = f->io.events & (EV_READ | EV_WRITE);
    ev_io_stop(s->ev, &f->io);
    ev_io_set(&f->io, f->io.fd, events);
    ev_io_start(s->ev, &f->io);
    f->handed = ev_iteration(s->ev);
}

/* libev's epoll set. libev 4 has no call that gives it, but ev_embed_start
 * copies it into the embed watcher's ev_io (the fd an embedding loop
 * polls): one is started and stopped in a throwaway loop (select: no fd of
 * its own), which leaves ev untouched. -1 if it cannot be found. */
static int libev_epoll_set(struct ev_loop *ev)
{
#ifndef __linux__
    (void)ev;
    return -1;
#endif
    if (!(ev_embeddable_backends() & EVBACKEND_EPOLL))
        return -1;
    struct ev_loop *outer = ev_loop_new(EVBACKEND_SELECT | EVFLAG_NOENV | EVFLAG_NOSIGMASK);
    if (!outer)
        return -1;
    ev_embed embed;
    ev_embed_init(&embed, 0, ev);
    ev_embed_start(outer, &embed);
    int set = embed.io.fd;
    ev_embed_stop(outer, &embed);
    ev_loop_destroy(outer);
    return set;
}

/* The set probe_fd asks: libev's, found as the loop is made. After a fork
 * libev makes the child's at its next iteration, after the prepare watchers
 * (so after this check): until its poll has counted that iteration the
 * set is still the parent's, and LIBEV_SET_UNKNOWN is returned. */
static int libev_set(evb_state *s)
{
    if (__builtin_expect(s->libev_set >= 0, 1))
        return s->libev_set;
    if (s->libev_set == LIBEV_SET_UNKNOWN) {
        if (ev_iteration(s->ev) == s->fork_iteration)
            return LIBEV_SET_UNKNOWN;
        s->libev_set = libev_epoll_set(s->ev);
    }
    return s->libev_set;
}

/* The check of a resumed fd (see evb_fd) in libev's epoll set: POLLNVAL if
 * it is closed, else 0, after handing it to libev again if the set has
 * another file at this number. The probe's entry, if made, has libev's
 * layout (the fd in the low 32 bits) with a generation libev has not given
 * the fd: libev would drop an event of it. */
#ifdef __linux__
static short probe_libev_set(evb_state *s, evb_fd *f, int set)
{
    int fd = f->io.fd;
    int err = ae_plugin_epoll_ask(set, fd, (uint32_t)fd | (uint64_t)UINT32_MAX << 32);
    if (__builtin_expect(err == EEXIST, 1)) /* a pipe chain's every round */
        return 0;
    if (err == EBADF)
        return POLLNVAL;
    evb_reregister(s, f); /* another file, or one epoll refuses (libev copes with EPERM) */
    return 0;
}
#else
static short probe_libev_set(evb_state *s, evb_fd *f, int set) /* never called: libev_epoll_set finds none */
{
    (void)set;
    evb_reregister(s, f);
    return 0;
}
#endif

/* The check of a resumed fd (see evb_fd): POLLNVAL if it is closed, else 0,
 * after handing it to libev again if it names another file than the one
 * libev registered. */
static short probe_fd(evb_state *s, evb_fd *f)
{
    f->probe = false;
    int set = libev_set(s);
    if (__builtin_expect(set >= 0, 1))
        return probe_libev_set(s, f, set);
    switch (set == LIBEV_SET_NONE ? ae_plugin_probe_fd(&s->probe, f->io.fd, &f->mirrored)
                                  : AE_PLUGIN_PROBED_UNKNOWN) {
    case AE_PLUGIN_PROBED_SAME:
        return 0;
    case AE_PLUGIN_PROBED_CLOSED:
        return POLLNVAL;
    case AE_PLUGIN_PROBED_OTHER:
        evb_reregister(s, f);
        return 0;
    case AE_PLUGIN_PROBED_UNKNOWN:
        break;
    }
    /* Just forked, or no private set (out of fds?): check as a changed fd. */
    struct pollfd p = {.fd = f->io.fd, .events = 0};
    while (poll(&p, 1, 0) < 0 && errno == EINTR)
        ;
    if (!(p.revents & POLLNVAL))
        evb_reregister(s, f);
    return p.revents & POLLNVAL;
}

/* Takes the dirty list as the batch to check, in the order of the changes
 * (the list's link is free again: a callback may put the fd back on it),
 * stops the ev_ios whose stop was put off, and polls the others' fds. */
static void batch_take(evb_state *s)
{
    ae_plugin_batch *b = &s->batch;
    size_t polled = 0;
    unsigned iteration = ev_iteration(s->ev);
    evb_fd *f;
    s->batch_next = 0;
    AE_PLUGIN_DIRTY_TAKE(b, s->dirty, s->ndirty, f, i) {
        if (f->stop_pending) {
            f->stop_pending = false;
            f->probe = false;
            ev_io_stop(s->ev, &f->io);
        }
        /* Handed to libev since its last poll: libev registers whatever
         * file the fd names now, and only a closed fd needs finding. */
        if (f->probe && f->handed == iteration)
            f->probe = false;
        /* poll(2) skips a negative fd (revents 0) */
        b->pfds[i].fd = f->probe || !ev_is_active(&f->io) ? -1 : f->io.fd;
        polled += b->pfds[i].fd >= 0;
    }
    if (polled)
        ae_plugin_batch_poll(b);
}

static void check_cb(struct ev_loop *ev, ev_prepare *w, int revents)
{
    (void)revents;
    evb_state *s = w->data;
    /* Callbacks run from here may change more fds: go until none is left.
     * One may also run a nested wait, which runs this again: each item is
     * taken (batch_next) before its callback, so the nested check goes on
     * with the rest of the batch instead of leaving it unchecked. */
    for (;;) {
        ae_plugin_batch *b = &s->batch;
        if (s->batch_next == b->n) {
            if (!s->dirty) {
                b->n = s->batch_next = 0; /* holds nothing: fd_init may grow it without copying */
                break;
            }
            batch_take(s);
        }
        size_t i = s->batch_next++;
        evb_fd *f = b->items[i];
        if (b->pfds[i].fd < 0) {
            /* Not polled: inactive, or resumed as it was and asked now (a
             * callback before may have changed it since: then as it is). */
            b->pfds[i].fd = f->io.fd;
            if (!f->probe || !(probe_fd(s, f) & POLLNVAL))
                continue;
        } else if (!(b->pfds[i].revents & POLLNVAL)) {
            continue;
        }
        if (!ev_is_active(&f->io) || f->io.fd != b->pfds[i].fd)
            continue;
        ev_io_stop(ev, &f->io);
        /* A callback runs: this iteration must not block in the poll
         * (an active idle watcher makes libev poll with timeout 0). */
        ev_idle_start(ev, &s->nowait);
        if (!ae_core->io_ready(s->loop, f->io.fd, AE_ERROR))
            return; /* the loop was freed, and s with it */
    }
    ev_prepare_stop(ev, w);
}

/* An adopted loop under run(): before each poll, the core's work at the end
 * of the iteration before (the host's own invoke callback, if any, stays in
 * place). */
static void iter_cb(struct ev_loop *ev, ev_prepare *w, int revents)
{
    (void)revents;
    evb_state *s = w->data;
    /* The first prepare of a run() ends no iteration of it. */
    unsigned iteration = ev_iteration(ev);
    if (iteration == s->iteration)
        return;
    s->iteration = iteration;
    if (!ae_core->iteration(s->loop))
        ev_break(ev, EVBREAK_ONE);
}

/* A loop of our own: libev calls this once per iteration, after the poll,
 * to run what is pending (and after prepare watchers, when the closed-fd
 * check runs). Cheaper than a prepare watcher per iteration: the core's
 * per-iteration work follows the callbacks, and ev_break then ends ev_run
 * at the end of this iteration, before it blocks again. */
static void invoke_cb(struct ev_loop *ev)
{
    evb_state *s = ev_userdata(ev);
    ev_invoke_pending(ev);
    /* libev also calls this as ev_run starts and after prepare watchers
     * (the closed-fd check): only once its poll has counted an iteration is
     * it the end of one. */
    unsigned iteration = ev_iteration(ev);
    if (!s->running || iteration == s->iteration)
        return;
    s->iteration = iteration;
    if (!ae_core->iteration(s->loop))
        ev_break(ev, EVBREAK_ONE);
}

/* The hook turned on from a callback: this iteration's service too, after
 * its other callbacks (the lowest priority, fed last: libev invokes a
 * priority's pending watchers last fed first). */
static void tail_cb(struct ev_loop *ev, ev_check *w, int revents)
{
    (void)revents;
    evb_state *s = w->data;
    unsigned iteration = ev_iteration(ev);
    if (!s->running || iteration == s->iteration)
        return;
    s->iteration = iteration;
    if (!ae_core->iteration(s->loop))
        ev_break(ev, EVBREAK_ONE);
}

static void nowait_cb(struct ev_loop *ev, ev_idle *w, int revents)
{
    (void)revents;
    ev_idle_stop(ev, w);
}

/* libev invokes it only in iterations with nothing pending at its priority
 * or above: no io, no expiry of the core's timers, no closed-fd report (the
 * nowait idle, of a higher priority, is fed instead). */
static void idle_cb(struct ev_loop *ev, ev_idle *w, int revents)
{
    (void)ev;
    (void)revents;
    ae_core->idle_run(((evb_state *)w->data)->loop);
}

static void watchers_init(ae_loop *loop, evb_state *s)
{
    s->loop = loop;
    ae_plugin_probe_init(&s->probe);
    s->epoll = ev_backend(s->ev) == EVBACKEND_EPOLL;
    /* Found now rather than at the first check: its allocations are the
     * loop's, not an iteration's. */
    s->libev_set = s->epoll ? libev_epoll_set(s->ev) : LIBEV_SET_NONE;
    ev_timer_init(&s->wake, wake_cb, 0, 0);
    ev_timer_init(&s->expire, expire_cb, 0, 0);
    s->expire.data = loop;
    /* The core's timers run after the io of the same iteration, as on every
     * backend: libev invokes higher priorities first; the fed iteration
     * service after them. */
    ev_set_priority(&s->expire, EV_MINPRI + 1);
    ev_check_init(&s->tail, tail_cb);
    ev_set_priority(&s->tail, EV_MINPRI);
    s->tail.data = s;
    ev_prepare_init(&s->check, check_cb);
    s->check.data = s;
    ev_prepare_init(&s->iter, iter_cb);
    s->iter.data = s;
    ev_idle_init(&s->nowait, nowait_cb);
    /* Below the io watchers, with the expire timer: after the iteration's
     * other callbacks, before the fed iteration service (EV_MINPRI). */
    ev_idle_init(&s->idle, idle_cb);
    ev_set_priority(&s->idle, EV_MINPRI + 1);
    s->idle.data = s;
}

static int evb_init(ae_loop *loop, void *state)
{
    evb_state *s = state;
    /* NOSIGMASK: signals are the core's; libev must not touch the mask. */
    s->ev = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
    if (!s->ev)
        return ae_core->set_error(AE_ESYS, "libev: ev_loop_new failed");
    watchers_init(loop, s);
    ev_set_userdata(s->ev, s);
    ev_set_invoke_pending_cb(s->ev, invoke_cb);
    return 0;
}

static int evb_adopt(ae_loop *loop, void *state, void *native)
{
    evb_state *s = state;
    s->ev = native;
    s->adopted = true;
    watchers_init(loop, s);
    return 0;
}

static void evb_destroy(ae_loop *loop, void *state)
{
    (void)loop;
    evb_state *s = state;
    /* Paused fds whose ev_io check_cb has not stopped yet: an adopted loop
     * lives on, and the ev_io is in memory the core frees. */
    for (evb_fd *f = s->dirty; f; f = f->next_dirty)
        if (f->stop_pending)
            ev_io_stop(s->ev, &f->io);
    ev_timer_stop(s->ev, &s->wake);
    ev_timer_stop(s->ev, &s->expire);
    ev_prepare_stop(s->ev, &s->check);
    ev_idle_stop(s->ev, &s->nowait);
    ev_idle_stop(s->ev, &s->idle);
    ev_clear_pending(s->ev, &s->tail);
    ae_plugin_probe_close(&s->probe);
    if (!s->adopted)
        ev_loop_destroy(s->ev);
    ae_plugin_batch_free(&s->batch);
}

/* Room in the batch for one more fd, so that fd_update and check_cb never
 * allocate (the dirty list is linked through the fds' own memory). Only as
 * much of it as a batch uses becomes resident. */
static int evb_fd_init(ae_loop *loop, void *state, int fd, void *fd_data)
{
    (void)loop;
    (void)fd;
    (void)fd_data;
    evb_state *s = state;
    if (ae_plugin_batch_reserve(&s->batch, s->nfds + 1) < 0)
        return ae_core->set_error(AE_ENOMEM, "libev: out of memory");
    s->nfds++;
    return 0;
}

/* An interest change other than a pause or a resume as before. false:
 * nothing for check_cb to check. */
static bool evb_fd_change(ae_loop *loop, evb_state *s, evb_fd *f, int fd, int old_events, int events)
{
    ev_io *w = &f->io;
    if (!events) {
        if (ev_is_active(w) && !f->stop_pending)
            ev_io_stop(s->ev, w); /* not under epoll: at once */
        return false;
    }
    f->stop_pending = false;
    f->probe = false;
    f->mirrored = false;
    if (old_events == 0 && !ev_is_active(w)) {
        /* A closed fd is caught by check_cb before libev registers it. */
        ev_io_init(w, io_cb, fd, 0);
        w->data = loop;
    } else {
        ev_io_stop(s->ev, w);
    }
    /* libev folds stop+set+start into one change of the fd: an epoll_ctl
     * MOD at the next iteration, not a DEL and an ADD. */
    ev_io_set(w, fd, events);
    ev_io_start(s->ev, w);
    f->handed = ev_iteration(s->ev);
    return true;
}

/* Out of line: once per poll at most. 0, for a tail call. */
__attribute__((noinline)) static int check_start(evb_state *s)
{
    ev_prepare_start(s->ev, &s->check);
    return 0;
}

/* Puts f in the dirty list for check_cb (through its own link: nothing to
 * allocate). */
static inline int dirty_add(evb_state *s, evb_fd *f)
{
    if (AE_PLUGIN_DIRTY_PUT(s->dirty, f)) {
        s->ndirty++;
        if (!ev_is_active(&s->check))
            return check_start(s);
    }
    return 0;
}

/* evb_fd_change and the check it needs: out of line, as the pipe chain's
 * re-arming is only pauses and resumes as before. */
__attribute__((noinline)) static int evb_fd_change_checked(ae_loop *loop, evb_state *s, evb_fd *f, int fd,
                                                           int old_events, int events)
{
    return evb_fd_change(loop, s, f, fd, old_events, events) ? dirty_add(s, f) : 0;
}

/* The pause and the resume as before are all of a pipe chain's re-arming:
 * inline, with no frame (every other case is a tail call). */
static int evb_fd_update(ae_loop *loop, void *state, int fd, void *fd_data, int old_events, int new_events)
{
    evb_state *s = state;
    evb_fd *f = fd_data;
    int events = (new_events & AE_READ ? EV_READ : 0) | (new_events & AE_WRITE ? EV_WRITE : 0);
    if (!events) {
        if (ev_is_active(&f->io) && !f->stop_pending && s->epoll) {
            f->stop_pending = true; /* check_cb stops it, unless resumed as it was before */
            return dirty_add(s, f);
        }
    } else if (f->stop_pending && (f->io.events & (EV_READ | EV_WRITE)) == events) {
        /* Resumed as it was before libev polled again: libev has nothing to
         * register, and check_cb asks whether the fd is still the file. It
         * is in the dirty list since the pause. */
        f->stop_pending = false;
        f->probe = true;
        return 0;
    }
    return evb_fd_change_checked(loop, s, f, fd, old_events, events);
}

static int evb_wait(ae_loop *loop, void *state, double timeout)
{
    (void)loop;
    evb_state *s = state;
    if (timeout == 0) {
        ev_run(s->ev, EVRUN_NOWAIT);
        return 0;
    }
    /* A nested wait (a callback's ae_cv_recv) finds the outer wait's timer
     * still started: ev_timer_start ignores an active watcher, and
     * ev_timer_set on one corrupts it, so stop it first. The outer wait then
     * returns after this one: the core simply waits again. */
    ev_timer_stop(s->ev, &s->wake);
    if (timeout > 0) {
        ev_now_update(s->ev); /* the deadline counts from now, not from libev's cached time */
        ev_timer_set(&s->wake, timeout, 0);
        ev_timer_start(s->ev, &s->wake);
    }
    ev_run(s->ev, EVRUN_ONCE);
    ev_timer_stop(s->ev, &s->wake);
    return 0;
}

/* ev_run owns the iteration: the core's timers come through the expire
 * timer, its per-iteration work through invoke_cb (our loop) or the iter
 * prepare watcher (an adopted loop), which must not keep ev_run going. */
static int evb_run(ae_loop *loop, void *state, int flags)
{
    (void)loop;
    evb_state *s = state;
    if (s->running++ == 0 && s->adopted) {
        ev_prepare_start(s->ev, &s->iter);
        ev_unref(s->ev);
    }
    unsigned outer = s->iteration; /* a nested run: the outer iteration still ends after it */
    s->iteration = ev_iteration(s->ev);
    ev_run(s->ev, flags & AE_BACKEND_RUN_NOWAIT ? EVRUN_NOWAIT : flags & AE_BACKEND_RUN_ONCE ? EVRUN_ONCE : 0);
    /* An adopted loop's iterations end at the next one's prepare (iter_cb):
     * the last of a one-iteration run ends here (its check hooks). */
    if (s->adopted && flags && ev_iteration(s->ev) != s->iteration) {
        s->iteration = ev_iteration(s->ev);
        ae_core->iteration(loop);
    }
    s->iteration = outer;
    if (--s->running == 0 && s->adopted) {
        ev_ref(s->ev);
        ev_prepare_stop(s->ev, &s->iter);
    }
    return 0;
}

static void evb_run_break(ae_loop *loop, void *state)
{
    (void)loop;
    ev_break(((evb_state *)state)->ev, EVBREAK_ONE);
}

static void evb_timer_update(ae_loop *loop, void *state, double timeout)
{
    (void)loop;
    evb_state *s = state;
    /* Fired in this iteration and not run yet (a callback before it changed
     * the first deadline): it runs the due timers, then arms again. */
    if (ev_is_pending(&s->expire))
        return;
    ev_timer_stop(s->ev, &s->expire);
    if (timeout >= 0) {
        ev_now_update(s->ev);
        ev_timer_set(&s->expire, timeout, 0);
        ev_timer_start(s->ev, &s->expire);
    }
}

/* ---- loop hooks in the host's iterations (adopted loops) ---- */

static void hook_prepare_cb(struct ev_loop *ev, ev_prepare *w, int revents)
{
    (void)ev;
    (void)revents;
    evb_state *s = w->data;
    ae_core->hooks_run(s->loop, AE_BACKEND_HOOK_PREPARE);
}

static void hook_check_cb(struct ev_loop *ev, ev_check *w, int revents)
{
    (void)revents;
    evb_state *s = w->data;
    /* Check hooks follow all of the iteration's callbacks, the core's
     * timers included: the expire timer's priority (EV_MINPRI + 1) runs it
     * first; should it still be pending (fed later), run it now. */
    if (ev_is_pending(&s->expire)) {
        ev_clear_pending(ev, &s->expire);
        if (!ae_core->expire_checked(s->loop))
            return; /* a timer callback freed the loop, and s with it */
    }
    ae_core->hooks_run(s->loop, AE_BACKEND_HOOK_CHECK);
}

/* Started unref'd: hooks never keep the host's ev_run going. */
static int evb_hooks_update(ae_loop *loop, void *state, int kind, int on)
{
    (void)loop;
    evb_state *s = state;
    if (kind == AE_BACKEND_HOOK_PREPARE) {
        if (on) {
            ev_prepare_init(&s->hook_prepare, hook_prepare_cb);
            s->hook_prepare.data = s;
            ev_prepare_start(s->ev, &s->hook_prepare);
            ev_unref(s->ev);
        } else {
            ev_ref(s->ev);
            ev_prepare_stop(s->ev, &s->hook_prepare);
        }
    } else {
        if (on) {
            ev_check_init(&s->hook_check, hook_check_cb);
            s->hook_check.data = s;
            ev_set_priority(&s->hook_check, EV_MINPRI); /* after the iteration's other watchers */
            ev_check_start(s->ev, &s->hook_check);
            ev_unref(s->ev);
        } else {
            ev_ref(s->ev);
            ev_check_stop(s->ev, &s->hook_check);
        }
    }
    return 0;
}

static unsigned evb_iterations(void *state) { return ev_iteration(((evb_state *)state)->ev); }

/* Our own loop: invoke_cb while the core wants the iteration service, else
 * libev's own ev_invoke_pending (nothing of ours between two callbacks). */
static void evb_iteration_hook(ae_loop *loop, void *state, int on)
{
    (void)loop;
    evb_state *s = state;
    if (s->adopted)
        return;
    ev_set_invoke_pending_cb(s->ev, on ? invoke_cb : ev_invoke_pending);
    if (on && s->running)
        ev_feed_event(s->ev, &s->tail, EV_CUSTOM);
}

/* An active ev_idle also makes libev poll without blocking. */
static void evb_idle_update(ae_loop *loop, void *state, int on)
{
    (void)loop;
    evb_state *s = state;
    if (on)
        ev_idle_start(s->ev, &s->idle);
    else
        ev_idle_stop(s->ev, &s->idle);
}

static void *evb_native(void *state) { return ((evb_state *)state)->ev; }

/* In a child of fork(), once libev is told (ev_loop_fork): libev's set is
 * found again once libev has made the child's (see libev_set), and the
 * private set is the parent's too (its first check of each fd hands the fd
 * to libev again, which re-registers every fd after a fork anyway). */
static int evb_adopted_fork(ae_loop *loop, void *state)
{
    (void)loop;
    evb_state *s = state;
    s->fork_iteration = ev_iteration(s->ev);
    s->libev_set = LIBEV_SET_UNKNOWN;
    ae_plugin_probe_close(&s->probe);
    return 0;
}

/* libev re-creates its kernel state (epoll fd, eventfd) and re-registers
 * every started watcher at the start of the next ev_run. An adopted loop's
 * host tells libev itself (ev_loop_fork, or EVFLAG_FORKCHECK), and the core
 * calls adopted_fork instead. */
static int evb_fork(ae_loop *loop, void *state)
{
    ev_loop_fork(((evb_state *)state)->ev);
    return evb_adopted_fork(loop, state);
}

static void *evb_default_native(void) { return ev_default_loop(0); }

static const ae_backend_ops libev_ops = {
    .abi_version = AE_BACKEND_ABI_VERSION,
    .struct_size = sizeof(ae_backend_ops),
    .name = "libev",
    .state_size = sizeof(evb_state),
    .fd_data_size = sizeof(evb_fd),
    .fd_data_align = _Alignof(evb_fd),
    .features = AE_BACKEND_F_REENTRANT, /* ev_run may be called recursively */
    .init = evb_init,
    .destroy = evb_destroy,
    .fd_init = evb_fd_init,
    .fd_update = evb_fd_update,
    .wait = evb_wait,
    .native = evb_native,
    .adopt = evb_adopt,
    .timer_update = evb_timer_update,
    .fork = evb_fork,
    .default_native = evb_default_native,
    .run = evb_run,
    .run_break = evb_run_break,
    .host_symbol = "ev_default_loop",
    .rank = 10, /* the least overhead per watcher, and nested waits work */
    .hooks_update = evb_hooks_update,
    .iterations = evb_iterations,
    .iteration_hook = evb_iteration_hook,
    .idle_update = evb_idle_update,
    .adopted_fork = evb_adopted_fork,
};

AE_BACKEND_ENTRY(services)
{
    if (ae_plugin_accept_fd_event(services, "libev") < 0)
        return NULL;
    /* A core before ABI version 4 never calls hooks_update (it does not
     * know the field), so hooks_run is only called where it exists. */
    if (ev_version_major() != EV_VERSION_MAJOR) {
        ae_core->set_error(AE_ENOTSUP, "libev: built for libev %d.x, running with %d.%d", EV_VERSION_MAJOR,
                           ev_version_major(), ev_version_minor());
        return NULL;
    }
    return &libev_ops;
}

/* How a host program makes and runs an ev_loop, for ae-conformance's
 * adoption checks (docs/conformance.md). */
static void *host_loop_new(void) { return ev_loop_new(EVFLAG_AUTO); }

static int host_run_once(void *native, int block)
{
    ev_run(native, block ? EVRUN_ONCE : EVRUN_NOWAIT);
    return 0;
}

static void host_loop_free(void *native) { ev_loop_destroy(native); }

static int host_loop_fork(void *native)
{
    ev_loop_fork(native);
    return 0;
}

static const ae_backend_test_host libev_host = {
    .version = AE_BACKEND_ABI_VERSION,
    .struct_size = sizeof(ae_backend_test_host),
    .loop_new = host_loop_new,
    .run_once = host_run_once,
    .loop_free = host_loop_free,
    .loop_fork = host_loop_fork,
};

AE_BACKEND_TEST_HOST() { return &libev_host; }
