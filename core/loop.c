/* Loops: creation, the default loop, running, time, and what every watcher
 * kind shares (allocation, activity, freeing). */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/eventfd.h>
#endif

#include "internal.h"

/* ---- time -------------------------------------------------------------- */

static double clock_seconds(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double ae__mono(void) { return clock_seconds(CLOCK_MONOTONIC); }

double ae_time(void) { return clock_seconds(CLOCK_REALTIME); }

/* One clock read per iteration: the wall time is the monotonic time plus an
 * offset measured again once a second (as libev does), so a wall-clock
 * change shows in ae_now() within a second, and at once after
 * ae_now_update(). */
static void time_refresh(ae_loop *loop, bool resync)
{
    double mono = ae__mono();
    if (resync || mono - loop->wall_synced >= 1.0) {
        loop->wall_offset = ae_time() - mono;
        loop->wall_synced = mono;
    }
    loop->now_mono = mono;
    loop->now_wall = mono + loop->wall_offset;
    loop->time_stale = false;
}

void ae__time_refresh(ae_loop *loop) { time_refresh(loop, false); }

double ae_now(ae_loop *loop)
{
    if (!ae__loop_ok(loop, "ae_now"))
        return NAN;
    if (loop->iter_lazy && loop->native_frame)
        ae__iter_sync(loop);
    if (loop->time_stale)
        time_refresh(loop, false);
    return loop->now_wall;
}

void ae_now_update(ae_loop *loop)
{
    if (ae__loop_ok(loop, "ae_now_update"))
        time_refresh(loop, true);
}

/* ---- checks -------------------------------------------------------------- */

bool ae__loop_bad(const char *fn)
{
    ae__set_error(AE_EINVAL, "%s: loop is NULL", fn);
    return false;
}

bool ae__watcher_bad(const ae_watcher *w, const char *fn)
{
    if (!w || w->magic != AE_WATCHER_MAGIC)
        ae__set_error(AE_EINVAL, "%s: not a live watcher", fn);
    else
        ae__set_error(AE_EINVAL, "%s: wrong kind of watcher", fn);
    return false;
}

/* ---- watchers ------------------------------------------------------------ */

/* Stop a watcher without freeing it. */
static void watcher_stop(ae_watcher *w)
{
    switch (w->kind) {
    case AE_KIND_IO: ae__io_stop(w); break;
    case AE_KIND_TIMER: ae__timer_stop(w); break;
    case AE_KIND_SIGNAL: ae__signal_stop(w); break;
    case AE_KIND_CHILD: ae__child_stop(w); break;
    case AE_KIND_IDLE: ae__idle_stop(w); break;
    case AE_KIND_ASYNC: ae__async_stop(w); break;
    case AE_KIND_PREPARE:
    case AE_KIND_CHECK: ae__hook_stop(w); break;
    }
    ae__watcher_deactivate(w);
}

static void watcher_destroy(ae_watcher *w)
{
    watcher_stop(w);
    ae__watcher_release(w);
}

static void watcher_destroy_user(ae_watcher *w)
{
    if (!w->internal)
        watcher_destroy(w);
}

void ae_watcher_free(ae_watcher *w)
{
    if (!w)
        return;
    if (!ae__watcher_ok(w, 0, "ae_watcher_free"))
        return;
    if (w->internal) {
        ae__set_error(AE_EINVAL, "ae_watcher_free: the loop's own watcher");
        return;
    }
    /* Every walk over a list holds a cursor, and timers leave the heap before
     * their callback runs, so nothing points at w once it is stopped: the
     * memory can go at once, even from inside w's own callback. */
    watcher_destroy(w);
}

int ae_watcher_active(const ae_watcher *w)
{
    if (!ae__watcher_ok(w, 0, "ae_watcher_active"))
        return 0;
    return w->active;
}

ae_loop *ae_watcher_loop(const ae_watcher *w)
{
    if (!ae__watcher_ok(w, 0, "ae_watcher_loop"))
        return NULL;
    return w->loop;
}

/* ---- the wake-up fd -------------------------------------------------------- */

static void wake_drain(ae_loop *loop)
{
    char buf[64];
    while (read(loop->wake_rfd, buf, sizeof buf) > 0)
        ;
}

/* What the wake-up fd brought: signals, reaped children, async sends. */
static void wake_run(ae_loop *loop)
{
    wake_drain(loop);
    ae__signals_dispatch(loop);
    ae__children_dispatch(loop);
    ae__async_dispatch(loop);
}

/* The wake-up fd's io callback. The io dispatch counts every callback in
 * dispatched without looking at internal (core/io.c): this one is the
 * core's own and takes its count back, so that only the user callbacks it
 * runs count. */
static void wake_cb(ae_watcher *w, int revents, void *arg)
{
    (void)revents;
    (void)arg;
    w->loop->dispatched--;
    wake_run(w->loop);
}

/* After the wait: a signal that interrupted it (EINTR), or a child that a
 * backend's native watch reported from inside it, wrote the wake-up fd too
 * late to be among what the wait returned. Run them now, in this iteration,
 * as ae_run_once() promises; three relaxed loads when nothing came. */
void ae__wake_pending_run(ae_loop *loop)
{
    if (!loop->wake_watcher || loop->free_requested)
        return;
    if (!atomic_load_explicit(&loop->sig.any_pending, memory_order_relaxed) &&
        !atomic_load_explicit(&loop->inbox_pending, memory_order_relaxed) &&
        !atomic_load_explicit(&loop->reap_requested, memory_order_relaxed) &&
        !atomic_load_explicit(&loop->async_pending, memory_order_relaxed))
        return;
    wake_run(loop);
}

static int wake_attach(ae_loop *loop);

/* A new wake-up fd: one eventfd, or a pipe's two ends. */
static int wake_fds_create(int *rfd, int *wfd)
{
#ifdef __linux__
    int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0)
        return ae__set_errno("eventfd");
    *rfd = *wfd = fd;
#else
    int p[2];
    if (pipe(p) < 0)
        return ae__set_errno("pipe");
    for (int i = 0; i < 2; i++) {
        fcntl(p[i], F_SETFD, FD_CLOEXEC);
        fcntl(p[i], F_SETFL, fcntl(p[i], F_GETFL) | O_NONBLOCK);
    }
    *rfd = p[0];
    *wfd = p[1];
#endif
    return 0;
}

