/* Loads fine and calls itself "libev", but cannot start a loop: installed
 * as anyevent-libev.so in its own folder, it stands for a broken plugin that
 * auto-detection must skip. */
#include "plugin.h"

const ae_backend_services *ae_core;

static int fail_init(ae_loop *loop, void *state)
{
    (void)loop;
    (void)state;
    return ae_core->set_error(AE_ESYS, "init_fails: cannot start on purpose");
}

static void no_destroy(ae_loop *loop, void *state)
{
    (void)loop;
    (void)state;
}

static int no_fd_update(ae_loop *loop, void *state, int fd, void *fd_data, int old_events, int new_events)
{
    (void)loop;
    (void)state;
    (void)fd;
    (void)fd_data;
    (void)old_events;
    (void)new_events;
    return AE_ENOTSUP;
}

static int no_wait(ae_loop *loop, void *state, double timeout)
{
    (void)loop;
    (void)state;
    (void)timeout;
    return AE_ENOTSUP;
}

static const ae_backend_ops ops = {
    .abi_version = AE_BACKEND_ABI_VERSION,
    .struct_size = sizeof(ae_backend_ops),
    .name = "libev",
    .rank = 10, /* stands for libev: tried first */
    .init = fail_init,
    .destroy = no_destroy,
    .fd_update = no_fd_update,
    .wait = no_wait,
};

AE_BACKEND_ENTRY(services)
{
    if (ae_plugin_accept(services) < 0)
        return NULL;
    return &ops;
}
