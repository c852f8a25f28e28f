#include <glib.h>
#include <stdlib.h>

#include "host.h"

const char *host_backend(void) { return "glib"; }

void *host_loop_new(void) { return g_main_context_new(); }

void host_loop_free(void *native) { g_main_context_unref(native); }

struct host_timer {
    int *fired;
};

static gboolean host_timer_cb(gpointer data)
{
    struct host_timer *h = data;
    (*h->fired)++;
    free(h);
    return G_SOURCE_REMOVE;
}

void host_timer(void *native, double after, int *fired)
{
    struct host_timer *h = malloc(sizeof *h);
    h->fired = fired;
    GSource *t = g_timeout_source_new((guint)(after * 1000));
    g_source_set_callback(t, host_timer_cb, h, NULL);
    g_source_attach(t, native);
    g_source_unref(t);
}

/* GLib has no "nothing keeps the loop alive": a GLib program runs
 * g_main_loop_run() until it quits. This host runs its context's iterations
 * the way g_main_loop_run() does (GLib's documented prepare, query, poll,
 * check, dispatch), and stops once no source asks for an fd or a timeout
 * (the first fd GLib returns is the context's own wake-up fd). */
void host_run(void *native)
{
    GMainContext *ctx = native;
    GPollFD fds[512];
    g_main_context_acquire(ctx);
    for (;;) {
        gint priority, timeout;
        g_main_context_prepare(ctx, &priority);
        gint n = g_main_context_query(ctx, priority, &timeout, fds, G_N_ELEMENTS(fds));
        g_assert(n <= (gint)G_N_ELEMENTS(fds));
        gint watched = 0;
        for (gint i = 0; i < n; i++)
            watched += fds[i].events != 0;
        if (timeout < 0 && watched <= 1) {
            g_main_context_check(ctx, priority, fds, n); /* ends the iteration prepare began */
            break;
        }
        g_poll(fds, (guint)n, timeout);
        if (g_main_context_check(ctx, priority, fds, n))
            g_main_context_dispatch(ctx);
    }
    g_main_context_release(ctx);
}

void host_run_once(void *native) { g_main_context_iteration(native, TRUE); }

void *host_loop_new_forkcheck(void) { return NULL; }
