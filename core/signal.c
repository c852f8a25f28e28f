/* Signal watchers. anyevent owns the process-wide disposition of every signal
 * it watches: one handler, installed with the first watcher of a signal (in
 * any loop) and replaced by the saved disposition when the last goes. The
 * handler only sets atomic flags and writes to the wake-up fd of each loop
 * that watches the signal, so it is async-signal-safe.
 *
 * A backend with native signals (signal_start) catches a signal for its loop
 * itself and reports it through ae_backend_signal_ready(), which delivers it
 * the same way, to every loop. Where both handlers want one signal, the one
 * installed last catches it for all; when the backend lets go of a signal
 * other loops still watch, ours is put back. */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

static pthread_mutex_t sig_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned sig_refs[NSIG];            /* watchers of each signal, all loops */
static struct sigaction sig_saved[NSIG];   /* the disposition before the first */
static ae_sig_node *_Atomic sig_nodes;     /* loops that watch any signal */
static atomic_int sig_in_handler;          /* handlers running now, any thread */

/* The handler is async-signal-safe only if these never take a lock. */
_Static_assert(ATOMIC_INT_LOCK_FREE == 2 && ATOMIC_BOOL_LOCK_FREE == 2 && ATOMIC_POINTER_LOCK_FREE == 2,
               "the signal handler needs lock-free atomics");

static void sig_handler(int signum)
{
    int saved_errno = errno;
    atomic_fetch_add(&sig_in_handler, 1);
    for (ae_sig_node *n = atomic_load(&sig_nodes); n; n = atomic_load(&n->next)) {
        if (!atomic_load(&n->watching[signum]))
            continue;
        atomic_store(&n->pending[signum], true);
        atomic_store(&n->any_pending, true);
        int fd = atomic_load(&n->wake_fd);
        if (fd >= 0) {
            uint64_t one = 1;
            ssize_t r = write(fd, &one, sizeof one);
            (void)r;
        }
    }
    atomic_fetch_sub(&sig_in_handler, 1);
    errno = saved_errno;
}

void ae__signal_atfork(enum ae_fork_phase phase)
{
    if (phase == AE_FORK_PREPARE) {
        pthread_mutex_lock(&sig_lock);
        return;
    }
    /* The handlers that were running on other threads at fork() are not
     * running in the child: it has no other threads. */
    if (phase == AE_FORK_CHILD)
        atomic_store(&sig_in_handler, 0);
    pthread_mutex_unlock(&sig_lock);
}

/* Whether our handler is the one installed for signum now. */
static bool handler_is_ours(int signum)
{
    struct sigaction cur;
    return sigaction(signum, NULL, &cur) == 0 && !(cur.sa_flags & SA_SIGINFO) && cur.sa_handler == sig_handler;
}

/* Under sig_lock: install our handler for signum, keeping what was there. */
static int handler_install(int signum)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = sig_handler;
    sa.sa_flags = SA_RESTART;
    sigfillset(&sa.sa_mask);
    if (sigaction(signum, &sa, &sig_saved[signum]) < 0)
        return ae__set_errno("ae_signal: sigaction");
    return 0;
}

/* native: the backend catches signum for this loop (signal_start said so),
 * so only the delivery to the loop is set up here, no handler. */
int ae__signal_watch(ae_loop *loop, int signum, bool native)
{
    int rc = ae__wake_open(loop);
    if (rc == 0)
        rc = ae__wake_use(loop, true);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&sig_lock);
    if (!loop->sig.linked) {
        atomic_store(&loop->sig.next, atomic_load(&sig_nodes));
        atomic_store(&sig_nodes, &loop->sig);
        loop->sig.linked = true;
    }
    /* A delivery marked while the loop last watched signum and never
     * dispatched (its watchers went first) is not this watch's: without
     * this, whether a new watcher is called for it depended on where in
     * the iteration the backend dispatches signals. */
    if (atomic_load(&loop->sig.watching[signum]) == 0)
        atomic_store(&loop->sig.pending[signum], false);
    /* Flag first, handler second: a signal right after the sigaction is seen. */
    atomic_fetch_add(&loop->sig.watching[signum], 1);
    if (!native) {
        if (sig_refs[signum] == 0 && (rc = handler_install(signum)) < 0) {
            atomic_fetch_sub(&loop->sig.watching[signum], 1);
            pthread_mutex_unlock(&sig_lock);
            ae__wake_use(loop, false);
            return rc;
        }
        sig_refs[signum]++;
    }
    pthread_mutex_unlock(&sig_lock);
    return 0;
}

void ae__signal_unwatch(ae_loop *loop, int signum, bool native)
{
    pthread_mutex_lock(&sig_lock);
    atomic_fetch_sub(&loop->sig.watching[signum], 1);
    /* A backend that installed its own handler over ours owns the
     * disposition now: leave it to that backend to restore. */
    if (!native && --sig_refs[signum] == 0 && handler_is_ours(signum))
        sigaction(signum, &sig_saved[signum], NULL);
    pthread_mutex_unlock(&sig_lock);
    ae__wake_use(loop, false);
}

/* A backend stopped its native watch of signum, and may have reset the
 * disposition under loops that still need ours: take it back, keeping what
 * the backend left as the disposition to restore at the end. */
