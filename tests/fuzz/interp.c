/*
 * The interpreter: runs a program on one backend and records a trace.
 *
 * What the trace may contain is limited to what docs/api.md guarantees, so
 * that every backend must produce the same text:
 *
 *  - Time. Timers are either due at once (after 0) or never during a program
 *    (after 3600 s); repeating ones have an interval of 3600 s or one below
 *    the clock's resolution (repeats once per iteration). A timer armed
 *    before an iteration's wait with after 0 fires in that iteration; one
 *    armed from a callback fires in the next. Equal deadlines fire in arming
 *    order. So which timers fire in which iteration, and in which order, does
 *    not depend on how fast anything runs.
 *  - io. Every fd's readiness is set up by the program itself (it writes to,
 *    drains, fills and closes the other ends) before the iteration that
 *    observes it; watched fds are never closed while the loop lives (what a
 *    backend does with a closed watched fd differs, docs/backends.md).
 *  - Order. The contract orders timers (deadline, then arming), idle
 *    watchers (creation order) and the watchers of one fd (creation order);
 *    "timers after io, signals and children, idle last". It does not order
 *    different fds, signals or children against each other. Hence lanes
 *    (program.h): each lane owns at most one such source, callbacks act only
 *    on their own lane, and within one top-level run call the lines are
 *    grouped by lane (a stable sort). Each lane's subsequence is fixed by the
 *    contract, also across lanes' timers: arming order restricted to one lane
 *    is that lane's own order.
 *  - Idle. Idle callbacks run only in an iteration where no other callback
 *    ran; that is a fact about all lanes together, and it is fixed too.
 *  - Signals and children come from raise() and from children that the
 *    program forks and waits for (without reaping) before the next
 *    iteration, so their delivery iteration is fixed. Pids are traced as the
 *    child's number in the program. A pid 0 watcher told about several
 *    children in one iteration may hear of them in any order (the contract
 *    does not order children; epoll reported child#1 before child#0 where
 *    the others did not): such a watcher's callback runs no actions, and its
 *    lines of one run call are sorted.
 *  - Nested ae_run()/ae_cv_recv() from callbacks are not used: libuv and
 *    libevent refuse them (AE_ENOTSUP), which the contract allows.
 *  - Every blocking call has a guard timer (after 0) armed first, so it
 *    never waits: ae_run_once(loop, 0), ae_run() (the guard calls
 *    ae_break()), ae_cv_recv() (the guard sends the condvar).
 *  - Bursts. The first fd_burst action that a callback runs opens
 *    FZ_BURST_FDS socketpairs and watches one end of each for reading:
 *    more fds than any per-fd array's first capacity, so the core and the
 *    backend grow their arrays from inside a dispatch (issue 19: epoll's
 *    fd_init moved the events its wait was walking). Nobody writes to them
 *    while the program runs, so they add nothing to the lanes' lines. At
 *    the end, with every other watcher and condvar gone, each gets a byte,
 *    so that one wait finds them all ready; the first of their callbacks
 *    watches a second wave of as many new fds while that wait still walks
 *    the others (a random program seldom has several fds ready around the
 *    callback that bursts). The trace says how many of each wave fired
 *    exactly once. (At top level fd_burst does nothing: the trap is in
 *    callbacks, and bursts cost run time.)
 */
#include "interp.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "anyevent.h"

/* Callbacks nest only through condvar callbacks; this bounds the chains a
 * program can build (a callback that sets a callback on a ready condvar...). */
#define MAX_DEPTH 4

/* More callbacks than this in one top-level run call is a run-away: an idle
 * (or io) callback that frees itself and creates a new watcher of its kind
 * makes the core run the new one in the same iteration, again and again, so
 * ae_run_once() never returns (see the report on core/idle.c). The contract
 * does not say whether a watcher created during the idle (or an fd's io)
 * stage runs in that same stage, so the trace records the run-away, every
 * watcher is freed so that the run call returns, and the program ends. */
#define RUNAWAY_LIMIT 10000

enum obj_kind { OBJ_NONE, OBJ_TIMER, OBJ_IDLE, OBJ_IO, OBJ_SIGNAL, OBJ_CHILD };

struct interp;

typedef struct obj {
    struct interp *ip;
    int lane, kind, serial, script;
    bool any_child; /* a pid 0 child watcher */
    ae_watcher *w;
} obj;

typedef struct cv_obj {
    struct interp *ip;
    int lane, serial, script;
    ae_cv *cv;
} cv_obj;

