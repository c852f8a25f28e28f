/* What every kind of watcher shares beyond creation and freeing: pausing
 * and resuming it (ae_watcher_stop/start), whether it keeps the loop alive
 * (ref/unref), and its user pointer. */
#include "internal.h"

static bool user_watcher_ok(const ae_watcher *w, const char *fn)
{
    if (!ae__watcher_ok(w, 0, fn))
        return false;
    if (w->internal) {
        ae__set_error(AE_EINVAL, "%s: the loop's own watcher", fn);
        return false;
    }
    return true;
}

int ae_watcher_stop(ae_watcher *w)
{
    if (!user_watcher_ok(w, "ae_watcher_stop"))
        return AE_EINVAL;
    if (w->stopped)
        return 0;
    int rc = 0;
    switch (w->kind) {
    case AE_KIND_IO: rc = ae__io_pause(w, true); break;
    case AE_KIND_TIMER: rc = ae__timer_pause(w, true); break;
    case AE_KIND_SIGNAL: ae__signal_pause(w, true); break;
    case AE_KIND_CHILD: ae__child_pause(w, true); break;
    case AE_KIND_IDLE: ae__idle_pause(w, true); break;
    case AE_KIND_ASYNC: ae__async_pause(w, true); break;
    case AE_KIND_PREPARE:
    case AE_KIND_CHECK: rc = ae__hook_pause(w, true); break;
    }
    if (rc == 0)
        w->stopped = true;
    return rc;
}

int ae_watcher_start(ae_watcher *w)
{
    if (!user_watcher_ok(w, "ae_watcher_start"))
        return AE_EINVAL;
    /* A timer is armed afresh either way; the other kinds only resume. */
    if (!w->stopped && w->kind != AE_KIND_TIMER)
        return 0;
    bool was_stopped = w->stopped;
    w->stopped = false;
    int rc = 0;
    switch (w->kind) {
    case AE_KIND_IO: rc = ae__io_pause(w, false); break;
    case AE_KIND_TIMER: rc = ae__timer_pause(w, false); break;
    case AE_KIND_SIGNAL: ae__signal_pause(w, false); break;
    case AE_KIND_CHILD: ae__child_pause(w, false); break;
    case AE_KIND_IDLE: ae__idle_pause(w, false); break;
    case AE_KIND_ASYNC: ae__async_pause(w, false); break;
    case AE_KIND_PREPARE:
    case AE_KIND_CHECK: rc = ae__hook_pause(w, false); break;
    }
    if (rc < 0)
        w->stopped = was_stopped;
    return rc;
}

void ae_watcher_unref(ae_watcher *w)
{
    if (!user_watcher_ok(w, "ae_watcher_unref"))
        return;
    if (w->kind == AE_KIND_PREPARE || w->kind == AE_KIND_CHECK || w->unref)
        return; /* hooks never count */
    w->unref = true;
    if (w->active && --w->loop->active == 0 && w->loop->iter_lazy)
        ae__loop_drained(w->loop);
}

void ae_watcher_ref(ae_watcher *w)
{
    if (!user_watcher_ok(w, "ae_watcher_ref"))
        return;
    if (w->kind == AE_KIND_PREPARE || w->kind == AE_KIND_CHECK || !w->unref)
        return;
    w->unref = false;
    if (w->active)
        w->loop->active++;
}

void *ae_watcher_arg(const ae_watcher *w)
{
    if (!ae__watcher_ok(w, 0, "ae_watcher_arg"))
        return NULL;
    return w->arg;
}

void ae_watcher_set_arg(ae_watcher *w, void *arg)
{
    if (ae__watcher_ok(w, 0, "ae_watcher_set_arg"))
        w->arg = arg;
}
