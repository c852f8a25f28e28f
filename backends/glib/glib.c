/* The GLib backend: one GSource per loop on a GMainContext, which carries
 * every fd the core watches (one GPollFD each, in the core's per-fd memory)
 * and the core's next timer deadline (its prepare gives GLib the poll
 * timeout, its check sees the deadline pass). GLib's own timeout, unix
 * signal and child sources are not used: the core keeps timers, signals
 * and children for every backend.
 *
 * GLib's registration calls allocate (g_source_add_unix_fd a GPollFD,
 * g_source_add_poll a record of its own), so each fd is added once, in
 * fd_init, and its interest changed in place afterwards: fd_update only
 * writes the GPollFD's events, which GLib reads again at every iteration
 * (its fd must not change: GLib keeps the poll records sorted by fd). An
 * fd without interest stays in the poll with no events; poll(2) still
 * reports a hang-up or a closed fd there, so one that does is taken out of
 * the source until it is watched again (the one case where fd_update calls
 * GLib, and allocates). */
#include <glib.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/eventfd.h>
#endif

#include "../plugin.h"

const ae_backend_services *ae_core;

/* GLib takes process-wide locks of its own when it makes or frees a
 * context, and (before 2.76) in its slice allocator (a thread's first
 * iteration: thread_known), and has no fork handlers: a child forked while
 * another thread held one would hang at its first such call. Every such
 * call of this plugin is made under glb_lock, which fork() waits for
 * (atfork_prepare): then no thread of ours holds one of GLib's at fork.
 * GLib calls made by the program itself are its own. */
static pthread_mutex_t glb_lock = PTHREAD_MUTEX_INITIALIZER;
static void atfork_prepare(void) { pthread_mutex_lock(&glb_lock); }
static void atfork_release(void) { pthread_mutex_unlock(&glb_lock); }

/* Registered at the first loop, not when the plugin is loaded: the core
 * loads every installed plugin to choose a backend and to find the
 * program's own library, and a program that never makes a GLib loop should
 * not carry our fork handlers. Before that loop this plugin has made no
 * GLib call that takes a lock. */
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static int atfork_failed;
static void atfork_register_once(void)
{
    atfork_failed = pthread_atfork(atfork_prepare, atfork_release, atfork_release) != 0;
}

static int atfork_register(void)
{
    pthread_once(&atfork_once, atfork_register_once);
    return atfork_failed ? ae_core->set_error(AE_ESYS, "glib: pthread_atfork failed") : 0;
}
#define GLB_LOCKED(stmt)                                                                                      \
    do {                                                                                                      \
        pthread_mutex_lock(&glb_lock);                                                                        \
        stmt;                                                                                                 \
        pthread_mutex_unlock(&glb_lock);                                                                      \
    } while (0)

typedef struct glb_fd {
    GPollFD pfd;
    int events;  /* AE_READ|AE_WRITE */
    bool polled; /* pfd is in the source */
} glb_fd;

typedef struct glb_state glb_state;

typedef struct glb_source {
    GSource source;
    glb_state *s; /* NULL once the state is gone (the loop was freed) */
} glb_source;

struct glb_state {
    GMainContext *ctx;
    glb_source *src;
    ae_loop *loop;
    bool adopted;
    gint64 deadline;      /* the core's next timer, monotonic µs; G_MAXINT64: none */
    gint64 wait_deadline; /* bounds wait(); G_MAXINT64: none */
    unsigned poll_gen;    /* counts check() calls: a nested iteration polled again */
    glb_fd **fds;         /* every fd the core knows, to walk after a poll */
    size_t nfds, cap;
    struct glb_hooks *hooks; /* adopted, while hooks exist: their source */
    bool hook_prepare_on, hook_check_on;
    int core_iterating; /* inside glb_run or glb_wait: the core runs the hooks itself */
    pthread_t runner;   /* the last thread known to GLib (thread_known) */
    bool runner_known;
};

/* GLib gives a thread its GThread at the thread's first iteration
 * (g_thread_self, from the slice allocator before 2.76, under its
 * process-wide locks): that first call is made here, under glb_lock, so
 * that fork() never finds another thread inside it. One pthread_self() per
 * run() or wait() call. */
static void thread_known(glb_state *s)
{
    pthread_t self = pthread_self();
    if (s->runner_known && pthread_equal(s->runner, self))
        return;
    GLB_LOCKED((void)g_thread_self());
    s->runner = self;
    s->runner_known = true;
}