typedef struct lane_state {
    int kind;
    int fd, peer; /* the watched fd and the program's end; -1 if none or closed */
    int signum;
    int events; /* what io watchers may ask for: fz_lane_io_events() */
    obj slots[FZ_SLOTS];
    cv_obj cvs[FZ_CVS];
    int serials; /* numbers the lane's watchers and condvars as created */
    fz_trace pending; /* this lane's lines during a top-level run call */
    fz_trace unordered; /* lines of a pid 0 child watcher: sorted at the end of the run call */
} lane_state;

/* The timer that keeps a top-level run call from blocking. */
typedef struct guard {
    struct interp *ip;
    ae_watcher *w;
    int lane, cv_slot, cv_serial; /* the condvar a recv guard sends */
} guard;

/* One fd of the burst. */
typedef struct burst_fd {
    struct interp *ip;
    int fd, peer;
    ae_watcher *w;
    int calls, bad; /* callbacks; of them, not exactly AE_READ with one byte */
} burst_fd;

typedef struct interp {
    const fz_program *prog;
    ae_loop *loop;
    lane_state lanes[FZ_MAX_LANES];
    fz_trace *out;
    fz_trace guard_pending;
    bool in_run;
    int depth;
    int callbacks_in_run;
    bool runaway;
    pid_t children[FZ_MAX_CHILDREN];
    int nchildren;
    guard guard;
    int burst_first;     /* fds the program's burst opened (0: none yet) */
    int nburst;          /* fds opened, both waves */
    bool burst_checking; /* burst_check() fires the first wave */
    burst_fd burst[2 * FZ_BURST_FDS];
} interp;

/* Values sent through condvars: pointers into this array, traced as indexes. */
static char cv_values[256];

/* ---- tracing ------------------------------------------------------------ */