static void handler_reclaim(int signum)
{
    pthread_mutex_lock(&sig_lock);
    if (sig_refs[signum] > 0 && !handler_is_ours(signum))
        handler_install(signum);
    pthread_mutex_unlock(&sig_lock);
}

void ae_backend_signal_ready(ae_loop *loop, int signum)
{
    (void)loop;
    if (signum > 0 && signum < NSIG)
        sig_handler(signum); /* the same delivery, to every loop watching signum */
}

static void signal_native_stop(ae_loop *loop, int signum)
{
    if (!loop->sig_native[signum])
        return;
    loop->sig_native[signum] = false;
    /* A loop whose renewal after fork() failed must not touch the parent's
     * kernel state: it is only freed. */
    if (ae__loop_fork_check(loop) == 0)
        loop->ops->signal_stop(loop, loop->backend_state, signum);
    handler_reclaim(signum);
}

ae_watcher *ae_signal(ae_loop *loop, int signum, ae_signal_cb cb, void *arg)
{
    if (!ae__loop_ok(loop, "ae_signal"))
        return NULL;
    if (!cb) {
        ae__set_error(AE_EINVAL, "ae_signal: callback is NULL");
        return NULL;
    }
    if (signum <= 0 || signum >= NSIG) {
        ae__set_error(AE_ESIGNAL, "ae_signal: %d is not a signal number (1..%d)", signum, NSIG - 1);
        return NULL;
    }
    if (signum == SIGKILL || signum == SIGSTOP) {
        ae__set_error(AE_ESIGNAL, "ae_signal: %s cannot be caught", signum == SIGKILL ? "SIGKILL" : "SIGSTOP");
        return NULL;
    }
#ifdef SIGRTMIN
    if (signum > 31 && signum < SIGRTMIN) {
        ae__set_error(AE_ESIGNAL, "ae_signal: signal %d is reserved by the C library", signum);
        return NULL;
    }
#endif
    ae_watcher *w = ae__watcher_alloc(loop, AE_KIND_SIGNAL, arg);
    if (!w)
        return NULL;
    w->cb.signal = cb;
    w->k.signum = signum;
    /* The loop's first watcher of signum asks the backend to catch it and
     * enters the loop in the process-wide state, under its lock; the others
     * only join the loop's list, with no lock and no system call. */
    if (!loop->signals[signum].head) {
        if (loop->ops->signal_start) {
            int rc = ae__loop_fork_check(loop);
            if (rc == 0)
                rc = loop->ops->signal_start(loop, loop->backend_state, signum);
            if (rc < 0 && rc != AE_ENOTSUP) {
                ae__watcher_release(w);
                return NULL;
            }
            loop->sig_native[signum] = rc == 0;
        }
        if (ae__signal_watch(loop, signum, loop->sig_native[signum]) < 0) {
            signal_native_stop(loop, signum);
            ae__watcher_release(w);
            return NULL;
        }
    }
    ae__list_append(&loop->signals[signum], w);
    ae__watcher_activate(w);
    return w;
}

void ae__signal_stop(ae_watcher *w)
{
    ae_loop *loop = w->loop;
    int signum = w->k.signum;
    ae__list_unlink(loop, &loop->signals[signum], w);
    if (!loop->signals[signum].head) { /* the loop's last watcher of signum */
        ae__signal_unwatch(loop, signum, loop->sig_native[signum]);
        signal_native_stop(loop, signum);
    }
}

/* A stopped signal watcher stays registered (the disposition stays ours)
 * and misses what arrives meanwhile: signals are not queued. */
void ae__signal_pause(ae_watcher *w, bool stop)
{
    if (stop)
        ae__watcher_deactivate(w);
    else
        ae__watcher_activate(w);
}

void ae__signals_dispatch(ae_loop *loop)
{
    if (!atomic_exchange(&loop->sig.any_pending, false))
        return;
    for (int s = 1; s < NSIG && !loop->free_requested; s++) {
        if (!atomic_exchange(&loop->sig.pending[s], false))
            continue;
        if (s == SIGCHLD && loop->child_sigchld)
            ae__children_reap();
        ae_cursor cur;
        ae__cursor_push(loop, &cur, &loop->signals[s]);
        ae_watcher *w;
        while ((w = ae__cursor_take(loop, &cur))) {
            if (w->stopped)
                continue;
            loop->dispatched++;
            w->cb.signal(w, s, w->arg);
        }
        ae__cursor_pop(loop, &cur);
    }
}

void ae__signal_loop_free(ae_loop *loop)
{
    if (!loop->sig.linked)
        return;
    pthread_mutex_lock(&sig_lock);
    ae_sig_node *_Atomic *link = &sig_nodes;
    for (ae_sig_node *n; (n = atomic_load(link)); link = &n->next) {
        if (n == &loop->sig) {
            atomic_store(link, atomic_load(&n->next));
            break;
        }
    }
    loop->sig.linked = false;
    pthread_mutex_unlock(&sig_lock);
    /* A handler on another thread may still be reading the node. */
    ae__signal_handlers_wait();
}

void ae__signal_handlers_wait(void)
{
    while (atomic_load(&sig_in_handler) > 0)
        sched_yield();
}