static gboolean src_prepare(GSource *source, gint *timeout)
{
    glb_state *s = ((glb_source *)source)->s;
    *timeout = -1;
    if (!s)
        return FALSE;
    gint64 deadline = s->deadline < s->wait_deadline ? s->deadline : s->wait_deadline;
    if (deadline == G_MAXINT64)
        return FALSE;
    if (s->deadline == 0) {
        /* Due at once (idle watchers): no clock read, as for GLib's idle sources. */
        *timeout = 0;
        return TRUE;
    }
    gint64 now = g_source_get_time(source);
    if (deadline <= now) {
        *timeout = 0;
        return s->deadline <= now;
    }
    /* Milliseconds for poll(2), rounded up: never wake before the deadline. */
    gint64 ms = (deadline - now + 999) / 1000;
    *timeout = ms > INT_MAX ? INT_MAX : (gint)ms;
    return FALSE;
}

/* The context's time (one clock read per iteration) only for a deadline
 * that needs it: none, and at once (0), do not. */
static bool deadline_passed(GSource *source, gint64 deadline)
{
    if (deadline == G_MAXINT64)
        return false;
    return deadline == 0 || deadline <= g_source_get_time(source);
}

static gboolean src_check(GSource *source)
{
    glb_state *s = ((glb_source *)source)->s;
    if (!s)
        return FALSE;
    s->poll_gen++;
    if (deadline_passed(source, s->deadline))
        return TRUE;
    for (size_t i = 0; i < s->nfds; i++)
        if (s->fds[i]->pfd.revents)
            return TRUE;
    return FALSE;
}

/* Errors and hang-ups are reported as whatever the fd is watched for, so
 * that the reader or writer finds out with its next call; a closed fd
 * (G_IO_NVAL) as AE_ERROR, after which it is not polled any more. */
static int ae_revents(glb_fd *f, gushort revents)
{
    if (revents & G_IO_NVAL) {
        f->pfd.events = 0;
        f->events = 0;
        return AE_ERROR;
    }
    int r = (revents & G_IO_IN ? AE_READ : 0) | (revents & G_IO_OUT ? AE_WRITE : 0);
    if (revents & (G_IO_HUP | G_IO_ERR))
        r |= f->events;
    return r & f->events ? r & f->events : 0;
}

/* io first, then the core's timers, as on every backend. A callback may
 * start a nested iteration (the source can recurse), which polls again and
 * dispatches what is ready then: this walk stops at once, as what it had
 * not reached yet is stale. */
static gboolean src_dispatch(GSource *source, GSourceFunc callback, gpointer data)
{
    (void)callback;
    (void)data;
    glb_state *s = ((glb_source *)source)->s;
    if (!s)
        return G_SOURCE_CONTINUE;
    unsigned gen = s->poll_gen;
    ae_loop *loop = s->loop;
    /* s->fds may grow (and move) under callbacks that watch new fds: index
     * it afresh each time; new fds have no revents from this poll. */
    for (size_t i = 0; i < s->nfds; i++) {
        glb_fd *f = s->fds[i];
        gushort revents = f->pfd.revents;
        if (!revents)
            continue;
        f->pfd.revents = 0;
        int r = ae_revents(f, revents);
        if (!f->events && f->polled) {
            /* Hung up or closed, and not watched (any more): out of the
             * poll, or every iteration would wake for it. */
            GLB_LOCKED(g_source_remove_poll(source, &f->pfd));
            f->polled = false;
        }
        if (!r)
            continue;
        if (!ae_core->io_ready(loop, f->pfd.fd, r))
            return G_SOURCE_CONTINUE; /* the loop was freed: s is gone */
        if (s->poll_gen != gen)
            return G_SOURCE_CONTINUE;
    }
    if (deadline_passed(source, s->deadline)) {
        s->deadline = G_MAXINT64; /* one-shot; expire re-arms it through timer_update */
        /* A timer callback may free the loop, and s with it. */
        if (!ae_plugin_expire(loop))
            return G_SOURCE_CONTINUE;
    }
    return G_SOURCE_CONTINUE;
}

static GSourceFuncs glb_source_funcs = {
    .prepare = src_prepare,
    .check = src_check,
    .dispatch = src_dispatch,
};

/* GLib aborts the program when a new context cannot get its wake-up fd:
 * make sure first that one can be opened now (EMFILE is the user's limit,
 * reported as an error). */