static void emit(interp *ip, int lane, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* One line of lane (-1: the guard timers; -2: the top level). Inside a
 * top-level run call the lines wait in the lane's buffer. */
static void emit(interp *ip, int lane, const char *fmt, ...)
{
    fz_trace *t = ip->out;
    if (ip->in_run)
        t = lane >= 0 ? &ip->lanes[lane].pending : &ip->guard_pending;
    if (lane >= 0)
        fz_trace_printf(t, "L%d %*s", lane, ip->depth * 2, "");
    else
        fz_trace_printf(t, "%s ", lane == -1 ? "guard" : "top");
    va_list ap;
    va_start(ap, fmt);
    fz_trace_vprintf(t, fmt, ap);
    va_end(ap);
    fz_trace_append(t, "\n", 1);
}

static void run_begin(interp *ip)
{
    ip->in_run = true;
    ip->callbacks_in_run = 0;
}

/* The lines of the run call, lane by lane. */
static void run_end(interp *ip)
{
    ip->in_run = false;
    for (int i = 0; i < ip->prog->nlanes; i++) {
        lane_state *l = &ip->lanes[i];
        fz_trace_append(ip->out, fz_trace_text(&l->pending), l->pending.len);
        fz_trace_clear(&l->pending);
        fz_trace_append_sorted_lines(ip->out, &l->unordered);
        fz_trace_clear(&l->unordered);
    }
    fz_trace_append(ip->out, fz_trace_text(&ip->guard_pending), ip->guard_pending.len);
    fz_trace_clear(&ip->guard_pending);
}

static const char *code_name(int rc)
{
    static char buf[32];
    if (rc >= 0) {
        snprintf(buf, sizeof buf, "%d", rc);
        return buf;
    }
    return ae_strerror(rc);
}

/* ---- callbacks ---------------------------------------------------------- */

static void run_script(interp *ip, int lane, int script);

static void free_all_watchers(interp *ip)
{
    for (int i = 0; i < ip->prog->nlanes; i++)
        for (int s = 0; s < FZ_SLOTS; s++) {
            obj *o = &ip->lanes[i].slots[s];
            if (o->w) {
                ae_watcher *w = o->w;
                o->w = NULL;
                ae_watcher_free(w);
            }
        }
}

/* A callback must belong to the watcher in its slot: a freed watcher's
 * callback never runs again (docs/api.md). Also counts callbacks for the
 * run-away check. */
static bool callback_ok(obj *o, ae_watcher *w, const char *what)
{
    interp *ip = o->ip;
    if (ip->runaway)
        return false;
    if (++ip->callbacks_in_run > RUNAWAY_LIMIT) {
        ip->runaway = true;
        emit(ip, -2, "runaway: more than %d callbacks in one run call", RUNAWAY_LIMIT);
        free_all_watchers(ip);
        return false;
    }
    if (o->w == w)
        return true;
    emit(o->ip, o->lane, "BUG: %s callback of a freed watcher (slot now w%d)", what, o->w ? o->serial : -1);
    return false;
}

static void on_timer(ae_watcher *w, void *arg)
{
    obj *o = arg;
    if (!callback_ok(o, w, "timer"))
        return;
    emit(o->ip, o->lane, "fire timer w%d", o->serial);
    run_script(o->ip, o->lane, o->script);
}

static void on_idle(ae_watcher *w, void *arg)
{
    obj *o = arg;
    if (!callback_ok(o, w, "idle"))
        return;
    emit(o->ip, o->lane, "fire idle w%d", o->serial);
    run_script(o->ip, o->lane, o->script);
}

static void on_io(ae_watcher *w, int revents, void *arg)
{
    obj *o = arg;
    if (!callback_ok(o, w, "io"))
        return;
    emit(o->ip, o->lane, "fire io w%d revents=%d", o->serial, revents);
    run_script(o->ip, o->lane, o->script);
}

static void on_signal(ae_watcher *w, int signum, void *arg)
{
    obj *o = arg;
    if (!callback_ok(o, w, "signal"))
        return;
    emit(o->ip, o->lane, "fire signal w%d %s", o->serial, signum == SIGUSR1 ? "SIGUSR1" : signum == SIGUSR2 ? "SIGUSR2" : "other");
    run_script(o->ip, o->lane, o->script);
}

static int child_number(const interp *ip, pid_t pid)
{
    for (int i = 0; i < ip->nchildren; i++)
        if (ip->children[i] == pid)
            return i;
    return -1;
}

static void on_child(ae_watcher *w, pid_t pid, int status, void *arg)
{
    obj *o = arg;
    if (!callback_ok(o, w, "child"))
        return;
    interp *ip = o->ip;
    const char *how = WIFEXITED(status) ? "exit" : WIFSIGNALED(status) ? "signal" : "other";
    int detail = WIFEXITED(status) ? WEXITSTATUS(status) : WIFSIGNALED(status) ? WTERMSIG(status) : status;
    if (o->any_child && ip->in_run) {
        fz_trace_printf(&ip->lanes[o->lane].unordered, "L%d fire child w%d (any) child#%d %s %d\n", o->lane,
                        o->serial, child_number(ip, pid), how, detail);
        return;
    }
    emit(ip, o->lane, "fire child w%d child#%d %s %d", o->serial, child_number(ip, pid), how, detail);
    run_script(ip, o->lane, o->script);
}

static void on_cv(ae_cv *cv, void *arg)
{
    cv_obj *c = arg;
    if (c->cv != cv) {
        emit(c->ip, c->lane, "BUG: callback of a freed condvar");
        return;
    }
    emit(c->ip, c->lane, "fire cv c%d", c->serial);
    run_script(c->ip, c->lane, c->script);
}

/* ---- actions ------------------------------------------------------------ */

static bool lane_has_fd(const lane_state *l)
{
    return l->kind == FZ_LANE_PIPE_READ || l->kind == FZ_LANE_PIPE_WRITE || l->kind == FZ_LANE_SOCKET;
}

static const char *errno_name(int err)
{
    switch (err) {
    case EAGAIN: return "EAGAIN";
    case EPIPE: return "EPIPE";
    case ECONNRESET: return "ECONNRESET";
    default: return strerror(err);
    }
}

/* Read all there is (non-blocking fd); whether anything was read. */
static bool drain_fd(int fd)
{
    char buf[4096];
    bool any = false;
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0)
        any = true;
    return any;
}

/* Write until the fd takes no more. */
static void fill_fd(int fd)
{
    static const char buf[4096];
    while (write(fd, buf, sizeof buf) > 0)
        ;
}