/* Open the loop's wake-up fd on first need (signals and children use it). */
int ae__wake_open(ae_loop *loop)
{
    if (loop->wake_watcher)
        return 0;
    int rc = wake_fds_create(&loop->wake_rfd, &loop->wake_wfd);
    return rc < 0 ? rc : wake_attach(loop);
}

/* Watch the wake-up fds just made; on failure they are closed. */
static int wake_attach(ae_loop *loop)
{
    ae_watcher *w = ae__watcher_alloc(loop, AE_KIND_IO, NULL);
    int rc = w ? 0 : AE_ENOMEM;
    if (w) {
        w->internal = true;
        w->cb.io = wake_cb;
        rc = ae__io_register(loop, loop->wake_rfd, w, 0);
        if (rc < 0)
            ae__watcher_release(w);
    }
    if (rc < 0) {
        close(loop->wake_rfd);
        if (loop->wake_wfd != loop->wake_rfd)
            close(loop->wake_wfd);
        loop->wake_rfd = loop->wake_wfd = -1;
        return rc;
    }
    loop->wake_watcher = w;
    atomic_store(&loop->sig.wake_fd, loop->wake_wfd);
    return 0;
}

/* The wake-up fd is registered only while signal or child watchers need it,
 * so that it never keeps a host's native loop running on its own. */
int ae__wake_use(ae_loop *loop, bool use)
{
    if (use && loop->wake_users == 0) {
        int rc = ae__io_set_events(loop->wake_watcher, AE_READ);
        if (rc < 0)
            return rc;
    }
    if (!use && loop->wake_users == 1)
        ae__io_set_events(loop->wake_watcher, 0);
    loop->wake_users += use ? 1 : -1;
    if (loop->wake_users == 1 && use)
        ae__iter_hook_update(loop); /* idle watchers may need it now */
    return 0;
}

/* Async-signal-safe; callable from any thread while the loop exists. The fd
 * is read atomically: a fork renewal on the loop's thread replaces it. */
void ae__wake(ae_loop *loop)
{
    int fd = atomic_load_explicit(&loop->sig.wake_fd, memory_order_acquire);
    if (fd >= 0) {
        uint64_t one = 1;
        ssize_t r = write(fd, &one, sizeof one);
        (void)r; /* a full pipe or counter already wakes the loop */
    }
}

