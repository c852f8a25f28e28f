/* A plugin whose io watchers never start: fd_update always fails, with a
 * message. Its wait works (it sleeps out the timeout), so timers run: the
 * checks that watch an fd fail, with this message as the reason. Built only
 * for tests/conformance-kit. */
#include <errno.h>
#include <limits.h>
#include <poll.h>

#include <anyevent/backend.h>

#include "stub_ops.h"

static const ae_backend_services *core;

static int refuse_fd(ae_loop *loop, void *state, int fd, void *fd_data, int old_events, int new_events)
{
    (void)loop;
    (void)state;
    (void)fd_data;
    return core->set_error(AE_ESYS, "iofails: cannot watch fd %d (events %d to %d): fd_update fails on purpose", fd,
                           old_events, new_events);
}

/* Sleeps for the timeout, rounded up to a millisecond: no fd is ever watched. */
static int sleep_wait(ae_loop *loop, void *state, double timeout)
{
    (void)loop;
    (void)state;
    double ms = timeout * 1000.0;
    int wait_ms = timeout < 0 ? -1 : ms >= INT_MAX ? INT_MAX : (int)ms + ((double)(int)ms < ms);
    if (poll(NULL, 0, wait_ms) < 0 && errno != EINTR)
        return core->set_errno("iofails: poll");
    return 0;
}

/* Built as a version 1 plugin was: its table ends before run, which the
 * core must then not read (the sqlite3_vfs rule). */
static const ae_backend_ops ops = {
    .abi_version = 1,
    .struct_size = offsetof(ae_backend_ops, run),
    .name = "iofails",
    .init = stub_init,
    .destroy = stub_destroy,
    .fd_update = refuse_fd,
    .wait = sleep_wait,
};

AE_BACKEND_ENTRY(services)
{
    if (services->version < 1 || !AE_BACKEND_SERVICES_HAS(services, set_errno))
        return NULL;
    core = services;
    return &ops;
}