static void fd_action(interp *ip, int lane, const fz_action *a)
{
    lane_state *l = &ip->lanes[lane];
    if (!lane_has_fd(l))
        return;
    /* The end the program writes to for readability, and reads from to make
     * the watched fd writable again. */
    int write_end = l->kind == FZ_LANE_PIPE_WRITE ? l->fd : l->peer;
    switch (a->op) {
    case FZ_FD_WRITE:
        if (write_end < 0) {
            emit(ip, lane, "fd_write: peer closed");
            return;
        }
        if (write(write_end, "x", 1) == 1)
            emit(ip, lane, "fd_write ok");
        else
            emit(ip, lane, "fd_write %s", errno_name(errno));
        return;
    case FZ_FD_DRAIN: {
        bool any = false;
        if (l->kind != FZ_LANE_PIPE_WRITE)
            any |= drain_fd(l->fd);
        if (l->kind != FZ_LANE_PIPE_READ && l->peer >= 0)
            any |= drain_fd(l->peer);
        emit(ip, lane, "fd_drain %s", any ? "read" : "empty");
        return;
    }
    case FZ_FD_FILL:
        /* Fills the watched fd's direction out: its write side. A pipe's
         * read end has none; there, filling is writing. */
        if (l->kind == FZ_LANE_PIPE_READ) {
            if (l->peer >= 0)
                fill_fd(l->peer);
        } else if (l->kind == FZ_LANE_PIPE_WRITE ? l->peer >= 0 : true) {
            fill_fd(l->fd);
        }
        emit(ip, lane, "fd_fill");
        return;
    case FZ_FD_CLOSE_PEER:
        if (l->peer >= 0) {
            close(l->peer);
            l->peer = -1;
            emit(ip, lane, "fd_close_peer");
        }
        return;
    }
}

static void burst_open(interp *ip, int lane, int count);

static void on_burst(ae_watcher *w, int revents, void *arg)
{
    (void)w;
    burst_fd *b = arg;
    interp *ip = b->ip;
    char c;
    b->calls++;
    if (revents != AE_READ || read(b->fd, &c, 1) != 1)
        b->bad++;
    /* The end's first wave: the first of its callbacks watches the second
     * wave while the wait is still walking the first (see "Bursts"). */
    if (ip->burst_checking && ip->nburst == ip->burst_first)
        burst_open(ip, -2, FZ_BURST_FDS);
}

/* Opens count more socketpairs and watches one end of each for reading. */
static void burst_open(interp *ip, int lane, int count)
{
    for (int n = 0; n < count && ip->nburst < 2 * FZ_BURST_FDS; n++) {
        burst_fd *b = &ip->burst[ip->nburst];
        int p[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, p) < 0) {
            emit(ip, lane, "fd_burst: socketpair: %s", strerror(errno));
            return;
        }
        *b = (burst_fd){.ip = ip, .fd = p[0], .peer = p[1]};
        ip->nburst++;
        b->w = ae_io(ip->loop, b->fd, AE_READ, on_burst, b);
        if (!b->w) {
            emit(ip, lane, "fd_burst: ae_io: %s", ae_last_error());
            return;
        }
    }
}

/* See "Bursts" at the top. */
static void burst_action(interp *ip, int lane)
{
    if (ip->depth == 0)
        return; /* the trap is in callbacks, and a burst costs run time */
    if (ip->burst_first) {
        emit(ip, lane, "fd_burst: made already");
        return;
    }
    burst_open(ip, lane, FZ_BURST_FDS);
    ip->burst_first = ip->nburst;
    emit(ip, lane, "fd_burst %d fds", ip->nburst);
}

/* Gives each burst fd in [from, to) a byte and runs the loop until they all
 * fired (or 20 iterations); the number that fired exactly once. */
static int burst_fire(interp *ip, int from, int to)
{
    int watched = 0;
    for (int i = from; i < to; i++)
        if (ip->burst[i].w && write(ip->burst[i].peer, "x", 1) == 1)
            watched++;
    int fired = 0;
    for (int n = 0; n < 20 && fired < watched; n++) {
        ae_run_once(ip->loop, AE_NOWAIT);
        fired = 0;
        for (int i = from; i < to; i++)
            fired += ip->burst[i].calls > 0;
    }
    int once = 0;
    for (int i = from; i < to; i++)
        once += ip->burst[i].calls == 1 && !ip->burst[i].bad;
    return once;
}

/* The end of a program that made a burst: with nothing else left in the
 * loop, the burst's fds all become ready at once, and the first callback
 * watches a second wave of new fds while the wait walks the rest; then the
 * second wave must work too. */
