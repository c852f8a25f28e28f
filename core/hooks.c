/* Prepare and check watchers: callbacks run once per iteration, just before
 * the loop waits (prepare) or after the iteration's event callbacks (check).
 * They never keep the loop alive, and do not count as events (idle watchers
 * still run in an iteration in which only hooks ran).
 *
 * Where the core runs the iteration (ae_run, ae_run_once, ae_cv_recv), it
 * runs the hooks itself. On an adopted loop the host runs the native loop:
 * there the backend's native prepare and check watchers call the hooks_run
 * service (hooks_update starts them while the loop has a started hook of
 * that kind). */
#include <stdlib.h>

#include "internal.h"

static bool *hook_native_on(ae_loop *loop, enum ae_kind kind)
{
    return kind == AE_KIND_PREPARE ? &loop->native_prepare_on : &loop->native_check_on;
}

/* An adopted loop: have the backend's native hook of kind called, or no
 * longer, to match whether a started hook of that kind exists. */
static int hooks_native_sync(ae_loop *loop, enum ae_kind kind)
{
    if (!loop->adopted)
        return 0;
    size_t count = kind == AE_KIND_PREPARE ? loop->prepare_count : loop->check_count;
    bool *on = hook_native_on(loop, kind);
    if ((count > 0) == *on)
        return 0;
    int rc = loop->ops->hooks_update(loop, loop->backend_state,
                                     kind == AE_KIND_PREPARE ? AE_BACKEND_HOOK_PREPARE : AE_BACKEND_HOOK_CHECK,
                                     count > 0);
    if (rc < 0)
        return rc;
    *on = count > 0;
    return 0;
}

static ae_watcher *hook_new(ae_loop *loop, enum ae_kind kind, ae_idle_cb cb, void *arg, const char *fn)
{
    if (!ae__loop_ok(loop, fn))
        return NULL;
    if (!cb) {
        ae__set_error(AE_EINVAL, "%s: callback is NULL", fn);
        return NULL;
    }
    /* The host's native loop has to call them: the backend must offer it. */
    if (loop->adopted && !(AE_BACKEND_OPS_HAS(loop->ops, hooks_update) && loop->ops->hooks_update)) {
        ae__set_error(AE_ENOTSUP,
                      "%s: the %s backend cannot run hooks in a loop the host runs (no native prepare and check)",
                      fn, loop->ops->name);
        return NULL;
    }
    ae_watcher *w = ae__watcher_alloc(loop, kind, arg);
    if (!w)
        return NULL;
    w->cb.idle = cb;
    w->unref = true; /* never counts in loop->active, whatever ref/unref say */
    size_t *count = kind == AE_KIND_PREPARE ? &loop->prepare_count : &loop->check_count;
    (*count)++;
    int rc = hooks_native_sync(loop, kind);
    if (rc < 0) {
        (*count)--;
        ae__watcher_release(w);
        return NULL;
    }
    ae__list_append(kind == AE_KIND_PREPARE ? &loop->prepares : &loop->checks, w);
    ae__watcher_activate(w);
    ae__iter_hook_update(loop);
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
    if (!w->stopped) {
        (*hook_count(w))--;
        (void)hooks_native_sync(loop, (enum ae_kind)w->kind); /* stopping a native watcher does not fail */
    }
}

int ae__hook_pause(ae_watcher *w, bool stop)
{
    size_t *count = hook_count(w);
    if (stop) {
        (*count)--;
        (void)hooks_native_sync(w->loop, (enum ae_kind)w->kind);
        ae__watcher_deactivate(w);
        return 0;
    }
    (*count)++;
    int rc = hooks_native_sync(w->loop, (enum ae_kind)w->kind);
    if (rc < 0) {
        (*count)--;
        return rc;
    }
    ae__watcher_activate(w);
    ae__iter_hook_update(w->loop);
    return 0;
}

void ae__hooks_run(ae_loop *loop, ae_list *hooks)
{
    ae_cursor cur;
    ae__cursor_push(loop, &cur, hooks);
    ae_watcher *w;
    while ((w = ae__cursor_take(loop, &cur)))
        if (!w->stopped)
            w->cb.idle(w, w->arg);
    ae__cursor_pop(loop, &cur);
}

/* The hooks_run service: the host's native loop reached a hook point. */
int ae_backend_hooks_run(ae_loop *loop, int kind)
{
    /* Inside an iteration of the core's own (ae_run on the adopted loop, a
     * nested wait), which runs the hooks itself; or the loop is going. */
    if (loop->busy || loop->free_requested)
        return 1;
    ae_list *hooks = kind == AE_BACKEND_HOOK_PREPARE ? &loop->prepares : &loop->checks;
    if (!hooks->head)
        return 1;
    loop->time_stale = true; /* the host's iteration: the time is read again when needed */
    ae__loop_enter(loop);
    ae__hooks_run(loop, hooks);
    bool freeing = loop->free_requested;
    ae__loop_leave(loop); /* frees the loop if a hook asked for it; re-arms the native timer */
    return !freeing;
}
