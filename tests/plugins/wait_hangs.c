/* A plugin whose wait never returns: it ignores its timeout and blocks for
 * good, so the first check that runs the loop hangs until ae-conformance
 * kills it. Built only for tests/conformance-kit. */
#include <unistd.h>

#include <anyevent/backend.h>

static int start(ae_loop *loop, void *state)
{
    (void)loop;
    (void)state;
    return 0;
}

static void stop(ae_loop *loop, void *state)
{
    (void)loop;
    (void)state;
}

/* Accepts every registration and never reports anything. */
static int accept_fd(ae_loop *loop, void *state, int fd, void *fd_data, int old_events, int new_events)
{
    (void)loop;
    (void)state;
    (void)fd;
    (void)fd_data;
    (void)old_events;
    (void)new_events;
    return 0;
}

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
    .init = start,
    .destroy = stop,
    .fd_update = accept_fd,
    .wait = wait_forever,
};

AE_BACKEND_ENTRY(services)
{
    (void)services;
    return &ops;
}