static void burst_check(interp *ip)
{
    if (!ip->burst_first)
        return;
    free_all_watchers(ip);
    for (int i = 0; i < ip->prog->nlanes; i++)
        for (int c = 0; c < FZ_CVS; c++) {
            cv_obj *cv = &ip->lanes[i].cvs[c];
            if (cv->cv) {
                ae_cv_free(cv->cv);
                cv->cv = NULL;
            }
        }
    ip->burst_checking = true;
    int first = ip->burst_first;
    int once = burst_fire(ip, 0, first);
    ip->burst_checking = false;
    emit(ip, -2, "burst: %d of %d fds fired once", once, first);
    once = burst_fire(ip, first, ip->nburst);
    emit(ip, -2, "burst: second wave, watched from a callback: %d of %d fds fired once", once, ip->nburst - first);
    for (int i = 0; i < ip->nburst; i++)
        if (ip->burst[i].w) {
            ae_watcher_free(ip->burst[i].w);
            ip->burst[i].w = NULL;
        }
}

static void burst_close(interp *ip)
{
    for (int i = 0; i < ip->nburst; i++) {
        close(ip->burst[i].fd);
        close(ip->burst[i].peer);
    }
    ip->nburst = 0;
}

static void cv_action(interp *ip, int lane, const fz_action *a)
{
    lane_state *l = &ip->lanes[lane];
    cv_obj *c = &l->cvs[a->slot % FZ_CVS];
    if (a->op != FZ_CV_NEW && !c->cv)
        c = &l->cvs[(a->slot + 1) % FZ_CVS]; /* the other one, if it exists */
    if (a->op == FZ_CV_NEW || !c->cv) {
        if (c->cv)
            return;
        c->cv = ae_cv_new(ip->loop);
        if (!c->cv) {
            emit(ip, lane, "cv_new failed: %s", ae_last_error());
            return;
        }
        c->serial = l->serials++;
        emit(ip, lane, "cv_new c%d", c->serial);
        return;
    }
    int rc;
    switch (a->op) {
    case FZ_CV_SEND:
        emit(ip, lane, "cv_send c%d value %d", c->serial, a->arg);
        rc = ae_cv_send(c->cv, &cv_values[a->arg]);
        break;
    case FZ_CV_CROAK: {
        char message[32];
        snprintf(message, sizeof message, "croak%d", a->arg);
        emit(ip, lane, "cv_croak c%d", c->serial);
        rc = ae_cv_croak(c->cv, message);
        break;
    }
    case FZ_CV_BEGIN:
        rc = ae_cv_begin(c->cv);
        break;
    case FZ_CV_END:
        emit(ip, lane, "cv_end c%d", c->serial);
        rc = ae_cv_end(c->cv);
        break;
    case FZ_CV_FREE: {
        ae_cv *cv = c->cv;
        c->cv = NULL;
        emit(ip, lane, "cv_free c%d", c->serial);
        ae_cv_free(cv);
        return;
    }
    case FZ_CV_CB:
        emit(ip, lane, "cv_cb c%d %s", c->serial, a->arg & 1 ? "none" : "script");
        if (a->arg & 1) {
            ae_cv_cb(c->cv, NULL, NULL);
        } else {
            c->script = a->script;
            ae_cv_cb(c->cv, on_cv, c); /* runs at once if ready */
        }
        return;
    case FZ_CV_READY: {
        const char *err = ae_cv_error(c->cv);
        emit(ip, lane, "cv_ready c%d = %d error=%s", c->serial, ae_cv_ready(c->cv), err ? err : "none");
        return;
    }
    default:
        return;
    }
    emit(ip, lane, "%s c%d = %s", fz_action_name(a->op), c->serial, code_name(rc));
}

