/* A plugin whose wait crashes: it writes through a pointer it forgot to set
 * up, as a plugin with a missing allocation would. The first check that runs
 * the loop crashes with SIGSEGV, which ae-conformance must report as that
 * check's failure and go on. Built only for tests/conformance-kit. */
#include <stdint.h>

#include <anyevent/backend.h>

#include "stub_ops.h"

typedef struct crash_state {
    struct { int pending[4]; int count; } *queue; /* never allocated: stays NULL */
} crash_state;

static int crash_wait(ae_loop *loop, void *state, double timeout)
{
    (void)loop;
    (void)timeout;
    crash_state *s = state;
    /* The address of queue->count, computed as an integer: the fault happens
     * on the store itself, as it would in a real plugin, rather than being
     * stopped earlier by a sanitizer's null-pointer check. */
    uintptr_t count = (uintptr_t)s->queue + 4 * sizeof(int);
    *(volatile int *)count = 1;
    return 0;
}

static const ae_backend_ops ops = {
    .abi_version = AE_BACKEND_ABI_VERSION,
    .struct_size = sizeof(ae_backend_ops),
    .name = "crashes",
    .state_size = sizeof(crash_state),
    .init = stub_init,
    .destroy = stub_destroy,
    .fd_update = stub_fd_update,
    .wait = crash_wait,
};

AE_BACKEND_ENTRY(services)
{
    (void)services;
    return &ops;
}
