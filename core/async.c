/* Async watchers: a wake-up sent from any thread, or from a signal handler,
 * that runs the callback on the loop's thread. A send sets the watcher's flag
 * and, if the loop's flag was not set yet, writes the loop's wake-up fd: one
 * system call for any number of sends the loop has not looked at yet, as
 * ev_async_send() makes. A send that finds the watcher's flag still set
 * writes nothing at all (as uv_async_send() does), which keeps the flag's
 * cache line shared between the senders and the loop:
 *
 * No lost wake-up. The sender: its own writes, fence F1, loads the flag. The
 * loop: clears the flag, fence F2, runs the callback. Both fences are
 * seq_cst, so one precedes the other in their single total order. F2 first:
 * the sender's load sees the clear (or a later send's set, whose callback
 * comes after the sender's fence, by the same argument), and the sender sets
 * the flag itself. F1 first: the callback's reads see the sender's writes
 * (C11 7.17.4: reads of atomics, and so a lock's or a release store's, after
 * F2 see what was written before F1). Without F1 a store still in the
 * sender's store buffer could miss the callback that took the flag.
 * tests/threads/asyncstress.c checks that no sender's last value is missed. */
#include <stdlib.h>

#include "internal.h"

ae_watcher *ae_async(ae_loop *loop, ae_async_cb cb, void *arg)
{
    if (!ae__loop_ok(loop, "ae_async"))
        return NULL;
    if (!cb) {
        ae__set_error(AE_EINVAL, "ae_async: callback is NULL");
        return NULL;
    }
    int rc = ae__wake_open(loop);
    if (rc == 0)
        rc = ae__wake_use(loop, true);
    if (rc < 0)
        return NULL;
    ae_watcher *w = ae__watcher_alloc(loop, AE_KIND_ASYNC, arg);
    if (!w) {
        ae__wake_use(loop, false);
        return NULL;
    }
    w->cb.async = cb;
    atomic_init(&w->u.async.sent, false);
    ae__list_append(&loop->asyncs, w);
    ae__watcher_activate(w);
    return w;
}

/* Async-signal-safe: atomics and write() only; so no message on failure. */
int ae_async_send(ae_watcher *w)
{
    /* Field by field, never one merged load: the loop's thread may write the
     * flags beside them meanwhile (ae_watcher_unref, ae_watcher_stop), which
     * a load of the whole word would read in a data race (ThreadSanitizer). */
    if (!w || __atomic_load_n(&w->magic, __ATOMIC_RELAXED) != AE_WATCHER_MAGIC ||
        __atomic_load_n(&w->kind, __ATOMIC_RELAXED) != AE_KIND_ASYNC)
        return AE_EINVAL;
    /* w is not touched after the flag is set: from then on the callback may
     * run, and free it. */
    ae_loop *loop = w->loop;
    atomic_thread_fence(memory_order_seq_cst); /* F1, see the top of the file */
    if (atomic_load_explicit(&w->u.async.sent, memory_order_relaxed))
        return 0; /* pending: the callback that takes it sees what came before F1 */
    if (atomic_exchange_explicit(&w->u.async.sent, true, memory_order_acq_rel))
        return 0; /* another sender set it meanwhile */
    if (!atomic_exchange_explicit(&loop->async_pending, true, memory_order_acq_rel))
        ae__wake(loop);
    return 0;
}

void ae__async_stop(ae_watcher *w)
{
    ae__list_unlink(w->loop, &w->loop->asyncs, w);
    ae__wake_use(w->loop, false);
}

void ae__async_pause(ae_watcher *w, bool stop)
{
    if (stop) {
        ae__watcher_deactivate(w);
        return;
    }
    ae__watcher_activate(w);
    /* Sent while stopped: the callback runs now that it is started. */
    if (atomic_load(&w->u.async.sent) && !atomic_exchange(&w->loop->async_pending, true))
        ae__wake(w->loop);
}

void ae__async_dispatch(ae_loop *loop)
{
    if (!atomic_exchange_explicit(&loop->async_pending, false, memory_order_acq_rel))
        return;
    ae_cursor cur;
    ae__cursor_push(loop, &cur, &loop->asyncs);
    ae_watcher *w;
    while ((w = ae__cursor_take(loop, &cur))) {
        /* A stopped watcher keeps its flag for ae_watcher_start(). */
        if (w->stopped || !atomic_exchange_explicit(&w->u.async.sent, false, memory_order_acq_rel))
            continue;
        atomic_thread_fence(memory_order_seq_cst); /* F2, see the top of the file */
        loop->dispatched++;
        w->cb.async(w, w->arg);
    }
    ae__cursor_pop(loop, &cur);
}
