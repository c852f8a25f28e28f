/* A plugin whose fd_data_align is not a power of two: refused at loading. */
#include "plugin.h"

const ae_backend_services *ae_core;

static int never_init(ae_loop *loop, void *state)
{
    (void)loop;
    (void)state;
    return -1;
}

static void never_destroy(ae_loop *loop, void *state)
{
    (void)loop;
    (void)state;
}

static int never_fd_update(ae_loop *loop, void *state, int fd, void *fd_data, int old_events, int new_events)
{
    (void)loop;
    (void)state;
    (void)fd;
    (void)fd_data;
    (void)old_events;
    (void)new_events;
    return -1;
}

static int never_wait(ae_loop *loop, void *state, double timeout)
{
    (void)loop;
    (void)state;
    (void)timeout;
    return -1;
}

static const ae_backend_ops ops = {
    .abi_version = AE_BACKEND_ABI_VERSION,
    .struct_size = sizeof(ae_backend_ops),
    .name = "badalign",
    .fd_data_size = 24,
    .fd_data_align = 24,
    .init = never_init,
    .destroy = never_destroy,
    .fd_update = never_fd_update,
    .wait = never_wait,
};

AE_BACKEND_ENTRY(services)
{
    (void)services;
    return &ops;
}