static void wake_close(ae_loop *loop)
{
    if (!loop->wake_watcher)
        return;
    atomic_store(&loop->sig.wake_fd, -1);
    /* A signal handler or a reaper on another thread may have read the fd
     * just before: let it finish its write before the number can be reused. */
    ae__signal_handlers_wait();
    ae__child_reapers_wait();
    ae__io_stop(loop->wake_watcher);
    ae__watcher_release(loop->wake_watcher);
    loop->wake_watcher = NULL;
    close(loop->wake_rfd);
    if (loop->wake_wfd != loop->wake_rfd)
        close(loop->wake_wfd);
    loop->wake_rfd = loop->wake_wfd = -1;
}

/* ---- fork ------------------------------------------------------------------- */

/* Replace the kernel state the loop shares with the parent. */
static int loop_renew(ae_loop *loop)
{
    if (!loop->adopted && loop->ops->fork) {
        int rc = loop->ops->fork(loop, loop->backend_state);
        if (rc == 1)
            rc = ae__fds_reannounce(loop);
        if (rc < 0)
            return rc;
    } else if (loop->adopted && AE_BACKEND_OPS_HAS(loop->ops, adopted_fork) && loop->ops->adopted_fork) {
        /* The host renews its native loop; the plugin only what is its own. */
        int rc = loop->ops->adopted_fork(loop, loop->backend_state);
        if (rc < 0)
            return rc;
    }
    /* The wake-up eventfd is shared with the parent: a write to it would wake
     * the wrong process. Open our own and register it as the old one was. */
    if (loop->wake_watcher) {
        /* The new fd first: when none is left, the old one stays (see
         * ae_loop_fork for what happens to the loop then). */
        int rfd = -1, wfd = -1;
        int rc = wake_fds_create(&rfd, &wfd);
        if (rc < 0)
            return rc;
        wake_close(loop);
        loop->wake_rfd = rfd;
        loop->wake_wfd = wfd;
        rc = wake_attach(loop);
        if (rc == 0 && loop->wake_users)
            rc = ae__io_set_events(loop->wake_watcher, AE_READ);
        if (rc < 0)
            return rc;
        ae__wake(loop); /* a signal caught since the fork woke the parent, not us */
    }
    return 0;
}

int ae_loop_fork(ae_loop *loop)
{
    if (!ae__loop_ok(loop, "ae_loop_fork"))
        return AE_EINVAL;
    if (loop->fork_error)
        return ae__set_error(loop->fork_error, "%s", loop->fork_message);
    /* The renewal's own calls (unregistering the old wake-up fd) must find
     * the loop renewed already. */
    unsigned old_gen = loop->fork_gen;
    loop->fork_gen = atomic_load_explicit(&ae__fork_generation, memory_order_relaxed);
    int rc = loop_renew(loop);
    if (rc < 0) {
        /* Half renewed, the loop could go on with the parent's kernel state
         * (its epoll instance, say): it refuses to run from now on, with this
         * error, and the generation stays old so that every use asks again. */
        loop->fork_gen = old_gen;
        loop->fork_error = rc;
        snprintf(loop->fork_message, sizeof loop->fork_message,
                 "the loop could not be renewed after fork() and is unusable (free it): %s", ae_last_error());
        return ae__set_error(rc, "%s", loop->fork_message);
    }
    return 0;
}

int ae__loop_fork_check(ae_loop *loop)
{
    if (loop->fork_gen == atomic_load_explicit(&ae__fork_generation, memory_order_relaxed))
        return 0;
    return ae_loop_fork(loop);
}

/* ---- loops ------------------------------------------------------------------- */

static ae_loop *loop_create(const char *backend, void *native)
{
    ae_loop *loop = calloc(1, sizeof *loop);
    if (!loop) {
        ae__set_error(AE_ENOMEM, "%s: out of memory", native ? "ae_loop_adopt" : "ae_loop_new");
        return NULL;
    }
    loop->wake_rfd = loop->wake_wfd = -1;
    loop->armed_deadline = INFINITY;
    atomic_init(&loop->sig.wake_fd, -1);
    ae__atfork_init();
    loop->fork_gen = atomic_load_explicit(&ae__fork_generation, memory_order_relaxed);
    time_refresh(loop, true);
    if (ae__backend_open(loop, backend, native) < 0) {
        free(loop);
        return NULL;
    }
    loop->adopted = native != NULL;
    loop->native_iter = AE_BACKEND_OPS_HAS(loop->ops, run) && loop->ops->run;
    /* The iteration service only when needed: see ae__iter_hook_update. */
    loop->iter_lazy = loop->native_iter && !loop->adopted && AE_BACKEND_OPS_HAS(loop->ops, iteration_hook) &&
                      loop->ops->iterations && loop->ops->iteration_hook;
    if (loop->iter_lazy)
        loop->ops->iteration_hook(loop, loop->backend_state, 0);
    /* Idle watchers without the native timer: see core/idle.c. */
    loop->native_idle = loop->native_iter && !loop->adopted && AE_BACKEND_OPS_HAS(loop->ops, idle_update) &&
                        loop->ops->idle_update;
    return loop;
}