/* Create a watcher in o (an empty slot). */
static void create_watcher(interp *ip, int lane, obj *o, const fz_action *a)
{
    lane_state *l = &ip->lanes[lane];
    ae_watcher *w = NULL;
    char what[64];
    switch (a->op) {
    case FZ_TIMER: {
        double after, interval;
        fz_timer_times(a->arg, &after, &interval);
        w = ae_timer(ip->loop, after, interval, on_timer, o);
        o->kind = OBJ_TIMER;
        snprintf(what, sizeof what, "timer %g %g", after, interval);
        break;
    }
    case FZ_IDLE:
        w = ae_idle(ip->loop, on_idle, o);
        o->kind = OBJ_IDLE;
        snprintf(what, sizeof what, "idle");
        break;
    case FZ_IO:
        if (!lane_has_fd(l))
            return;
        w = ae_io(ip->loop, l->fd, a->arg & l->events, on_io, o);
        o->kind = OBJ_IO;
        snprintf(what, sizeof what, "io events=%d", a->arg & l->events);
        break;
    case FZ_SOURCE:
        /* One signal or child watcher per lane at a time: the contract does
         * not order several watchers of one signal or child. */
        for (int i = 0; i < FZ_SLOTS; i++)
            if (l->slots[i].w && (l->slots[i].kind == OBJ_SIGNAL || l->slots[i].kind == OBJ_CHILD))
                return;
        if (l->kind == FZ_LANE_SIGNAL) {
            w = ae_signal(ip->loop, l->signum, on_signal, o);
            o->kind = OBJ_SIGNAL;
            snprintf(what, sizeof what, "signal %s", l->signum == SIGUSR1 ? "SIGUSR1" : "SIGUSR2");
        } else if (l->kind == FZ_LANE_CHILD) {
            int which = a->arg % (ip->nchildren + 1); /* 0: any child */
            w = ae_child(ip->loop, which ? ip->children[which - 1] : 0, on_child, o);
            o->kind = OBJ_CHILD;
            o->any_child = which == 0;
            snprintf(what, sizeof what, "child %s%d", which ? "child#" : "any", which ? which - 1 : 0);
        } else {
            return;
        }
        break;
    default:
        return;
    }
    if (!w) {
        o->kind = OBJ_NONE;
        emit(ip, lane, "%s failed: %s", what, ae_strerror(ae_last_error_code()));
        return;
    }
    o->w = w;
    o->serial = l->serials++;
    o->script = a->script;
    emit(ip, lane, "%s -> w%d", what, o->serial);
}

/* The slot an action is about: from the action's slot on, the first that
 * is empty (to create) or holds a watcher of a kind in kinds (a bit mask of
 * 1 << enum obj_kind), so that few actions miss their target. NULL if none. */
static obj *pick_slot(lane_state *l, int start, bool empty, unsigned kinds)
{
    for (int i = 0; i < FZ_SLOTS; i++) {
        obj *o = &l->slots[(start + i) % FZ_SLOTS];
        if (empty ? !o->w : o->w && (kinds >> o->kind & 1))
            return o;
    }
    return NULL;
}

#define ANY_KIND (~0u)

static void do_action(interp *ip, int lane, const fz_action *a)
{
    lane_state *l = &ip->lanes[lane];
    obj *o;
    switch (a->op) {
    case FZ_TIMER:
    case FZ_IDLE:
    case FZ_IO:
    case FZ_SOURCE:
        if ((o = pick_slot(l, a->slot, true, 0)))
            create_watcher(ip, lane, o, a);
        return;
    case FZ_FREE:
        if ((o = pick_slot(l, a->slot, false, ANY_KIND))) {
            ae_watcher *w = o->w;
            o->w = NULL;
            emit(ip, lane, "free w%d", o->serial);
            ae_watcher_free(w);
        }
        return;
    case FZ_IO_SET:
        if ((o = pick_slot(l, a->slot, false, 1u << OBJ_IO)))
            emit(ip, lane, "io_set w%d %d = %s", o->serial, a->arg & l->events,
                 code_name(ae_io_set(o->w, a->arg & l->events)));
        return;
    case FZ_TIMER_SET:
        if ((o = pick_slot(l, a->slot, false, 1u << OBJ_TIMER))) {
            double after, interval;
            fz_timer_times(a->arg, &after, &interval);
            emit(ip, lane, "timer_set w%d %g %g = %s", o->serial, after, interval,
                 code_name(ae_timer_set(o->w, after, interval)));
        }
        return;
    case FZ_ACTIVE:
        if ((o = pick_slot(l, a->slot, false, ANY_KIND)))
            emit(ip, lane, "active w%d = %d", o->serial, ae_watcher_active(o->w));
        return;
    case FZ_FD_WRITE:
    case FZ_FD_DRAIN:
    case FZ_FD_FILL:
    case FZ_FD_CLOSE_PEER:
        fd_action(ip, lane, a);
        return;
    case FZ_FD_BURST:
        burst_action(ip, lane);
        return;
    default:
        cv_action(ip, lane, a);
        return;
    }
}

static void run_script(interp *ip, int lane, int script)
{
    if (ip->depth >= MAX_DEPTH) {
        emit(ip, lane, "depth limit");
        return;
    }
    ip->depth++;
    for (int i = 0; i < ip->prog->script_len[script]; i++)
        do_action(ip, lane, &ip->prog->scripts[script][i]);
    ip->depth--;
}

