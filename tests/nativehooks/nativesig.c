/*
 * A test backend with native signals, to exercise the core's side of
 * signal_start/signal_stop/signal_ready: poll(2) for io, and a handler of its
 * own per signal that writes to a process-wide self-pipe. Like libuv, it
 * resets a signal to SIG_DFL when its last watch of it stops, which is what
 * the core must survive when another loop still needs the signal.
 * Built only for tests/nativehooks; written against the public ABI only.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <anyevent/backend.h>

static const ae_backend_services *core;

static pthread_mutex_t sig_lock = PTHREAD_MUTEX_INITIALIZER;
static int sig_pipe[2] = {-1, -1}; /* the handler writes signal numbers here */
static unsigned sig_watches[NSIG]; /* loops of ours watching each signal */

/* Counted for the test, which reads them with dlsym. */
__attribute__((visibility("default"))) unsigned nativesig_starts, nativesig_deliveries;

typedef struct ns_state {
    struct pollfd *pfds; /* indexed by fd (fd -1: not watched), then the self-pipe */
    int cap;
} ns_state;

static void handler(int signum)
{
    int saved = errno;
    unsigned char b = (unsigned char)signum;
    ssize_t r = write(sig_pipe[1], &b, 1);
    (void)r;
    errno = saved;
}

static int ns_init(ae_loop *loop, void *state)
{
    (void)loop;
    (void)state;
    return 0;
}

static void ns_destroy(ae_loop *loop, void *state)
{
    (void)loop;
    free(((ns_state *)state)->pfds);
}

static int ns_fd_init(ae_loop *loop, void *state, int fd, void *fd_data)
{
    (void)loop;
    (void)fd_data;
    ns_state *s = state;
    if (fd >= s->cap) {
        int cap = s->cap ? s->cap : 16;
        while (cap <= fd)
            cap *= 2;
        struct pollfd *p = realloc(s->pfds, ((size_t)cap + 1) * sizeof *p); /* + the self-pipe */
        if (!p)
            return core->set_error(AE_ENOMEM, "nativesig: out of memory");
        for (int i = s->cap; i <= cap; i++)
            p[i] = (struct pollfd){.fd = -1};
        s->pfds = p;
        s->cap = cap;
    }
    return 0;
}

static int ns_fd_update(ae_loop *loop, void *state, int fd, void *fd_data, int old_events, int new_events)
{
    (void)loop;
    (void)fd_data;
    (void)old_events;
    ns_state *s = state;
    s->pfds[fd].fd = new_events ? fd : -1;
    s->pfds[fd].events = (short)((new_events & AE_READ ? POLLIN : 0) | (new_events & AE_WRITE ? POLLOUT : 0));
    return 0;
}

static void read_signals(ae_loop *loop)
{
    unsigned char buf[64];
    ssize_t n;
    while ((n = read(sig_pipe[0], buf, sizeof buf)) > 0)
        for (ssize_t i = 0; i < n; i++) {
            nativesig_deliveries++;
            core->signal_ready(loop, buf[i]);
        }
}

static int ns_wait(ae_loop *loop, void *state, double timeout)
{
    ns_state *s = state;
    if (ns_fd_init(loop, state, 0, NULL) < 0) /* the array exists, with its extra slot */
        return AE_ENOMEM;
    int n = s->cap;
    s->pfds[n] = (struct pollfd){.fd = sig_pipe[0], .events = POLLIN}; /* the self-pipe */
    int ms = timeout < 0 ? -1 : (int)(timeout * 1000 + 0.999);
    int rc = poll(s->pfds, (nfds_t)n + 1, ms);
    if (rc < 0)
        return errno == EINTR ? 0 : core->set_errno("nativesig: poll");
    if (s->pfds[n].revents)
        read_signals(loop);
    for (int fd = 0; fd < n; fd++) {
        short re = s->pfds[fd].fd >= 0 ? s->pfds[fd].revents : 0;
        if (!re)
            continue;
        s->pfds[fd].revents = 0;
        int ev = (re & (POLLIN | POLLHUP | POLLERR) ? AE_READ : 0) | (re & (POLLOUT | POLLERR) ? AE_WRITE : 0);
        if (re & POLLNVAL)
            ev = AE_ERROR;
        if (!core->io_ready(loop, fd, ev))
            return 0;
    }
    return 0;
}

static int ns_signal_start(ae_loop *loop, void *state, int signum)
{
    (void)loop;
    (void)state;
    pthread_mutex_lock(&sig_lock);
    if (sig_pipe[0] < 0 && pipe2(sig_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
        pthread_mutex_unlock(&sig_lock);
        return core->set_errno("nativesig: pipe2");
    }
    if (sig_watches[signum]++ == 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = handler;
        sa.sa_flags = SA_RESTART;
        sigaction(signum, &sa, NULL);
    }
    nativesig_starts++;
    pthread_mutex_unlock(&sig_lock);
    return 0;
}

static void ns_signal_stop(ae_loop *loop, void *state, int signum)
{
    (void)loop;
    (void)state;
    pthread_mutex_lock(&sig_lock);
    if (--sig_watches[signum] == 0)
        signal(signum, SIG_DFL); /* as libuv does: the hostile case for the core */
    pthread_mutex_unlock(&sig_lock);
}

static const ae_backend_ops ops = {
    .abi_version = AE_BACKEND_ABI_VERSION,
    .struct_size = sizeof(ae_backend_ops),
    .name = "nativesig",
    .state_size = sizeof(ns_state),
    .init = ns_init,
    .destroy = ns_destroy,
    .fd_init = ns_fd_init,
    .fd_update = ns_fd_update,
    .wait = ns_wait,
    .signal_start = ns_signal_start,
    .signal_stop = ns_signal_stop,
};

AE_BACKEND_ENTRY(services)
{
    if (!services || !AE_BACKEND_SERVICES_HAS(services, signal_ready))
        return NULL;
    core = services;
    return &ops;
}