ae_loop *ae_loop_new(const char *backend) { return loop_create(backend, NULL); }

ae_loop *ae_loop_adopt(const char *backend, void *native)
{
    if (!backend || !*backend) {
        ae__set_error(AE_EINVAL, "ae_loop_adopt: name the backend of the native loop (\"libev\", ...)");
        return NULL;
    }
    if (!native) {
        ae__set_error(AE_EINVAL, "ae_loop_adopt: native loop is NULL");
        return NULL;
    }
    return loop_create(backend, native);
}

void *ae_loop_native(ae_loop *loop)
{
    if (!ae__loop_ok(loop, "ae_loop_native"))
        return NULL;
    if (!loop->ops->native) {
        ae__set_error(AE_ENOTSUP, "ae_loop_native: the %s backend has no native loop", loop->ops->name);
        return NULL;
    }
    return loop->ops->native(loop->backend_state);
}

/* ---- the native loop's timer: adopted loops, and native_iter ---------------- */

/* Keep the backend's one native timer armed for what the core needs next:
 * at once while idle watchers exist, else the first timer deadline; only
 * when that changes. Where the core runs the iteration itself (wait()),
 * this waits for the end of the dispatch (ae__loop_leave); where the native
 * loop does, at once (a nested wait needs its own deadline armed), except
 * inside the expire service, which re-arms once at its end. */
void ae__reschedule_to(ae_loop *loop, double want)
{
    if (!(loop->adopted || loop->native_iter) || loop->free_requested || loop->expiring)
        return;
    if (loop->busy && !loop->native_iter)
        return;
    loop->armed_deadline = want;
    double timeout = -1;
    if (want == -INFINITY)
        timeout = 0;
    else if (want != INFINITY)
        timeout = fmax(0, want - ae__mono());
    loop->ops->timer_update(loop, loop->backend_state, timeout);
}

void ae_backend_expire(ae_loop *loop) { (void)ae_backend_expire_checked(loop); }

int ae_backend_expire_checked(ae_loop *loop)
{
    /* The native timer is one-shot: it is not armed any more. */
    loop->armed_deadline = INFINITY;
    if (loop->busy && !loop->native_iter)
        return 1; /* inside our own ae_run_once(), which runs the timers itself */
    if (loop->free_requested)
        return 1;
    if (loop->iter_lazy && loop->native_frame)
        ae__iter_sync(loop); /* the iteration's start, for the timers armed since */
    /* Due timers need the time; idle watchers alone do not, and under run()
     * it is read at its first use (or when run() returns), as in any
     * iteration. The host's iterations are not seen: read it for them. */
    if (loop->heap_len || !loop->native_frame)
        ae__time_refresh(loop);
    ae__loop_enter(loop);
    loop->expiries++;
    bool expiring = loop->expiring;
    loop->expiring = true;
    /* Idle only if no callback of ours ran in this native iteration (under
     * run()), or since the last expiry (the host runs the loop), nor now:
     * anyevent cannot see the host's own events. Timers armed since the
     * iteration began (or from here, in the host's loop) wait for the next. */
    bool quiet = loop->dispatched == (loop->native_frame ? loop->iter_mark : loop->expire_mark);
    uint64_t before = loop->dispatched;
    if (loop->heap_len)
        ae__timers_run(loop, loop->native_frame ? loop->iter_seq : loop->timer_seq);
    if (loop->idle_count && !loop->native_idle && quiet && loop->dispatched == before && !loop->free_requested)
        ae__idle_run(loop);
    loop->expire_mark = loop->dispatched;
    loop->expiring = expiring;
    ae__reschedule(loop);
    bool frees = loop->free_requested && loop->busy == 1;
    ae__loop_leave(loop); /* frees the loop if a callback asked for it and nothing else runs */
    return !frees;
}

