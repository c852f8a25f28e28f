/* A plugin whose fd_data_align is not a power of two: refused at loading,
 * so none of its operations ever runs. */
#include "stub_ops.h"

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
    .init = stub_init,
    .destroy = stub_destroy,
    .fd_update = stub_fd_update,
    .wait = never_wait,
};

AE_BACKEND_ENTRY(services)
{
    (void)services;
    return &ops;
}
