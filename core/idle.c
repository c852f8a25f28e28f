/* Idle watchers: run in an iteration in which nothing else ran.
 *
 * Where the backend offers idle_update (our own loops), it keeps the native
 * loop from blocking while any exists, and the idle watchers run from the
 * iteration service when nothing ran in the iteration (idle_owed in loop.c);
 * on a backend that calls that service only on demand (libev), from a native
 * idle watcher that the native loop runs only when nothing of ours is
 * pending, through the idle_run service: no per-iteration work of the
 * core's. Else the native timer is armed "at once" while any idle watcher
 * exists, and the expire service runs them when nothing else ran. */
#include <stdlib.h>

#include "internal.h"

/* The first started idle watcher, or the last one gone. */
static void idle_first(ae_loop *loop)
{
    if (loop->native_idle)
        loop->ops->idle_update(loop, loop->backend_state, 1);
    else
        ae__reschedule(loop);
    ae__iter_hook_update(loop);
}

static void idle_last(ae_loop *loop)
{
    if (loop->native_idle)
        loop->ops->idle_update(loop, loop->backend_state, 0);
    else
        ae__reschedule(loop); /* back to the first timer's deadline */
}

ae_watcher *ae_idle(ae_loop *loop, ae_idle_cb cb, void *arg)
{
    if (!ae__loop_ok(loop, "ae_idle"))
        return NULL;
    if (!cb) {
        ae__set_error(AE_EINVAL, "ae_idle: callback is NULL");
        return NULL;
    }
    ae_watcher *w = ae__watcher_alloc(loop, AE_KIND_IDLE, arg);
    if (!w)
        return NULL;
    w->cb.idle = cb;
    ae__list_append(&loop->idle, w);
    if (loop->idle_count++ == 0)
        idle_first(loop);
    ae__watcher_activate(w);
    return w;
}

void ae__idle_stop(ae_watcher *w)
{
    ae__list_unlink(w->loop, &w->loop->idle, w);
    if (!w->stopped && --w->loop->idle_count == 0)
        idle_last(w->loop);
}

/* A stopped idle watcher no longer keeps the loop from blocking. */
void ae__idle_pause(ae_watcher *w, bool stop)
{
    ae_loop *loop = w->loop;
    if (stop) {
        if (--loop->idle_count == 0)
            idle_last(loop);
        ae__watcher_deactivate(w);
    } else {
        ae__watcher_activate(w);
        if (loop->idle_count++ == 0)
            idle_first(loop);
    }
}

int ae__idle_run(ae_loop *loop)
{
    int ran = 0;
    ae_cursor cur;
    ae__cursor_push(loop, &cur, &loop->idle);
    ae_watcher *w;
    while ((w = ae__cursor_take(loop, &cur))) {
        if (w->stopped)
            continue;
        ran++;
        w->cb.idle(w, w->arg);
    }
    ae__cursor_pop(loop, &cur);
    return ran;
}

/* The idle_run service (native_idle): the backend's native loop had
 * nothing else to run in this iteration. Only our own loops, inside run():
 * a callback's ae_loop_free waits for the run to end. */
int ae_backend_idle_run(ae_loop *loop)
{
    if (!loop->idle_count || loop->free_requested)
        return 1;
    loop->expiries++; /* the iteration ran something (ae_run_once's wake-up check) */
    loop->idle_ran = true;
    /* One watcher (the common case): no walk to keep valid, so no cursor;
     * watchers its callback makes wait for the next iteration, as in a
     * walk. It is started: idle_count counts it. */
    ae_watcher *w = loop->idle.head;
    if (w == loop->idle.tail)
        w->cb.idle(w, w->arg);
    else
        ae__idle_run(loop);
    return 1;
}