/* ---- the iteration service on demand (iter_lazy) ------------------------------
 *
 * Where the backend can skip it (iterations, iteration_hook), the service runs
 * only while the core needs the end of an iteration: prepare, check or idle
 * watchers exist (idle: unless the backend runs them, native_idle), or for the iteration in which the loop ran out of active
 * watchers, ae_break or ae_loop_free was called, or the process forked. What
 * every iteration needs otherwise (the time goes stale, timers armed in it
 * wait for the next) is found out when needed, from the native count of
 * iterations: a ping-pong runs no core code between its callbacks. */

/* The loops in a backend's run() on this thread, innermost first. */
static _Thread_local ae_loop *native_running;

void ae__iter_sync(ae_loop *loop)
{
    unsigned n = loop->ops->iterations(loop->backend_state);
    if (n == loop->iter_count)
        return;
    loop->iter_count = n;
    loop->time_stale = true;
    loop->iter_seq = loop->timer_seq;
}

/* Hooks, and idle watchers, need the end of every iteration; where the
 * backend runs the idle watchers (native_idle), only while the wake-up fd is
 * watched: its native watcher keeps the native idle from running, but an
 * iteration in which it dispatched nothing is still one for the idle
 * watchers (idle_owed). */
static bool iter_hook_wanted(const ae_loop *loop)
{
    return loop->prepare_count || loop->check_count ||
           (loop->idle_count && (!loop->native_idle || loop->wake_users));
}

void ae__iter_hook_update(ae_loop *loop)
{
    if (!loop->iter_lazy || loop->iter_hook)
        return;
    if (!loop->iter_hook_once && !iter_hook_wanted(loop))
        return;
    loop->iter_hook = true;
    loop->ops->iteration_hook(loop, loop->backend_state, 1);
}

/* The end of this iteration is needed just once (it decides whether run()
 * goes on). */
static void iter_hook_once(ae_loop *loop)
{
    if (loop->iter_lazy && loop->native_frame) {
        loop->iter_hook_once = true;
        ae__iter_hook_update(loop);
    }
}

/* No active watcher left (iter_lazy): the service ends run() unless a
 * callback adds one before the iteration ends. */
void ae__loop_drained(ae_loop *loop) { iter_hook_once(loop); }

/* After the service: off again unless hooks or idle watchers need it. */
static void iter_hook_done(ae_loop *loop)
{
    loop->iter_hook_once = false;
    if (loop->iter_hook && !iter_hook_wanted(loop)) {
        loop->iter_hook = false;
        loop->iter_marked = false; /* the next iteration's start goes unseen */
        loop->ops->iteration_hook(loop, loop->backend_state, 0);
    }
}

/* A native iteration is about to wait: the time is read again when it first
 * needs it after the wait, and what it dispatches from now on counts for it
 * (idle watchers; timers armed from now on wait for the next). */
static void iteration_begin(ae_loop *loop)
{
    loop->time_used = !loop->time_stale;
    loop->time_stale = true;
    loop->iter_mark = loop->dispatched;
    loop->iter_seq = loop->timer_seq;
    loop->idle_ran = false;
    loop->iter_marked = true;
}

/* native_idle: nothing ran in this iteration (watched from its start), and
 * the idle_run service did not either (a backend that calls the iteration
 * service in every iteration never calls it; on libev a native watcher of
 * the core's own, the wake-up fd, was pending). The idle watchers run now,
 * after the iteration's other callbacks, as where the core runs the
 * iteration. */
static bool idle_owed(const ae_loop *loop)
{
    return loop->native_idle && loop->idle_count && loop->iter_marked && !loop->idle_ran &&
           loop->dispatched == loop->iter_mark && !loop->free_requested;
}

/* The iteration service: called by a backend's run() once per native
 * iteration, after its callbacks, before it waits again. */
int ae_backend_iteration(ae_loop *loop)
{
    /* The end of this iteration: its idle watchers if owed, its check
     * hooks; then, if another follows under ae_run(), its prepare hooks. */
    if (idle_owed(loop))
        ae_backend_idle_run(loop);
    if (loop->check_count && !loop->free_requested)
        ae__hooks_run(loop, &loop->checks);
    bool go_on = loop->native_frame == AE_NATIVE_RUN && !loop->break_requested && loop->active > 0;
    if (go_on && loop->prepare_count && !loop->free_requested) {
        ae__hooks_run(loop, &loop->prepares);
        go_on = !loop->break_requested && loop->active > 0;
    }
    iteration_begin(loop);
    int rc = ae__loop_fork_check(loop);
    if (loop->iter_lazy)
        iter_hook_done(loop);
    if (rc < 0) {
        loop->native_error = rc;
        return 0;
    }
    return go_on && !loop->free_requested;
}

