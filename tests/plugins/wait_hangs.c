/* A plugin whose wait never returns: it ignores its timeout and blocks for
 * good, so the first check that runs the loop hangs until ae-conformance
 * kills it. Built only for tests/conformance-kit. */
#include <unistd.h>

#include <anyevent/backend.h>

#include "stub_ops.h"

static int wait_forever(ae_loop *loop, void *state, double timeout)
{
    (void)loop;
    (void)state;
    (void)timeout;
    for (;;)
        pause(); /* a signal wakes it, and it sleeps again */
    return 0;    /* not reached */
}

static const ae_backend_ops ops = {
    .abi_version = AE_BACKEND_ABI_VERSION,
    .struct_size = sizeof(ae_backend_ops),
    .name = "hangs",
    .init = stub_init,
    .destroy = stub_destroy,
    .fd_update = stub_fd_update,
    .wait = wait_forever,
};

AE_BACKEND_ENTRY(services)
{
    (void)services;
    return &ops;
}