static int wakeup_probe(void)
{
#if defined(__linux__)
    int fd = eventfd(0, EFD_CLOEXEC);
    if (fd < 0)
        return ae_core->set_errno("glib: eventfd for the context's wake-up");
    close(fd);
#else
    int p[2];
    if (pipe(p) < 0)
        return ae_core->set_errno("glib: pipe for the context's wake-up");
    close(p[0]);
    close(p[1]);
#endif
    return 0;
}

/* The loop's source on ctx (whose reference the state now holds). */
static void source_open(ae_loop *loop, glb_state *s, GMainContext *ctx)
{
    s->ctx = ctx;
    s->loop = loop;
    s->deadline = s->wait_deadline = G_MAXINT64;
    GLB_LOCKED(s->src = (glb_source *)g_source_new(&glb_source_funcs, sizeof(glb_source)));
    s->src->s = s;
    /* A callback may run the loop again (ae_cv_recv): GLib then polls this
     * source's fds and dispatches it again instead of leaving it out. */
    g_source_set_can_recurse(&s->src->source, TRUE);
    GLB_LOCKED(g_source_attach(&s->src->source, ctx));
}

static int context_new(GMainContext **ctx)
{
    int rc = atfork_register();
    if (rc < 0)
        return rc;
    rc = wakeup_probe();
    if (rc < 0)
        return rc;
    GLB_LOCKED(*ctx = g_main_context_new());
    return 0;
}

static int glb_init(ae_loop *loop, void *state)
{
    GMainContext *ctx;
    int rc = context_new(&ctx);
    if (rc < 0)
        return rc;
    source_open(loop, state, ctx);
    return 0;
}

static int glb_adopt(ae_loop *loop, void *state, void *native)
{
    glb_state *s = state;
    int rc = atfork_register();
    if (rc < 0)
        return rc;
    s->adopted = true;
    /* Our reference keeps the context alive as long as the loop uses it. */
    source_open(loop, s, g_main_context_ref(native));
    return 0;
}

static void source_close(glb_state *s)
{
    /* The source may be in its own dispatch (a callback freed an adopted
     * loop): GLib holds a reference until it returns, and s is gone then. */
    s->src->s = NULL;
    GLB_LOCKED(g_source_destroy(&s->src->source); g_source_unref(&s->src->source));
    s->src = NULL;
}

static void glb_destroy(ae_loop *loop, void *state)
{
    (void)loop;
    glb_state *s = state;
    source_close(s);
    GLB_LOCKED(g_main_context_unref(s->ctx));
    free(s->fds);
}

/* The fd's GPollFD joins the source here, once: GLib allocates for it. */
static int glb_fd_init(ae_loop *loop, void *state, int fd, void *fd_data)
{
    (void)loop;
    glb_state *s = state;
    if (s->nfds == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        glb_fd **fds = realloc(s->fds, cap * sizeof *fds);
        if (!fds)
            return ae_core->set_error(AE_ENOMEM, "glib: out of memory for fd %d", fd);
        s->fds = fds;
        s->cap = cap;
    }
    glb_fd *f = fd_data;
    f->pfd.fd = fd;
    s->fds[s->nfds++] = f;
    GLB_LOCKED(g_source_add_poll(&s->src->source, &f->pfd));
    f->polled = true;
    return 0;
}

static void glb_fd_fini(ae_loop *loop, void *state, int fd, void *fd_data)
{
    (void)loop;
    (void)fd;
    glb_state *s = state;
    glb_fd *f = fd_data;
    if (f->polled)
        GLB_LOCKED(g_source_remove_poll(&s->src->source, &f->pfd));
    for (size_t i = 0; i < s->nfds; i++)
        if (s->fds[i] == f) {
            s->fds[i] = s->fds[--s->nfds];
            break;
        }
}

/* In place: GLib copies the events into its poll array at every
 * iteration, so no call into GLib is needed (and none allocates), except
 * for an fd dispatch took out of the poll. */
static int glb_fd_update(ae_loop *loop, void *state, int fd, void *fd_data, int old_events, int new_events)
{
    (void)loop;
    (void)fd;
    (void)old_events;
    glb_state *s = state;
    glb_fd *f = fd_data;
    if (!old_events)
        f->pfd.revents = 0; /* a new registration: not what an earlier poll saw */
    f->events = new_events;
    f->pfd.events = (gushort)((new_events & AE_READ ? G_IO_IN : 0) | (new_events & AE_WRITE ? G_IO_OUT : 0));
    if (new_events && !f->polled) {
        GLB_LOCKED(g_source_add_poll(&s->src->source, &f->pfd));
        f->polled = true;
    }
    return 0;
}

