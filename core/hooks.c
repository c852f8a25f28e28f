/* Prepare and check watchers: callbacks run once per iteration, just before
 * the loop waits (prepare) or after the iteration's event callbacks (check).
 * They never keep the loop alive, and do not count as events (idle watchers
 * still run in an iteration in which only hooks ran). */
#include <stdlib.h>

#include "internal.h"

static ae_watcher *hook_new(ae_loop *loop, enum ae_kind kind, ae_idle_cb cb, void *arg, const char *fn)
{
    if (!ae__loop_ok(loop, fn))
        return NULL;
    if (!cb) {
        ae__set_error(AE_EINVAL, "%s: callback is NULL", fn);
        return NULL;
    }
    /* The host's native loop would have to call them: not built yet. */
    if (loop->adopted) {
        ae__set_error(AE_ENOTSUP, "%s: not available on an adopted loop (the host runs the iteration)", fn);
        return NULL;
    }
    ae_watcher *w = ae__watcher_alloc(loop, kind, arg);
    if (!w)
        return NULL;
    w->cb.idle = cb;
    w->unref = true; /* never counts in loop->active, whatever ref/unref say */
    if (kind == AE_KIND_PREPARE) {
        ae__list_append(&loop->prepares, w);
        loop->prepare_count++;
    } else {
        ae__list_append(&loop->checks, w);
        loop->check_count++;
    }
    ae__watcher_activate(w);
    return w;
}

ae_watcher *ae_prepare(ae_loop *loop, ae_idle_cb cb, void *arg)
{
    return hook_new(loop, AE_KIND_PREPARE, cb, arg, "ae_prepare");
}

ae_watcher *ae_check(ae_loop *loop, ae_idle_cb cb, void *arg)
{
    return hook_new(loop, AE_KIND_CHECK, cb, arg, "ae_check");
}

static size_t *hook_count(ae_watcher *w)
{
    return w->kind == AE_KIND_PREPARE ? &w->loop->prepare_count : &w->loop->check_count;
}

void ae__hook_stop(ae_watcher *w)
{
    ae_loop *loop = w->loop;
    ae__list_unlink(loop, w->kind == AE_KIND_PREPARE ? &loop->prepares : &loop->checks, w);
    if (!w->stopped)
        (*hook_count(w))--;
}

void ae__hook_pause(ae_watcher *w, bool stop)
{
    if (stop) {
        (*hook_count(w))--;
        ae__watcher_deactivate(w);
    } else {
        (*hook_count(w))++;
        ae__watcher_activate(w);
    }
}

void ae__hooks_run(ae_loop *loop, ae_list *hooks)
{
    ae_cursor cur;
    ae__cursor_push(loop, &cur, hooks->head);
    ae_watcher *w;
    while ((w = ae__cursor_take(loop, &cur)))
        if (!w->stopped)
            w->cb.idle(w, w->arg);
    ae__cursor_pop(loop, &cur);
}
