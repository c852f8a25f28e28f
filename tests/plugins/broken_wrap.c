/*
 * A working plugin with one defect, to prove that the ae-conformance check
 * of that defect fails: it loads a real plugin (REAL_PLUGIN, a path), hands
 * on every operation and service, and breaks the one BREAK names. Built
 * once per defect, only for tests/conformance-kit:
 *   BREAK_ROUNDING   wait() rounds its timeout down to the millisecond
 *   BREAK_NESTING    claims AE_BACKEND_F_REENTRANT, but a nested wait()
 *                    never returns
 *   BREAK_FORK       no fork op: a child goes on with the parent's kernel
 *                    state (an epoll fd) and changes the parent's
 *                    registrations
 *   BREAK_ALLOC      fd_update allocates (and frees) a block every time
 *   BREAK_ADOPT      adopt ignores the host's native loop and makes one of
 *                    its own
 *   BREAK_REARM      timer_update calls made from inside the expire
 *                    service are dropped (a one-shot native timer marked
 *                    idle after its callback returns)
 *   BREAK_TOUCH      reads its state after the expire service returned, even
 *                    when a timer callback freed the loop (and the state)
 *                    from the host's loop: a use after free, which only a
 *                    memory checker or sanitizer sees
 *   BREAK_NOHOST     nothing broken, but no test host exported: adoption
 *                    cannot be checked
 * It exports the real plugin's test host (except BREAK_NOHOST). Only <anyevent/backend.h>.
 */
#include <dlfcn.h>
#include <math.h>
#include <stdlib.h>
#include <unistd.h>

#include <anyevent/backend.h>

#if !defined(REAL_PLUGIN) || !defined(BREAK_NAME)
#error "REAL_PLUGIN names the plugin to wrap, BREAK_NAME this one"
#endif

static void *real_handle;
static const ae_backend_ops *real;
static ae_backend_ops ops;
static ae_backend_services services; /* what the real plugin is given */
static const ae_backend_services *core;

#if defined(BREAK_ROUNDING)
static int broken_wait(ae_loop *loop, void *state, double timeout)
{
    if (timeout > 0)
        timeout = floor(timeout * 1000.0) / 1000.0;
    return real->wait(loop, state, timeout);
}
#elif defined(BREAK_NESTING)
static int depth;

static int broken_wait(ae_loop *loop, void *state, double timeout)
{
    if (depth > 0)
        for (;;)
            pause();
    depth++;
    int rc = real->wait(loop, state, timeout);
    depth--;
    return rc;
}
#elif defined(BREAK_ALLOC)
static int broken_fd_update(ae_loop *loop, void *state, int fd, void *fd_data, int old_events, int new_events)
{
    void *volatile scratch = malloc(32);
    free(scratch);
    return real->fd_update(loop, state, fd, fd_data, old_events, new_events);
}
#elif defined(BREAK_ADOPT)
static int broken_adopt(ae_loop *loop, void *state, void *native)
{
    (void)native;
    return real->init(loop, state);
}
#elif defined(BREAK_REARM)
static int in_expire;

static void broken_expire(ae_loop *loop)
{
    in_expire++;
    core->expire(loop);
    in_expire--;
}

static int broken_expire_checked(ae_loop *loop)
{
    in_expire++;
    int alive = core->expire_checked(loop);
    in_expire--;
    return alive;
}

static void broken_timer_update(ae_loop *loop, void *state, double timeout)
{
    if (!in_expire)
        real->timer_update(loop, state, timeout);
}
#elif defined(BREAK_TOUCH)
static void *armed_state; /* the state timer_update last saw */

static void broken_timer_update(ae_loop *loop, void *state, double timeout)
{
    armed_state = state;
    real->timer_update(loop, state, timeout);
}

static void touch_after(void)
{
    if (armed_state) {
        volatile const unsigned char *first = armed_state;
        (void)*first; /* freed if a callback freed the loop */
    }
}

static void broken_expire(ae_loop *loop)
{
    core->expire(loop);
    touch_after();
}

static int broken_expire_checked(ae_loop *loop)
{
    int alive = core->expire_checked(loop);
    touch_after();
    return alive;
}
#endif

AE_BACKEND_ENTRY(given)
{
    core = given;
    real_handle = dlopen(REAL_PLUGIN, RTLD_NOW | RTLD_LOCAL);
    if (!real_handle) {
        given->set_error(AE_ENOTSUP, BREAK_NAME ": cannot load %s: %s", REAL_PLUGIN, dlerror());
        return NULL;
    }
    ae_backend_entry_fn entry;
    *(void **)&entry = dlsym(real_handle, AE_BACKEND_ENTRY_SYMBOL);
    if (!entry) {
        given->set_error(AE_ENOTSUP, BREAK_NAME ": %s has no entry", REAL_PLUGIN);
        return NULL;
    }
    services = *given;
#if defined(BREAK_REARM) || defined(BREAK_TOUCH)
    services.expire = broken_expire;
    services.expire_checked = broken_expire_checked;
#endif
    real = entry(&services);
    if (!real)
        return NULL;
    ops = *real;
    ops.name = BREAK_NAME;
    /* Chosen only by path. */
    ops.host_symbol = NULL;
    ops.default_native = NULL;
    ops.rank = 0;
#if defined(BREAK_ROUNDING)
    ops.wait = broken_wait;
#elif defined(BREAK_NESTING)
    ops.features |= AE_BACKEND_F_REENTRANT;
    ops.wait = broken_wait;
#elif defined(BREAK_FORK)
    ops.fork = NULL;
#elif defined(BREAK_ALLOC)
    ops.fd_update = broken_fd_update;
#elif defined(BREAK_ADOPT)
    ops.adopt = broken_adopt;
#elif defined(BREAK_REARM) || defined(BREAK_TOUCH)
    ops.timer_update = broken_timer_update;
#endif
    return &ops;
}

#if !defined(BREAK_NOHOST)
AE_BACKEND_TEST_HOST()
{
    ae_backend_test_host_fn fn;
    *(void **)&fn = real_handle ? dlsym(real_handle, AE_BACKEND_TEST_HOST_SYMBOL) : NULL;
    return fn ? fn() : NULL;
}
#endif