static gint64 deadline_after(double timeout)
{
    if (timeout < 0)
        return G_MAXINT64;
    if (timeout == 0)
        return 0;
    double us = ceil(timeout * 1e6); /* never before the timeout */
    gint64 now = g_get_monotonic_time();
    return us >= (double)(G_MAXINT64 - now) ? G_MAXINT64 - 1 : now + (gint64)us;
}

/* Not used while run is set (the core calls run instead); kept for cores
 * that speak only ABI version 1. */
static int glb_wait(ae_loop *loop, void *state, double timeout)
{
    (void)loop;
    glb_state *s = state;
    thread_known(s);
    gint64 outer = s->wait_deadline;
    s->wait_deadline = deadline_after(timeout);
    s->core_iterating++;
    g_main_context_iteration(s->ctx, timeout != 0);
    s->core_iterating--;
    s->wait_deadline = outer;
    return 0;
}

/* GLib's iteration is the loop's: the core's per-iteration work runs
 * between two g_main_context_iteration() calls, each of which dispatches
 * and returns without blocking again. */
static int glb_run(ae_loop *loop, void *state, int flags)
{
    glb_state *s = state;
    thread_known(s);
    for (;;) {
        /* s->ctx afresh: the iteration service's fork check may renew it. */
        s->core_iterating++;
        g_main_context_iteration(s->ctx, !(flags & AE_BACKEND_RUN_NOWAIT));
        s->core_iterating--;
        /* The loop may have been freed from a callback only when the host
         * runs it; here the core defers the free until run() returns. */
        if (!ae_core->iteration(loop) || flags)
            return 0;
    }
}

static void glb_timer_update(ae_loop *loop, void *state, double timeout)
{
    (void)loop;
    ((glb_state *)state)->deadline = deadline_after(timeout);
}

/* ---- loop hooks in the host's iterations (adopted contexts) ----
 *
 * A source of the highest priority, so that GLib prepares it first in every
 * iteration (GLib stops preparing lower priorities once one is ready), which
 * is never ready itself. Its prepare runs the prepare hooks. GLib has no
 * point after its dispatch: an iteration's check hooks run when the host
 * begins the next one, first thing in that prepare; if the next iteration
 * is one the core runs (ae_run_once on the context), the core's own check
 * hooks of that iteration stand in for them. */
typedef struct glb_hooks {
    GSource source;
    glb_state *s; /* NULL once the hooks are off (or the loop freed) */
    bool polled;  /* a host iteration polled since the last prepare: its check hooks are owed */
} glb_hooks;

static gboolean hooks_prepare(GSource *source, gint *timeout)
{
    glb_hooks *h = (glb_hooks *)source;
    *timeout = -1;
    glb_state *s = h->s;
    if (!s)
        return FALSE;
    if (h->polled) {
        h->polled = false;
        if (s->hook_check_on && !ae_core->hooks_run(s->loop, AE_BACKEND_HOOK_CHECK))
            return FALSE; /* a hook freed the loop: s is gone */
        if (!h->s)
            return FALSE; /* a hook stopped the last hook: this source is going */
    }
    if (s->hook_prepare_on)
        ae_core->hooks_run(s->loop, AE_BACKEND_HOOK_PREPARE);
    return FALSE;
}

static gboolean hooks_check(GSource *source)
{
    glb_hooks *h = (glb_hooks *)source;
    if (h->s)
        h->polled = h->s->core_iterating == 0;
    return FALSE;
}

static gboolean hooks_dispatch(GSource *source, GSourceFunc callback, gpointer data)
{
    (void)source;
    (void)callback;
    (void)data;
    return G_SOURCE_CONTINUE; /* never ready: never called */
}

static GSourceFuncs glb_hooks_funcs = {
    .prepare = hooks_prepare,
    .check = hooks_check,
    .dispatch = hooks_dispatch,
};

