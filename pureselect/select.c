/* The "select" variant of the built-in loop, for portability: fds must be
 * below FD_SETSIZE. */
#include <errno.h>
#include <fcntl.h>
#include <sys/select.h>

#include "pureselect.h"

static int select_init(ae_loop *loop, void *state)
{
    (void)loop;
    return ps_init(state, FD_SETSIZE);
}

/* select() failed with EBADF: find the closed fds and report them. */
static int report_closed(ae_loop *loop, ps_state *s)
{
    ps_ready *buf = ps_ready_buffer(s, s->nregs);
    if (!buf)
        return AE_ENOMEM;
    int k = 0;
    for (size_t i = 0; i < s->nregs; i++)
        if (fcntl(s->regs[i].fd, F_GETFD) < 0)
            ps_ready_add(s, buf, &k, s->regs[i].fd, AE_ERROR);
    return ps_dispatch(loop, s, buf, k);
}

static int select_wait(ae_loop *loop, void *state, double timeout)
{
    ps_state *s = state;
    fd_set rd, wr;
    FD_ZERO(&rd);
    FD_ZERO(&wr);
    int maxfd = -1;
    for (size_t i = 0; i < s->nregs; i++) {
        int fd = s->regs[i].fd;
        if (s->regs[i].events & POLLIN)
            FD_SET(fd, &rd);
        if (s->regs[i].events & POLLOUT)
            FD_SET(fd, &wr);
        if (fd > maxfd)
            maxfd = fd;
    }
    struct timeval tv, *tvp = NULL;
    if (timeout >= 0) {
        /* Round up to whole microseconds, so timers are due on return. */
        /* Clamped as a double first: a huge timeout does not fit a long long. */
        const double max_us = 86400.0 * 1e6 * 365;
        double want = timeout * 1e6 + 1;
        long long us = timeout == 0 ? 0 : want > max_us ? (long long)max_us : (long long)want;
        tv.tv_sec = (time_t)(us / 1000000);
        tv.tv_usec = (suseconds_t)(us % 1000000);
        tvp = &tv;
    }
    int n = select(maxfd + 1, &rd, &wr, NULL, tvp);
    if (n < 0) {
        if (errno == EINTR)
            return 0;
        if (errno == EBADF)
            return report_closed(loop, s);
        return ae__set_errno("select");
    }
    if (n == 0)
        return 0;
    ps_ready *buf = ps_ready_buffer(s, s->nregs);
    if (!buf)
        return AE_ENOMEM;
    int k = 0;
    for (size_t i = 0; i < s->nregs; i++) {
        int fd = s->regs[i].fd;
        int rev = (FD_ISSET(fd, &rd) ? AE_READ : 0) | (FD_ISSET(fd, &wr) ? AE_WRITE : 0);
        if (rev)
            ps_ready_add(s, buf, &k, fd, rev);
    }
    return ps_dispatch(loop, s, buf, k);
}

const ae_backend_ops ae__backend_select = {
    .abi_version = AE_BACKEND_ABI_VERSION,
    .struct_size = sizeof(ae_backend_ops),
    .name = "select",
    .rank = 50,
    .state_size = sizeof(ps_state),
    .fd_data_size = 0,
    .features = AE_BACKEND_F_REENTRANT,
    .init = select_init,
    .destroy = ps_destroy,
    .fd_init = ps_fd_init,
    .fd_update = ps_fd_update,
    .wait = select_wait,
};