/* ---- top-level steps ---------------------------------------------------- */

static void on_guard(ae_watcher *w, void *arg)
{
    (void)w;
    guard *g = arg;
    emit(g->ip, -1, "fire");
}

static void on_guard_break(ae_watcher *w, void *arg)
{
    (void)w;
    guard *g = arg;
    emit(g->ip, -1, "fire: break");
    ae_break(g->ip->loop);
}

static void on_guard_send(ae_watcher *w, void *arg)
{
    (void)w;
    guard *g = arg;
    cv_obj *c = &g->ip->lanes[g->lane].cvs[g->cv_slot];
    if (!c->cv || c->serial != g->cv_serial) {
        emit(g->ip, -1, "fire: condvar gone");
        return;
    }
    /* The condvar's callback belongs to its lane; the guard's line comes
     * from the guard. */
    int rc = ae_cv_send(c->cv, &cv_values[255]);
    emit(g->ip, -1, "fire: send = %s", code_name(rc));
}

static bool guard_arm(interp *ip, ae_timer_cb cb)
{
    ip->guard.ip = ip;
    ip->guard.w = ae_timer(ip->loop, 0, 0, cb, &ip->guard);
    if (!ip->guard.w) {
        emit(ip, -2, "guard timer failed: %s", ae_last_error());
        return false;
    }
    return true;
}

static void guard_free(interp *ip)
{
    ae_watcher_free(ip->guard.w);
    ip->guard.w = NULL;
}

static void spawn(interp *ip, int status)
{
    if (ip->nchildren >= FZ_MAX_CHILDREN)
        return;
    pid_t pid = fork();
    if (pid < 0) {
        emit(ip, -2, "fork failed: %s", strerror(errno));
        return;
    }
    if (pid == 0)
        _exit(status);
    ip->children[ip->nchildren++] = pid;
    /* Until it has exited, without reaping it: its SIGCHLD has been handled
     * when this returns, so the next iteration sees it. */
    siginfo_t info;
    while (waitid(P_PID, (id_t)pid, &info, WEXITED | WNOWAIT) < 0 && errno == EINTR)
        ;
    emit(ip, -2, "spawn child#%d exit %d", ip->nchildren - 1, status);
}

static void do_step(interp *ip, const fz_step *st)
{
    int rc;
    switch (st->op) {
    case FZ_TOP_ACTION:
        do_action(ip, st->lane, &st->action);
        return;
    case FZ_TOP_RUN_NOWAIT:
        run_begin(ip);
        rc = ae_run_once(ip->loop, AE_NOWAIT);
        run_end(ip);
        emit(ip, -2, "run_once nowait = %s", code_name(rc));
        return;
    case FZ_TOP_RUN_ONCE:
        if (!guard_arm(ip, on_guard))
            return;
        run_begin(ip);
        rc = ae_run_once(ip->loop, 0);
        run_end(ip);
        guard_free(ip);
        emit(ip, -2, "run_once = %s", code_name(rc));
        return;
    case FZ_TOP_RUN_BREAK:
        if (!guard_arm(ip, on_guard_break))
            return;
        run_begin(ip);
        rc = ae_run(ip->loop);
        run_end(ip);
        guard_free(ip);
        emit(ip, -2, "run = %s", code_name(rc));
        return;
    case FZ_TOP_RECV: {
        int slot = st->arg % FZ_CVS;
        if (!ip->lanes[st->lane].cvs[slot].cv)
            slot = (slot + 1) % FZ_CVS;
        cv_obj *c = &ip->lanes[st->lane].cvs[slot];
        if (!c->cv)
            return;
        ip->guard.lane = st->lane;
        ip->guard.cv_slot = slot;
        ip->guard.cv_serial = c->serial;
        if (!guard_arm(ip, on_guard_send))
            return;
        emit(ip, -2, "recv L%d c%d", st->lane, c->serial);
        void *value = NULL;
        run_begin(ip);
        rc = ae_cv_recv(c->cv, &value);
        run_end(ip);
        guard_free(ip);
        if (rc == 0 && value)
            emit(ip, -2, "recv = 0 value %d", (int)((char *)value - cv_values));
        else
            emit(ip, -2, "recv = %s", code_name(rc));
        return;
    }
    case FZ_TOP_RAISE: {
        int signum = st->arg & 1 ? SIGUSR2 : SIGUSR1;
        raise(signum);
        emit(ip, -2, "raise %s", signum == SIGUSR1 ? "SIGUSR1" : "SIGUSR2");
        return;
    }
    case FZ_TOP_SPAWN:
        spawn(ip, st->arg % 8);
        return;
    case FZ_TOP_NOW_UPDATE:
        ae_now_update(ip->loop);
        emit(ip, -2, "now_update");
        return;
    }
}

