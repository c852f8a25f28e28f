/* Child watchers, generic on top of the core's SIGCHLD watching, or on a
 * backend's native watching of one pid (child_start), which only says when to
 * look: the reaping and the reports are the same either way.
 *
 * Reaping is process-wide: whichever loop sees SIGCHLD first reaps, under one
 * lock, only the pids that some watcher asks for (every child only if a pid 0
 * watcher exists), and hands each status to every loop that has a watcher for
 * it, through the loop's inbox and wake-up fd.
 *
 * The reapers find the watchers through the process-wide list of loops that
 * have listed ones, and each such loop's own list of child watchers: a
 * watcher carries no process-wide links, and the lists' links change only
 * under child_lock. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "internal.h"

static pthread_mutex_t child_lock = PTHREAD_MUTEX_INITIALIZER;
static ae_loop *child_loops; /* every loop with listed child watchers */
static size_t child_any;     /* listed pid 0 watchers, all loops */

void ae__child_atfork(enum ae_fork_phase phase)
{
    if (phase == AE_FORK_PREPARE)
        pthread_mutex_lock(&child_lock);
    else
        pthread_mutex_unlock(&child_lock);
}

/* Under child_lock: a listed watcher of the loop reports pid's exit. */
static bool loop_wants(const ae_loop *loop, pid_t pid)
{
    for (const ae_watcher *w = loop->children.head; w; w = w->next)
        if (w->u.child.listed && (w->k.pid == pid || w->k.pid == 0))
            return true;
    return false;
}

/* Under child_lock: into the inbox of every loop that wants it. */
static void deliver(pid_t pid, int status)
{
    for (ae_loop *loop = child_loops; loop; loop = loop->child_loop_next) {
        if (!loop_wants(loop, pid))
            continue;
        if (loop->inbox_len == loop->inbox_cap) {
            size_t cap = loop->inbox_cap ? loop->inbox_cap * 2 : 16;
            ae_child_record *r = realloc(loop->inbox, cap * sizeof *r);
            if (!r) {
                /* Nowhere to put it and no caller to tell: say so. */
                fprintf(stderr, "anyevent: out of memory: status of child %d lost\n", (int)pid);
                continue;
            }
            loop->inbox = r;
            loop->inbox_cap = cap;
        }
        loop->inbox[loop->inbox_len++] = (ae_child_record){pid, status};
        atomic_store(&loop->inbox_pending, true);
        ae__wake(loop);
    }
}

/* Under child_lock. */
static bool pid_watched(pid_t pid)
{
    for (const ae_loop *loop = child_loops; loop; loop = loop->child_loop_next)
        for (const ae_watcher *w = loop->children.head; w; w = w->next)
            if (w->u.child.listed && w->k.pid == pid)
                return true;
    return false;
}

/* Under child_lock: reap the watched children that exited. */
static void reap_watched(void)
{
    int status;
    /* Look at the exited children without reaping them (WNOWAIT): one
     * system call per child in the usual case that they are all watched. */
    for (;;) {
        siginfo_t info;
        memset(&info, 0, sizeof info);
        if (waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) < 0 || info.si_pid == 0)
            return; /* none has exited */
        if (!pid_watched(info.si_pid))
            break; /* other code's child: leave it, ask pid by pid */
        if (waitpid(info.si_pid, &status, WNOHANG) <= 0)
            return;
        deliver(info.si_pid, status);
    }
    /* No pid 0 watcher is listed here (child_any is 0). */
    for (const ae_loop *loop = child_loops; loop; loop = loop->child_loop_next) {
        pid_t last = 0;
        for (const ae_watcher *w = loop->children.head; w; w = w->next) {
            pid_t pid = w->k.pid;
            if (!w->u.child.listed || pid == last) /* watchers of one pid are usually next to each other */
                continue;
            last = pid;
            if (waitpid(pid, &status, WNOHANG) > 0)
                deliver(pid, status);
        }
    }
}