static int glb_hooks_update(ae_loop *loop, void *state, int kind, int on)
{
    (void)loop;
    glb_state *s = state;
    if (kind == AE_BACKEND_HOOK_PREPARE)
        s->hook_prepare_on = on;
    else
        s->hook_check_on = on;
    bool want = s->hook_prepare_on || s->hook_check_on;
    if (want && !s->hooks) {
        glb_hooks *h;
        GLB_LOCKED(h = (glb_hooks *)g_source_new(&glb_hooks_funcs, sizeof(glb_hooks)));
        h->s = s;
        h->polled = false;
        g_source_set_priority(&h->source, G_MININT);
        GLB_LOCKED(g_source_attach(&h->source, s->ctx));
        s->hooks = h;
    } else if (!want && s->hooks) {
        /* Possibly from inside its own prepare (a hook stopped the last
         * hook): GLib holds a reference until the prepare returns. */
        s->hooks->s = NULL;
        GLB_LOCKED(g_source_destroy(&s->hooks->source); g_source_unref(&s->hooks->source));
        s->hooks = NULL;
    }
    return 0;
}

static void *glb_native(void *state) { return ((glb_state *)state)->ctx; }

/* GLib polls with poll(2): no kernel registration to renew. The context's
 * wake-up eventfd is shared with the parent, so a loop of our own moves to
 * a new context; the host's adopted context is the host's to handle. */
static int glb_fork(ae_loop *loop, void *state)
{
    glb_state *s = state;
    if (s->adopted)
        return 0;
    GMainContext *ctx;
    int rc = context_new(&ctx);
    if (rc < 0)
        return rc; /* the old context stays: the core refuses to run the loop */
    GMainContext *old = s->ctx;
    gint64 deadline = s->deadline;
    source_close(s);
    source_open(loop, s, ctx);
    s->deadline = deadline;
    for (size_t i = 0; i < s->nfds; i++)
        if (s->fds[i]->polled)
            GLB_LOCKED(g_source_add_poll(&s->src->source, &s->fds[i]->pfd));
    GLB_LOCKED(g_main_context_unref(old));
    return 0;
}

static void *glb_default_native(void)
{
    GMainContext *ctx;
    if (atfork_register() < 0)
        return NULL;
    GLB_LOCKED(ctx = g_main_context_default());
    return ctx;
}

static const ae_backend_ops glib_ops = {
    .abi_version = AE_BACKEND_ABI_VERSION,
    .struct_size = sizeof(ae_backend_ops),
    .name = "glib",
    .state_size = sizeof(glb_state),
    .fd_data_size = sizeof(glb_fd),
    .fd_data_align = _Alignof(glb_fd),
    .features = AE_BACKEND_F_REENTRANT, /* g_main_context_iteration may be called recursively */
    .init = glb_init,
    .destroy = glb_destroy,
    .fd_init = glb_fd_init,
    .fd_fini = glb_fd_fini,
    .fd_update = glb_fd_update,
    .wait = glb_wait,
    .native = glb_native,
    .adopt = glb_adopt,
    .timer_update = glb_timer_update,
    .fork = glb_fork,
    .default_native = glb_default_native,
    .run = glb_run,
    .host_symbol = "g_main_context_default",
    .hooks_update = glb_hooks_update,
    /* rank 0: chosen by name, or when the program runs GLib itself */
};

AE_BACKEND_ENTRY(services)
{
    if (ae_plugin_accept(services) < 0)
        return NULL;
    if (glib_check_version(GLIB_MAJOR_VERSION, GLIB_MINOR_VERSION, 0) != NULL) {
        ae_core->set_error(AE_ENOTSUP, "glib: built for GLib %d.%d, running with %u.%u", GLIB_MAJOR_VERSION,
                           GLIB_MINOR_VERSION, glib_major_version, glib_minor_version);
        return NULL;
    }
    return &glib_ops;
}

/* How a host program makes and runs a GMainContext, for ae-conformance's
 * adoption checks (docs/conformance.md). */
static void *host_loop_new(void) { return g_main_context_new(); }

static int host_run_once(void *native, int block)
{
    g_main_context_iteration(native, block);
    return 0;
}

static void host_loop_free(void *native) { g_main_context_unref(native); }

static const ae_backend_test_host glib_host = {
    .version = AE_BACKEND_ABI_VERSION,
    .struct_size = sizeof(ae_backend_test_host),
    .loop_new = host_loop_new,
    .run_once = host_run_once,
    .loop_free = host_loop_free,
};

AE_BACKEND_TEST_HOST() { return &glib_host; }