/* One call of the backend's run(): the native loop iterates, and the core's
 * work is hooked into it. */
static int native_run(ae_loop *loop, int frame, int flags)
{
    uint8_t outer_frame = loop->native_frame;
    uint64_t outer_mark = loop->iter_mark, outer_seq = loop->iter_seq;
    bool outer_idle_ran = loop->idle_ran, outer_marked = loop->iter_marked;
    bool expiring = loop->expiring; /* a nested wait from a timer callback re-arms as it goes */
    loop->native_frame = (uint8_t)frame;
    loop->expiring = false;
    if (loop->prepare_count) {
        ae__hooks_run(loop, &loop->prepares);
        if (loop->free_requested || (frame == AE_NATIVE_RUN && loop->break_requested)) {
            loop->native_frame = outer_frame;
            loop->expiring = expiring;
            return 0;
        }
    }
    iteration_begin(loop);
    loop->time_used = false;
    if (loop->iter_lazy)
        loop->iter_count = loop->ops->iterations(loop->backend_state);
    if (!outer_frame) {
        loop->native_up = native_running;
        native_running = loop;
    }
    ae__reschedule(loop);
    int rc = loop->ops->run(loop, loop->backend_state, flags);
    if (!outer_frame)
        native_running = loop->native_up;
    if (loop->iter_lazy) {
        /* An iteration began since the core last looked, and did not read
         * the time. */
        unsigned seen = loop->iter_count;
        ae__iter_sync(loop);
        if (loop->iter_count != seen)
            loop->time_used = false;
    }
    /* Back in the outer iteration (if any), under its rules. */
    loop->native_frame = outer_frame;
    loop->iter_mark = outer_mark;
    loop->iter_seq = outer_seq;
    loop->idle_ran = outer_idle_ran;
    loop->iter_marked = outer_marked;
    loop->expiring = expiring;
    if (loop->native_error < 0) {
        rc = loop->native_error;
        loop->native_error = 0;
    }
    /* The inner run's service may have been the last one asked for: the
     * outer iteration's end must still see why. */
    if (outer_frame && (loop->active == 0 || loop->break_requested || loop->free_requested))
        iter_hook_once(loop);
    /* Between iterations the loop time is that of the last iteration, as
     * where the core runs the iteration itself: read during it, or now. */
    if (loop->time_stale) {
        if (loop->time_used)
            loop->time_stale = false;
        else
            ae__time_refresh(loop);
    }
    return rc;
}

/* Make the innermost native run() return soon: it runs for ae_run(). */
static void native_break(ae_loop *loop)
{
    if (loop->native_iter && loop->native_frame == AE_NATIVE_RUN && AE_BACKEND_OPS_HAS(loop->ops, run_break) &&
        loop->ops->run_break)
        loop->ops->run_break(loop, loop->backend_state);
}

/* The lock is never held while the loop is made: a backend may take locks
 * of its own there, and its atfork handler may take them before ours (a
 * plugin registers its handlers after the core's, and prepare handlers run
 * in the reverse order), which would invert the two. Threads that come while
 * one makes it wait on the condition. */
static pthread_mutex_t default_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t default_made = PTHREAD_COND_INITIALIZER;
static bool default_making;
static ae_loop *default_loop;

/* In a program that uses libev or libuv itself, the default loop is that
 * library's default loop, adopted, so that the host's ev_run or uv_run runs
 * every watcher of a library that knows only ae_loop_default(). */
static ae_loop *default_create(void)
{
    const char *host = ae__host_library();
    const char *env = secure_getenv("ANYEVENT_BACKEND");
    if (!host || (env && *env && strcmp(env, host) != 0))
        return ae_loop_new(NULL);
    void *native = ae__backend_default_native(host);
    ae_loop *loop = native ? loop_create(host, native) : NULL;
    if (loop && ae__debug())
        fprintf(stderr, "anyevent: default loop: %s's own default loop, adopted (the program uses %s)\n", host, host);
    return loop;
}