void ae__children_reap(void)
{
    pthread_mutex_lock(&child_lock);
    if (child_any) {
        int status;
        pid_t pid;
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
            deliver(pid, status);
    } else {
        reap_watched();
    }
    pthread_mutex_unlock(&child_lock);
}

/* Sets up what tells the loop that w's child may have exited: the backend's
 * native watch of the pid, or else the core's SIGCHLD watch. */
static int child_watch(ae_watcher *w)
{
    ae_loop *loop = w->loop;
    if (w->k.pid > 0 && loop->ops->child_start) {
        int rc = ae__loop_fork_check(loop);
        if (rc == 0)
            rc = loop->ops->child_start(loop, loop->backend_state, w->k.pid);
        if (rc == 0) {
            /* Reports arrive through the inbox and the wake-up fd. */
            if ((rc = ae__wake_open(loop)) == 0 && (rc = ae__wake_use(loop, true)) == 0) {
                w->u.child.native = true;
                return 0;
            }
            loop->ops->child_stop(loop, loop->backend_state, w->k.pid);
        }
        if (rc != AE_ENOTSUP)
            return rc;
    }
    if (loop->child_sigchld == 0) {
        int rc = ae__signal_watch(loop, SIGCHLD, false);
        if (rc < 0)
            return rc;
    }
    loop->child_sigchld++;
    return 0;
}

static void child_unwatch(ae_watcher *w)
{
    ae_loop *loop = w->loop;
    if (w->u.child.native) {
        w->u.child.native = false;
        if (ae__loop_fork_check(loop) == 0) /* else: a broken loop, only freed */
            loop->ops->child_stop(loop, loop->backend_state, w->k.pid);
        ae__wake_use(loop, false);
    } else if (--loop->child_sigchld == 0) {
        ae__signal_unwatch(loop, SIGCHLD, false);
    }
}

void ae_backend_child_ready(ae_loop *loop, pid_t pid)
{
    (void)loop;
    int status;
    pthread_mutex_lock(&child_lock);
    /* Reaped already if another loop's SIGCHLD got there first. */
    if (pid > 0 && pid_watched(pid) && waitpid(pid, &status, WNOHANG) > 0)
        deliver(pid, status);
    pthread_mutex_unlock(&child_lock);
}

ae_watcher *ae_child(ae_loop *loop, pid_t pid, ae_child_cb cb, void *arg)
{
    if (!ae__loop_ok(loop, "ae_child"))
        return NULL;
    if (!cb) {
        ae__set_error(AE_EINVAL, "ae_child: callback is NULL");
        return NULL;
    }
    if (pid < 0) {
        ae__set_error(AE_EINVAL, "ae_child: pid %d: must be a child's pid or 0 for any", (int)pid);
        return NULL;
    }
    /* A pid that is not our child would never report: say so now. */
    siginfo_t info;
    memset(&info, 0, sizeof info);
    if (pid > 0 && waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT) < 0 && errno == ECHILD) {
        ae__set_error(AE_EINVAL, "ae_child: pid %d is not a child of this process, or was reaped already",
                      (int)pid);
        return NULL;
    }
    ae_watcher *w = ae__watcher_alloc(loop, AE_KIND_CHILD, arg);
    if (!w)
        return NULL;
    w->cb.child = cb;
    w->k.pid = pid;
    if (child_watch(w) < 0) {
        ae__watcher_release(w);
        return NULL;
    }
    pthread_mutex_lock(&child_lock);
    ae__list_append(&loop->children, w);
    w->u.child.listed = true;
    if (loop->child_count++ == 0) {
        loop->child_loop_prev = NULL;
        loop->child_loop_next = child_loops;
        if (child_loops)
            child_loops->child_loop_prev = loop;
        child_loops = loop;
    }
    if (pid == 0)
        child_any++;
    pthread_mutex_unlock(&child_lock);
    ae__watcher_activate(w);
    /* The child may have exited already, with its SIGCHLD long gone: look
     * at the next iteration (one wake-up for any number of new watchers). */
    if (!atomic_exchange(&loop->reap_requested, true))
        ae__wake(loop);
    return w;
}

