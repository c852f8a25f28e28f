/* The operations the broken test plugins do not break: an init and destroy
 * with nothing to do, and an fd_update that accepts every registration.
 * Each plugin replaces the one it breaks. Only <anyevent/backend.h>. */
#ifndef AE_TESTS_PLUGINS_STUB_OPS_H
#define AE_TESTS_PLUGINS_STUB_OPS_H

#include <anyevent/backend.h>

static inline int stub_init(ae_loop *loop, void *state)
{
    (void)loop;
    (void)state;
    return 0;
}

static inline void stub_destroy(ae_loop *loop, void *state)
{
    (void)loop;
    (void)state;
}

/* Accepts every registration and never reports anything. */
static inline int stub_fd_update(ae_loop *loop, void *state, int fd, void *fd_data, int old_events, int new_events)
{
    (void)loop;
    (void)state;
    (void)fd;
    (void)fd_data;
    (void)old_events;
    (void)new_events;
    return 0;
}

#endif