void ae__default_atfork(enum ae_fork_phase phase)
{
    if (phase == AE_FORK_PREPARE) {
        pthread_mutex_lock(&default_lock);
        return;
    }
    if (phase == AE_FORK_CHILD) {
        /* A thread that was making the default loop is not in the child:
         * the next call makes one; nobody waits on the condition here. */
        default_making = false;
        pthread_cond_init(&default_made, NULL);
        /* Loops running on this thread (fork() from a callback): their
         * iteration's end renews them before they wait again. */
        for (ae_loop *loop = native_running; loop; loop = loop->native_up)
            iter_hook_once(loop);
    }
    pthread_mutex_unlock(&default_lock);
}

ae_loop *ae_loop_default(void)
{
    ae__atfork_init();
    pthread_mutex_lock(&default_lock);
    while (default_making)
        pthread_cond_wait(&default_made, &default_lock);
    if (!default_loop) {
        default_making = true;
        pthread_mutex_unlock(&default_lock);
        ae_loop *made = default_create();
        pthread_mutex_lock(&default_lock);
        default_loop = made;
        default_making = false;
        pthread_cond_broadcast(&default_made);
    }
    ae_loop *loop = default_loop;
    pthread_mutex_unlock(&default_lock);
    return loop;
}

struct ae_free_hook {
    struct ae_free_hook *next;
    ae__loop_free_fn *fn;
    void *arg;
};

int ae__loop_on_free(ae_loop *loop, ae__loop_free_fn *fn, void *arg)
{
    struct ae_free_hook *h = malloc(sizeof *h);
    if (!h)
        return ae__set_error(AE_ENOMEM, "out of memory");
    *h = (struct ae_free_hook){loop->free_hooks, fn, arg};
    loop->free_hooks = h;
    return 0;
}

void ae__loop_on_free_remove(ae_loop *loop, ae__loop_free_fn *fn, void *arg)
{
    for (struct ae_free_hook **p = &loop->free_hooks; *p; p = &(*p)->next)
        if ((*p)->fn == fn && (*p)->arg == arg) {
            struct ae_free_hook *h = *p;
            *p = h->next;
            free(h);
            return;
        }
}

void *ae__loop_layer(const ae_loop *loop, ae__loop_free_fn *fn)
{
    for (struct ae_free_hook *h = loop->free_hooks; h; h = h->next)
        if (h->fn == fn)
            return h->arg;
    return NULL;
}

bool ae__loop_freeing(const ae_loop *loop) { return loop->free_requested; }

static void loop_destroy(ae_loop *loop)
{
    struct ae_free_hook *h;
    while ((h = loop->free_hooks)) { /* a hook may remove another */
        loop->free_hooks = h->next;
        h->fn(h->arg);
        free(h);
    }
    /* Freeing an inherited loop in a child of fork() must not unregister
     * the parent's fds from kernel state the two share. */
    ae__loop_fork_check(loop);
    pthread_mutex_lock(&default_lock);
    if (default_loop == loop)
        default_loop = NULL;
    pthread_mutex_unlock(&default_lock);

    ae__slab_each_live(loop, watcher_destroy_user); /* the wake-up fd goes last, below */
    /* With its watchers gone, no reaper in another thread reaches the loop;
     * unlinking its signal node makes sure no signal handler does either,
     * before the wake-up fd closes. */
    ae__child_loop_free(loop);
    ae__signal_loop_free(loop);
    wake_close(loop);
    ae__cvs_free(loop);
    ae__fds_fini(loop);
    /* A broken loop (a failed fork renewal) may leave native watchers in
     * fd_data registered: the native loop's own teardown still reads them. */
    loop->ops->destroy(loop, loop->backend_state);
    ae__fds_free(loop);
    free(loop->backend_state);
    ae__timers_free(loop);
    ae__slab_free(loop);
    free(loop->inbox);
    free(loop);
}

void ae_loop_free(ae_loop *loop)
{
    if (!loop)
        return;
    if (loop->busy) {
        loop->free_requested = true;
        loop->dispatch_inline = false;
        native_break(loop);
        iter_hook_once(loop);
        return;
    }
    loop_destroy(loop);
}

const char *ae_loop_backend(const ae_loop *loop)
{
    if (!ae__loop_ok(loop, "ae_loop_backend"))
        return NULL;
    return loop->ops->name;
}

void ae__loop_enter(ae_loop *loop)
{
    loop->busy++;
    loop->dispatch_inline = !loop->free_requested;
}