/* Under child_lock: take a listed watcher out of reaping (it reported, or
 * it is freed); child_unwatch follows, outside the lock. */
static void unlist_locked(ae_watcher *w)
{
    ae_loop *loop = w->loop;
    w->u.child.listed = false;
    if (w->k.pid == 0)
        child_any--;
    if (--loop->child_count == 0) {
        if (loop->child_loop_prev)
            loop->child_loop_prev->child_loop_next = loop->child_loop_next;
        else
            child_loops = loop->child_loop_next;
        if (loop->child_loop_next)
            loop->child_loop_next->child_loop_prev = loop->child_loop_prev;
        loop->child_loop_next = loop->child_loop_prev = NULL;
    }
}

static void child_unlist(ae_watcher *w)
{
    pthread_mutex_lock(&child_lock);
    unlist_locked(w);
    pthread_mutex_unlock(&child_lock);
    child_unwatch(w);
}

/* Forget the exits held for w (it is freed). */
static void held_drop(ae_loop *loop, ae_watcher *w)
{
    size_t kept = 0;
    for (size_t i = 0; i < loop->child_held_len; i++)
        if (loop->child_held[i].w != w)
            loop->child_held[kept++] = loop->child_held[i];
    loop->child_held_len = kept;
    w->u.child.held = 0;
}

void ae__child_stop(ae_watcher *w)
{
    ae_loop *loop = w->loop;
    bool listed = w->u.child.listed;
    if (loop->child_count) { /* reapers walk the loop's list */
        pthread_mutex_lock(&child_lock);
        if (listed)
            unlist_locked(w);
        ae__list_unlink(loop, &loop->children, w);
        pthread_mutex_unlock(&child_lock);
    } else {
        ae__list_unlink(loop, &loop->children, w);
    }
    if (listed)
        child_unwatch(w);
    if (w->u.child.replay_wake)
        ae__wake_use(loop, false);
    if (w->u.child.held)
        held_drop(loop, w);
}

/* A stopped watcher stays in reaping: what its child reports meanwhile is
 * held, and reported from the loop once it is started again. */
void ae__child_pause(ae_watcher *w, bool stop)
{
    if (stop) {
        ae__watcher_deactivate(w);
        return;
    }
    if (w->u.child.listed || w->u.child.held)
        ae__watcher_activate(w);
    if (w->u.child.held) {
        /* Unlisted once reported, the watcher may have let go of the
         * wake-up fd: hold it until the replay is done. */
        if (!w->u.child.replay_wake && ae__wake_use(w->loop, true) == 0)
            w->u.child.replay_wake = true;
        w->loop->child_replay = true;
        atomic_store(&w->loop->inbox_pending, true);
        ae__wake(w->loop);
    }
}

/* Exits are held by the loop, not the watcher: a stopped watcher that
 * misses one is rare, and each watcher keeps only a count. */
static void child_hold(ae_watcher *w, const ae_child_record *rec)
{
    ae_loop *loop = w->loop;
    /* Nowhere to put it and no caller to tell: say so. */
    if (w->u.child.held == UINT32_MAX) {
        fprintf(stderr, "anyevent: 2^32 exits held for one watcher: status of child %d lost\n", (int)rec->pid);
        return;
    }
    if (loop->child_held_len == loop->child_held_cap) {
        size_t cap = loop->child_held_cap ? loop->child_held_cap * 2 : 4;
        ae_child_held *h = realloc(loop->child_held, cap * sizeof *h);
        if (!h) {
            fprintf(stderr, "anyevent: out of memory: status of child %d lost\n", (int)rec->pid);
            return;
        }
        loop->child_held = h;
        loop->child_held_cap = cap;
    }
    loop->child_held[loop->child_held_len++] = (ae_child_held){w, *rec};
    w->u.child.held++;
}

