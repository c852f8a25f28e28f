/* Idle watchers: run in an iteration in which nothing else ran. */
#include <stdlib.h>

#include "internal.h"

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
    /* The native timer is armed "at once" while any idle watcher exists:
     * only the first one changes that. */
    if (loop->idle_count++ == 0) {
        ae__reschedule(loop);
        ae__iter_hook_update(loop);
    }
    ae__watcher_activate(w);
    return w;
}

void ae__idle_stop(ae_watcher *w)
{
    ae__list_unlink(w->loop, &w->loop->idle, w);
    if (!w->stopped && --w->loop->idle_count == 0)
        ae__reschedule(w->loop); /* the last one: back to the first timer's deadline */
}

/* A stopped idle watcher no longer keeps the loop from blocking. */
void ae__idle_pause(ae_watcher *w, bool stop)
{
    if (stop) {
        w->loop->idle_count--;
        ae__watcher_deactivate(w);
    } else {
        w->loop->idle_count++;
        ae__watcher_activate(w);
        ae__iter_hook_update(w->loop);
    }
    ae__reschedule(w->loop);
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