/* ---- setup and teardown ------------------------------------------------- */

static int open_lane(lane_state *l, const fz_program *prog, const fz_lane *spec, fz_trace *out)
{
    l->kind = spec->kind;
    l->events = fz_lane_io_events(prog, spec);
    l->fd = l->peer = -1;
    l->signum = fz_lane_signal(spec);
    int p[2];
    switch (spec->kind) {
    case FZ_LANE_PIPE_READ:
    case FZ_LANE_PIPE_WRITE:
        if (pipe2(p, O_NONBLOCK | O_CLOEXEC) < 0) {
            fz_trace_printf(out, "pipe2: %s\n", strerror(errno));
            return -1;
        }
        l->fd = spec->kind == FZ_LANE_PIPE_READ ? p[0] : p[1];
        l->peer = spec->kind == FZ_LANE_PIPE_READ ? p[1] : p[0];
        return 0;
    case FZ_LANE_SOCKET:
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, p) < 0) {
            fz_trace_printf(out, "socketpair: %s\n", strerror(errno));
            return -1;
        }
        l->fd = p[0];
        l->peer = p[1];
        return 0;
    default:
        return 0;
    }
}

static void close_lanes(interp *ip)
{
    for (int i = 0; i < ip->prog->nlanes; i++) {
        lane_state *l = &ip->lanes[i];
        if (l->fd >= 0)
            close(l->fd);
        if (l->peer >= 0)
            close(l->peer);
        l->fd = l->peer = -1;
        fz_trace_free(&l->pending);
        fz_trace_free(&l->unordered);
    }
    fz_trace_free(&ip->guard_pending);
}

/* The state every watcher is left in, as one more set of facts to compare. */
static void trace_final_state(interp *ip)
{
    for (int i = 0; i < ip->prog->nlanes; i++)
        for (int s = 0; s < FZ_SLOTS; s++) {
            obj *o = &ip->lanes[i].slots[s];
            if (o->w)
                emit(ip, i, "end w%d active=%d", o->serial, ae_watcher_active(o->w));
        }
}

int fz_run(const fz_program *prog, const char *backend, fz_trace *out)
{
    /* Raising a signal nobody watches must do nothing; writing to a closed
     * pipe must fail with EPIPE, not kill. The disposition in place is what
     * anyevent restores when the last watcher goes. */
    signal(SIGUSR1, SIG_IGN);
    signal(SIGUSR2, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);

    fz_trace_clear(out);
    interp ip;
    memset(&ip, 0, sizeof ip);
    ip.prog = prog;
    ip.out = out;
    for (int i = 0; i < FZ_MAX_LANES; i++) {
        ip.lanes[i].fd = ip.lanes[i].peer = -1;
        for (int s = 0; s < FZ_SLOTS; s++)
            ip.lanes[i].slots[s] = (obj){&ip, i, OBJ_NONE, 0, 0, false, NULL};
        for (int c = 0; c < FZ_CVS; c++)
            ip.lanes[i].cvs[c] = (cv_obj){&ip, i, 0, 0, NULL};
    }
    for (int i = 0; i < prog->nlanes; i++)
        if (open_lane(&ip.lanes[i], prog, &prog->lanes[i], out) < 0) {
            close_lanes(&ip);
            return -1;
        }
    ip.loop = ae_loop_new(backend);
    if (!ip.loop) {
        fz_trace_printf(out, "ae_loop_new(%s): %s\n", backend, ae_last_error());
        close_lanes(&ip);
        return -1;
    }
    for (int i = 0; i < prog->nsteps && !ip.runaway; i++)
        do_step(&ip, &prog->steps[i]);
    trace_final_state(&ip);
    burst_check(&ip);
    ae_loop_free(ip.loop);
    burst_close(&ip);
    close_lanes(&ip);
    for (int i = 0; i < ip.nchildren; i++) {
        int status;
        waitpid(ip.children[i], &status, WNOHANG); /* ECHILD if anyevent reaped it */
    }
    return 0;
}