void ae__loop_leave(ae_loop *loop)
{
    if (--loop->busy > 0)
        return;
    loop->dispatch_inline = false;
    if (loop->free_requested)
        loop_destroy(loop);
    else
        ae__reschedule(loop);
}

/* ---- running ------------------------------------------------------------------ */

/* How long the wait may block: not at all with AE_NOWAIT or idle watchers,
 * until the first timer, or without limit. */
static double wait_timeout(ae_loop *loop, int flags)
{
    if ((flags & AE_NOWAIT) || loop->idle_count)
        return 0;
    return ae__timer_next(loop);
}

static int run_once(ae_loop *loop, int flags)
{
    int rc = ae__loop_fork_check(loop);
    if (rc < 0)
        return rc;
    if (loop->active == 0 && !(flags & AE_NOWAIT))
        return 0;
    if (loop->native_iter) {
        uint64_t before = loop->dispatched, expiries = loop->expiries;
        rc = native_run(loop, AE_NATIVE_ONCE, flags & AE_NOWAIT ? AE_BACKEND_RUN_NOWAIT : AE_BACKEND_RUN_ONCE);
        if (rc < 0)
            return rc;
        /* A wait that a signal interrupted (EINTR) ran nothing: what the
         * signal or a reaped child left pending runs now, in this iteration.
         * What the iteration's own callbacks left (a new child watcher from
         * an io, timer or idle callback) waits for the next, as where the
         * core runs the iteration. */
        if (loop->dispatched == before && loop->expiries == expiries)
            ae__wake_pending_run(loop);
        return !loop->free_requested && loop->active > 0;
    }
    if (loop->prepare_count) {
        ae__hooks_run(loop, &loop->prepares);
        if (loop->free_requested)
            return 0;
    }
    uint64_t before = loop->dispatched;
    uint64_t timer_limit = loop->timer_seq;
    double timeout = wait_timeout(loop, flags);
    loop->time_stale = true;
    rc = loop->ops->wait(loop, loop->backend_state, timeout);
    if (loop->time_stale)
        ae__time_refresh(loop);
    if (rc < 0)
        return rc;
    ae__wake_pending_run(loop);
    if (loop->free_requested)
        return 0;
    ae__timers_run(loop, timer_limit);
    if (loop->dispatched == before && loop->idle_count && !loop->free_requested)
        ae__idle_run(loop);
    if (loop->check_count && !loop->free_requested)
        ae__hooks_run(loop, &loop->checks);
    return loop->active > 0;
}

/* A loop can be run from inside one of its callbacks only if its backend can
 * wait recursively. */
int ae__loop_reenter_check(ae_loop *loop, const char *fn)
{
    if (loop->busy && !(loop->ops->features & AE_BACKEND_F_REENTRANT))
        return ae__set_error(AE_ENOTSUP, "%s: called from a callback, and the %s loop cannot run recursively", fn,
                             loop->ops->name);
    return 0;
}

int ae__run_once_entered(ae_loop *loop)
{
    return run_once(loop, 0);
}

int ae_run_once(ae_loop *loop, int flags)
{
    if (!ae__loop_ok(loop, "ae_run_once"))
        return AE_EINVAL;
    if (loop->free_requested)
        return 0;
    int rc = ae__loop_reenter_check(loop, "ae_run_once");
    if (rc < 0)
        return rc;
    ae__loop_enter(loop);
    rc = run_once(loop, flags);
    ae__loop_leave(loop);
    return rc;
}

int ae_run(ae_loop *loop)
{
    if (!ae__loop_ok(loop, "ae_run"))
        return AE_EINVAL;
    if (loop->free_requested)
        return 0;
    int rc = ae__loop_reenter_check(loop, "ae_run");
    if (rc < 0)
        return rc;
    ae__loop_enter(loop);
    loop->run_depth++;
    while (loop->active > 0 && !loop->break_requested && !loop->free_requested) {
        rc = ae__loop_fork_check(loop);
        if (rc < 0)
            break;
        /* The native loop iterates until the iteration service stops it. */
        rc = loop->native_iter ? native_run(loop, AE_NATIVE_RUN, 0) : run_once(loop, 0);
        if (rc < 0)
            break;
        rc = 0;
    }
    loop->break_requested = false;
    loop->run_depth--;
    ae__loop_leave(loop);
    return rc;
}

void ae_break(ae_loop *loop)
{
    if (loop && loop->run_depth > 0) {
        loop->break_requested = true;
        native_break(loop);
        iter_hook_once(loop);
    }
}