/* w's oldest held exit, taken out of the loop's list; w holds one. */
static ae_child_record held_take(ae_loop *loop, ae_watcher *w)
{
    size_t i = 0;
    while (loop->child_held[i].w != w)
        i++;
    ae_child_record rec = loop->child_held[i].rec;
    loop->child_held_len--;
    memmove(loop->child_held + i, loop->child_held + i + 1, (loop->child_held_len - i) * sizeof *loop->child_held);
    w->u.child.held--;
    return rec;
}

/* The exits held while watchers were stopped, one per watcher and round;
 * another round follows while any is left. */
static void children_replay(ae_loop *loop)
{
    loop->child_replay = false;
    ae_cursor cur;
    ae__cursor_push(loop, &cur, &loop->children);
    ae_watcher *w;
    while ((w = ae__cursor_take(loop, &cur))) {
        if (w->stopped || !w->u.child.held)
            continue;
        ae_child_record rec = held_take(loop, w);
        if (w->u.child.held) {
            loop->child_replay = true;
            atomic_store(&loop->inbox_pending, true);
            ae__wake(loop);
        } else {
            if (w->u.child.replay_wake) {
                w->u.child.replay_wake = false;
                ae__wake_use(loop, false);
            }
            if (!w->u.child.listed)
                ae__watcher_deactivate(w); /* reported: inactive, still the caller's */
        }
        loop->dispatched++;
        w->cb.child(w, rec.pid, rec.status, w->arg);
    }
    ae__cursor_pop(loop, &cur);
}

static bool inbox_take(ae_loop *loop, ae_child_record *rec)
{
    bool got = false;
    pthread_mutex_lock(&child_lock);
    if (loop->inbox_head < loop->inbox_len) {
        *rec = loop->inbox[loop->inbox_head++];
        got = true;
    }
    if (loop->inbox_head == loop->inbox_len)
        loop->inbox_head = loop->inbox_len = 0;
    pthread_mutex_unlock(&child_lock);
    return got;
}

void ae__children_dispatch(ae_loop *loop)
{
    if (atomic_exchange(&loop->reap_requested, false) && loop->child_count)
        ae__children_reap();
    if (!atomic_exchange(&loop->inbox_pending, false))
        return;
    if (loop->child_replay)
        children_replay(loop);
    ae_child_record rec;
    while (!loop->free_requested && inbox_take(loop, &rec)) {
        ae_cursor cur;
        ae__cursor_push(loop, &cur, &loop->children);
        ae_watcher *w;
        while ((w = ae__cursor_take(loop, &cur))) {
            if (!w->u.child.listed || (w->k.pid != 0 && w->k.pid != rec.pid))
                continue;
            if (w->k.pid != 0)
                child_unlist(w); /* reported */
            if (w->stopped) {
                child_hold(w, &rec);
                continue;
            }
            if (w->k.pid != 0)
                ae__watcher_deactivate(w); /* inactive, still the caller's */
            loop->dispatched++;
            w->cb.child(w, rec.pid, rec.status, w->arg);
        }
        ae__cursor_pop(loop, &cur);
    }
}

void ae__child_reapers_wait(void)
{
    pthread_mutex_lock(&child_lock);
    pthread_mutex_unlock(&child_lock);
}

void ae__child_loop_free(ae_loop *loop)
{
    /* The loop's watchers are gone, so no reaper adds to its inbox any more;
     * taking the lock waits out one that is still busy with it. */
    pthread_mutex_lock(&child_lock);
    loop->inbox_head = loop->inbox_len = 0;
    pthread_mutex_unlock(&child_lock);
    free(loop->child_held); /* emptied as the watchers were freed */
    loop->child_held = NULL;
    loop->child_held_len = loop->child_held_cap = 0;
}
