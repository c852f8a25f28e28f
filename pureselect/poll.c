/* The "poll" variant of the built-in loop: no limit on fd numbers. */
#include <errno.h>

#include "pureselect.h"

static int poll_init(ae_loop *loop, void *state)
{
    (void)loop;
    return ps_init(state, 0);
}

/* Errors and hang-ups are reported as whatever the fd is watched for, so
 * that the reader or writer finds out with its next call. */
static int ae_revents(short revents, short events)
{
    if (revents & POLLNVAL)
        return AE_ERROR;
    if (revents & (POLLERR | POLLHUP))
        revents |= events;
    return ((revents & POLLIN) ? AE_READ : 0) | ((revents & POLLOUT) ? AE_WRITE : 0);
}

static int poll_wait(ae_loop *loop, void *state, double timeout)
{
    ps_state *s = state;
    int n = poll(s->regs, (nfds_t)s->nregs, ps_timeout_ms(timeout));
    if (n < 0)
        return errno == EINTR ? 0 : ae__set_errno("poll");
    if (n == 0)
        return 0;
    ps_ready *buf = ps_ready_buffer(s, (size_t)n);
    if (!buf)
        return AE_ENOMEM;
    int k = 0;
    for (size_t i = 0; i < s->nregs && k < n; i++) {
        if (!s->regs[i].revents)
            continue;
        int rev = ae_revents(s->regs[i].revents, s->regs[i].events);
        if (rev)
            ps_ready_add(s, buf, &k, s->regs[i].fd, rev);
    }
    return ps_dispatch(loop, s, buf, k);
}

const ae_backend_ops ae__backend_poll = {
    .abi_version = AE_BACKEND_ABI_VERSION,
    .struct_size = sizeof(ae_backend_ops),
    .name = "poll",
    .rank = 40, /* the built-in loop: no fd limit */
    .state_size = sizeof(ps_state),
    .fd_data_size = 0,
    .features = AE_BACKEND_F_REENTRANT,
    .init = poll_init,
    .destroy = ps_destroy,
    .fd_init = ps_fd_init,
    .fd_update = ps_fd_update,
    .wait = poll_wait,
};
