/*
 * The example epoll backend: Linux's epoll(7) used directly, written only
 * against the public plugin ABI <anyevent/backend.h>, so that it builds out
 * of tree against an installed anyevent:
 *
 *   cc $(pkg-config --cflags anyevent) -shared -fPIC -o anyevent-epoll.so epoll.c
 *
 * docs/plugin-guide.md walks through this file. The design follows libev's
 * epoll backend:
 *   - fd_update only records the interest the core wants; the changes are
 *     applied with epoll_ctl at the start of the next wait, so that a watcher
 *     stopped and started again (the common re-arm) costs one system call at
 *     most, and an fd closed before the wait is found by that epoll_ctl
 *     (EBADF) and reported with AE_ERROR;
 *   - each registration carries a generation number beside the fd, so that
 *     readiness of a registration that was replaced meanwhile is recognised
 *     and dropped;
 *   - fds that epoll refuses (regular files, directories, /dev/null: EPERM)
 *     are reported always ready, as poll(2) reports them.
 * Optional, at the end: native child watching with pidfd_open(2).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* syscall() */
#endif
#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <anyevent/backend.h>

/* The core's services, kept by the entry function (a plugin may not link
 * against the core's symbols: the program may have linked it statically). */
static const ae_backend_services *core;

/* Events fetched by one epoll_wait. The loop's own buffer grows with the
 * number of fds up to this; a nested wait (from a callback) uses a small
 * buffer on its stack. */
#define EP_EVENTS_MAX 4096
#define EP_EVENTS_NESTED 64

/* epoll_event.data.u64: the fd in the low 32 bits, the registration's
 * generation in the high 32 bits; this generation marks a child's pidfd,
 * whose low bits are then the index of its slot. */
#define EP_GEN_CHILD UINT32_MAX

/* Per fd (the core's fd_data: zeroed, never moves, lives as long as the
 * loop). */
typedef struct ep_fd {
    struct ep_fd *next_changed; /* the changed list, linked through the fds' own memory */
    int fd;
    uint32_t gen;       /* generation of our last registration of fd */
    /* epoll refused it (EPERM): always ready, in the refused list at
     * refused_at - 1; 0: not refused (fds are ints: the index fits) */
    uint32_t refused_at;
    unsigned char want; /* AE_READ|AE_WRITE the core wants */
    unsigned char kernel; /* what epoll has registered (0: nothing, as far as we know) */
    bool reset;   /* the interest went to 0 since the last wait: the number may name a new file */
    bool changed; /* in the changed list */
} ep_fd;

/* A child watched with a pidfd (optional section). */
typedef struct ep_child {
    pid_t pid; /* 0: free slot */
    int pidfd;
    unsigned refs; /* child_start calls not yet stopped */
} ep_child;

typedef struct ep_state {
    ae_loop *loop;
    int epfd;
    bool rebuild; /* epoll holds a registration we can no longer remove: start afresh */
    unsigned depth; /* waits running (nested ones from callbacks) */

    ep_fd **by_fd; /* every fd the core knows, by number */
    int by_fd_cap;
    size_t nfds;

    ep_fd *changed;  /* fds whose interest changed since the last wait, last changed first */
    ep_fd **refused; /* fds epoll refused, reported ready every wait (room for nfds) */
    size_t nrefused;
    size_t lists_cap; /* room in refused, at least nfds */
    size_t refused_next; /* where the next wait starts reporting them, if not all fit */

    struct epoll_event *events; /* the outermost wait's buffer */
    int events_cap;
    int events_want; /* the size fd_init asks for: the outermost wait grows it (see ep_wait) */

    ep_child *children;
    size_t nchildren;
} ep_state;

static uint32_t ep_mask(int ae_events)
{
    return ((ae_events & AE_READ) ? (uint32_t)EPOLLIN : 0) | ((ae_events & AE_WRITE) ? (uint32_t)EPOLLOUT : 0);
}

static uint64_t ep_data(int fd, uint32_t gen) { return (uint64_t)gen << 32 | (uint32_t)fd; }

static uint32_t next_gen(uint32_t gen)
{
    gen++;
    return gen == EP_GEN_CHILD ? 0 : gen;
}

/* ---- setup ------------------------------------------------------------------- */

static int ep_init(ae_loop *loop, void *state)
{
    ep_state *s = state;
    s->loop = loop;
    s->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (s->epfd < 0)
        return core->set_errno("epoll: epoll_create1");
    return 0;
}

static void ep_destroy(ae_loop *loop, void *state)
{
    (void)loop;
    ep_state *s = state;
    /* The core stopped every child watch before; a slot still open would be
     * a bug, but its pidfd must not leak either. */
    for (size_t i = 0; i < s->nchildren; i++)
        if (s->children[i].pid)
            close(s->children[i].pidfd);
    close(s->epfd);
    free(s->by_fd);
    free(s->refused);
    free(s->events);
    free(s->children);
}

/* Grows *array to hold n pointers. */
static int reserve_ptrs(ep_fd ***array, size_t n)
{
    ep_fd **a = realloc(*array, n * sizeof *a);
    if (!a)
        return -1;
    *array = a;
    return 0;
}

/* The core meets fd: reserve everything fd_update may need for it, so that
 * it never allocates. Often called from a callback (a server accepting a
 * connection), while the wait that ran it walks its events buffer: that
 * buffer is not touched here, only asked to grow (see ep_wait). */
static int ep_fd_init(ae_loop *loop, void *state, int fd, void *fd_data)
{
    (void)loop;
    ep_state *s = state;
    if (fd >= s->by_fd_cap) {
        int cap = s->by_fd_cap ? s->by_fd_cap : 64;
        while (cap <= fd)
            cap = cap > INT_MAX / 2 ? INT_MAX : cap * 2;
        ep_fd **t = realloc(s->by_fd, (size_t)cap * sizeof *t);
        if (!t)
            return core->set_error(AE_ENOMEM, "epoll: out of memory for fd %d", fd);
        for (int i = s->by_fd_cap; i < cap; i++)
            t[i] = NULL;
        s->by_fd = t;
        s->by_fd_cap = cap;
    }
    size_t n = s->nfds + 1;
    if (n > s->lists_cap) {
        size_t cap = s->lists_cap ? s->lists_cap * 2 : 64;
        if (reserve_ptrs(&s->refused, cap) < 0)
            return core->set_error(AE_ENOMEM, "epoll: out of memory for fd %d", fd);
        s->lists_cap = cap;
        s->events_want = cap > EP_EVENTS_MAX ? EP_EVENTS_MAX : (int)cap;
    }
    ep_fd *f = fd_data;
    f->fd = fd;
    s->by_fd[fd] = f;
    s->nfds = n;
    return 0;
}

static void ep_fd_fini(ae_loop *loop, void *state, int fd, void *fd_data)
{
    (void)loop;
    (void)fd_data;
    ep_state *s = state;
    s->by_fd[fd] = NULL;
}

/* ---- interest ------------------------------------------------------------------ */

static void refused_remove(ep_state *s, ep_fd *f)
{
    ep_fd *last = s->refused[--s->nrefused];
    s->refused[f->refused_at - 1] = last;
    last->refused_at = f->refused_at;
    f->refused_at = 0;
}

static void changed_add(ep_state *s, ep_fd *f)
{
    if (!f->changed) {
        f->changed = true;
        f->next_changed = s->changed;
        s->changed = f;
    }
}

/* Records what the core wants; epoll hears of it at the next wait. Never
 * fails and never allocates (fd_init made room in the lists). */
static int ep_fd_update(ae_loop *loop, void *state, int fd, void *fd_data, int old_events, int new_events)
{
    (void)loop;
    (void)fd;
    (void)old_events;
    ep_state *s = state;
    ep_fd *f = fd_data;
    f->want = (unsigned char)new_events;
    if (new_events == 0) {
        /* The fd may be closed and its number reused before the next
         * registration; readiness fetched before now is stale. */
        f->reset = true;
        if (f->refused_at)
            refused_remove(s, f);
    }
    if (f->refused_at)
        return 0; /* reported ready with whatever it wants now */
    if (f->want != f->kernel || f->reset)
        changed_add(s, f);
    return 0;
}

/* ---- applying the changes at the start of a wait ----------------------------------- */

/* The fd is closed (or epoll cannot take it for another reason, recorded as
 * the thread's error): the core drops its watchers' interest and tells them
 * with AE_ERROR. Returns io_ready's answer. */
static int report_invalid(ep_state *s, ep_fd *f)
{
    f->kernel = 0;
    return core->io_ready(s->loop, f->fd, AE_ERROR);
}

/* A new registration of f (its number may name another file than last
 * time). Returns 1 if done, 0 if the fd is invalid (error recorded). */
static int register_fd(ep_state *s, ep_fd *f)
{
    uint32_t gen = next_gen(f->gen);
    struct epoll_event ev = {.events = ep_mask(f->want), .data.u64 = ep_data(f->fd, gen)};
    if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, f->fd, &ev) == 0) {
        f->gen = gen;
        f->kernel = f->want;
        return 1;
    }
    switch (errno) {
    case EEXIST:
        /* Still registered: the same file, stopped and started again. */
        if (f->kernel == f->want)
            return 1;
        if (epoll_ctl(s->epfd, EPOLL_CTL_MOD, f->fd, &ev) == 0) {
            f->gen = gen;
            f->kernel = f->want;
            return 1;
        }
        break;
    case EPERM:
        /* A regular file, a directory, /dev/null: always ready, as poll(2)
         * and libev report them. */
        f->kernel = 0;
        s->refused[s->nrefused++] = f;
        f->refused_at = (uint32_t)s->nrefused;
        return 1;
    case EBADF:
        core->set_error(AE_EBADF, "epoll: fd %d was closed while watched", f->fd);
        return 0;
    default:
        break;
    }
    core->set_errno("epoll: epoll_ctl");
    return 0;
}

/* Brings epoll in line with what the core wants for f. Returns 1, or 0 if
 * the fd turned out invalid (the caller reports it). */
static int apply(ep_state *s, ep_fd *f)
{
    bool reset = f->reset;
    f->reset = false;
    if (f->want == 0) {
        if (f->kernel) {
            /* Fails only if the fd was closed already, which removed it
             * (unless another copy of it keeps the file open: then its
             * readiness shows up as stale and the set is rebuilt). */
            epoll_ctl(s->epfd, EPOLL_CTL_DEL, f->fd, NULL);
            f->kernel = 0;
        }
        return 1;
    }
    if (f->kernel == 0 || reset)
        return register_fd(s, f);
    if (f->kernel == f->want)
        return 1;
    struct epoll_event ev = {.events = ep_mask(f->want), .data.u64 = ep_data(f->fd, f->gen)};
    if (epoll_ctl(s->epfd, EPOLL_CTL_MOD, f->fd, &ev) == 0) {
        f->kernel = f->want;
        return 1;
    }
    if (errno == ENOENT) /* closed, and the number reused: watch the new file */
        return register_fd(s, f);
    if (errno == EBADF)
        core->set_error(AE_EBADF, "epoll: fd %d was closed while watched", f->fd);
    else
        core->set_errno("epoll: epoll_ctl");
    return 0;
}

static int add_pidfd(ep_state *s, size_t slot); /* optional section */

/* epoll holds a registration of a file that another copy of a closed fd
 * keeps open (after fork or dup): no epoll_ctl can reach it any more. Start
 * with a new epoll instance and register everything again. */
/* Replaces the epoll instance with a new, empty one (closing our copy of the
 * old one leaves other holders' registrations alone) and registers the
 * watched children's pidfds in it; the fds are the caller's to re-register. */
static int epoll_renew(ep_state *s, const char *what)
{
    int epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        return core->set_errno(what);
    close(s->epfd);
    s->epfd = epfd;
    s->rebuild = false;
    for (size_t i = 0; i < s->nchildren; i++) {
        int rc = s->children[i].pid ? add_pidfd(s, i) : 0;
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int rebuild(ep_state *s)
{
    int rc = epoll_renew(s, "epoll: epoll_create1");
    if (rc < 0)
        return rc;
    for (int fd = 0; fd < s->by_fd_cap; fd++) {
        ep_fd *f = s->by_fd[fd];
        if (!f || !f->kernel)
            continue;
        f->kernel = 0;
        changed_add(s, f);
    }
    return 0;
}

/* Applies every recorded change. Sets *reported if an fd was reported
 * invalid (the wait must then not block). Returns 1, or 0 if io_ready said
 * the loop is gone. Safe when a callback it runs changes more fds or waits
 * itself: each fd is taken off the list before it is worked on. */
static int apply_changes(ep_state *s, bool *reported)
{
    while (s->changed) {
        ep_fd *f = s->changed;
        s->changed = f->next_changed;
        f->changed = false;
        if (!apply(s, f)) {
            *reported = true;
            if (!report_invalid(s, f))
                return 0;
        }
    }
    return 1;
}

/* The child side of fork(): the epoll instance is shared with the parent,
 * and an epoll_ctl on it would change the parent's registrations. Close our
 * copy (that leaves the parent's set alone), start a new one, and forget
 * every registration: the core announces each fd's interest again. */
static int ep_fork(ae_loop *loop, void *state)
{
    (void)loop;
    ep_state *s = state;
    int rc = epoll_renew(s, "epoll: epoll_create1 after fork");
    if (rc < 0)
        return rc;
    for (int fd = 0; fd < s->by_fd_cap; fd++) {
        ep_fd *f = s->by_fd[fd];
        if (f)
            *f = (ep_fd){.fd = fd, .gen = f->gen};
    }
    s->changed = NULL;
    s->nrefused = 0;
    s->refused_next = 0;
    return 1;
}

/* ---- waiting ------------------------------------------------------------------------ */

/* Seconds to epoll_wait's milliseconds, rounded up: a timer must never be
 * woken for before its deadline. */
static int timeout_ms(double timeout)
{
    if (timeout < 0)
        return -1;
    double ms = timeout * 1000.0;
    if (ms >= (double)INT_MAX)
        return INT_MAX;
    int whole = (int)ms;
    return whole < ms ? whole + 1 : whole;
}

/* What epoll reported for f, as AE events. Errors and hang-ups wake both the
 * reader and the writer, as poll(2) does, so that the next read() or write()
 * finds out. */
static int ae_revents(uint32_t events, int want)
{
    int r = ((events & EPOLLIN) ? AE_READ : 0) | ((events & EPOLLOUT) ? AE_WRITE : 0);
    if (events & (EPOLLERR | EPOLLHUP))
        r |= want;
    return r & want;
}

static void child_event(ep_state *s, uint32_t slot); /* optional section */

/* Brings the outermost wait's buffer to the size fd_init asked for. Only
 * while no wait is walking it (depth 0): a callback that watches new fds
 * must never move the events its wait has still to dispatch. Once per
 * doubling of the fds; without memory the smaller buffer serves (fewer
 * events per wait, nothing lost). */
static void events_grow(ep_state *s)
{
    struct epoll_event *e = realloc(s->events, (size_t)s->events_want * sizeof *e);
    if (!e)
        return;
    s->events = e;
    s->events_cap = s->events_want;
}

static int ep_wait(ae_loop *loop, void *state, double timeout)
{
    (void)loop;
    ep_state *s = state;
    if (s->rebuild) {
        int rc = rebuild(s);
        if (rc < 0)
            return rc;
    }
    bool reported = false;
    if (!apply_changes(s, &reported))
        return 0;

    /* After apply_changes: a wait nested in its callbacks is at depth 0
     * too, and may have grown the buffer. */
    if (s->depth == 0 && s->events_cap < s->events_want)
        events_grow(s);
    struct epoll_event nested[EP_EVENTS_NESTED];
    struct epoll_event *events = s->depth == 0 ? s->events : nested;
    int cap = s->depth == 0 ? s->events_cap : EP_EVENTS_NESTED;
    if (cap == 0) { /* no fd yet: children only */
        events = nested;
        cap = EP_EVENTS_NESTED;
    }
    /* Room for the refused fds, which are always ready: at most half. */
    int nref = s->nrefused < (size_t)cap / 2 ? (int)s->nrefused : cap / 2;
    if (nref > 0 || reported)
        timeout = 0;

    int n = epoll_wait(s->epfd, events, cap - nref, timeout_ms(timeout));
    if (n < 0)
        return errno == EINTR ? 0 : core->set_errno("epoll: epoll_wait");

    /* First, before any callback can change anything: children, and
     * readiness of registrations we no longer know (see rebuild()). */
    for (int i = 0; i < n; i++) {
        uint32_t gen = (uint32_t)(events[i].data.u64 >> 32);
        uint32_t low = (uint32_t)events[i].data.u64;
        if (gen == EP_GEN_CHILD) {
            child_event(s, low);
            events[i].events = 0;
            continue;
        }
        ep_fd *f = low < (uint32_t)s->by_fd_cap ? s->by_fd[low] : NULL;
        if (!f || f->gen != gen || f->kernel == 0) {
            s->rebuild = true;
            events[i].events = 0;
        }
    }
    for (int i = 0; i < nref; i++) {
        ep_fd *f = s->refused[(s->refused_next + (size_t)i) % s->nrefused];
        events[n++] = (struct epoll_event){.events = ep_mask(f->want), .data.u64 = ep_data(f->fd, f->gen)};
    }
    if (s->nrefused)
        s->refused_next = (s->refused_next + (size_t)nref) % s->nrefused;

    /* Then the callbacks. Each may change any registration: readiness of an
     * fd whose interest went to 0 (or was registered anew) since the wait
     * is stale and dropped. Each may watch new fds too, and fd_init then
     * moves s->by_fd: read it through s at every event. events stays put
     * (depth > 0: see events_grow). */
    int dispatched = 0;
    s->depth++;
    for (int i = 0; i < n; i++) {
        if (!events[i].events)
            continue;
        uint32_t fd = (uint32_t)events[i].data.u64;
        ep_fd *f = s->by_fd[fd];
        if (f->gen != (uint32_t)(events[i].data.u64 >> 32) || f->reset || !f->want)
            continue;
        int revents = ae_revents(events[i].events, f->want);
        if (!revents)
            continue;
        dispatched++;
        if (!core->io_ready(s->loop, (int)fd, revents))
            return dispatched; /* the loop, and s with it, is gone */
    }
    s->depth--;
    return dispatched;
}

/* ---- optional: native child watching with pidfd_open(2) --------------------------------
 *
 * Without these hooks the core watches children with its SIGCHLD handler.
 * With them, each watched pid gets a pidfd, readable once the child exits;
 * the backend then calls child_ready() and the core reaps the child (the
 * backend never does) and reports it to every watcher of the pid in every
 * loop. Where the kernel has no pidfd_open (before 5.3) child_start answers
 * AE_ENOTSUP and the core emulates, pid by pid. */

/* Set once the kernel (or valgrind, which does not know the call) said
 * ENOSYS: every later child goes to the core's emulation without asking
 * again. Process-wide, and loops may run on several threads: atomic. */
static atomic_bool pidfd_missing;

static int pidfd_open_compat(pid_t pid)
{
#ifdef SYS_pidfd_open
    if (atomic_load_explicit(&pidfd_missing, memory_order_relaxed)) {
        errno = ENOSYS;
        return -1;
    }
    int fd = (int)syscall(SYS_pidfd_open, pid, 0); /* the fd is close-on-exec */
    if (fd < 0 && errno == ENOSYS)
        atomic_store_explicit(&pidfd_missing, true, memory_order_relaxed);
    return fd;
#else
    (void)pid;
    errno = ENOSYS;
    return -1;
#endif
}

/* One-shot: one report per exit, even if the core cannot reap the child
 * (another waitpid() got there first). */
static int add_pidfd(ep_state *s, size_t slot)
{
    int pidfd = s->children[slot].pidfd;
    /* The number may be that of an io fd closed since its watcher went, its
     * EPOLL_CTL_DEL still pending: that DEL, by number, would now remove
     * this pidfd's registration. The close removed the old one already. */
    ep_fd *old = pidfd < s->by_fd_cap ? s->by_fd[pidfd] : NULL;
    if (old && old->want == 0)
        old->kernel = 0;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLONESHOT, .data.u64 = ep_data((int)slot, EP_GEN_CHILD)};
    if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, pidfd, &ev) < 0)
        return core->set_errno("epoll: epoll_ctl on a pidfd");
    return 0;
}

static int ep_child_start(ae_loop *loop, void *state, pid_t pid)
{
    (void)loop;
    ep_state *s = state;
    size_t slot = s->nchildren;
    for (size_t i = 0; i < s->nchildren; i++) {
        if (s->children[i].pid == pid) {
            s->children[i].refs++; /* a pid watched twice is started twice */
            return 0;
        }
        if (!s->children[i].pid && slot == s->nchildren)
            slot = i;
    }
    int pidfd = pidfd_open_compat(pid);
    if (pidfd < 0) {
        /* No pidfd_open (ENOSYS), a sandbox that forbids it (EPERM), or no
         * such process (ESRCH): the core's own watching decides. */
        if (errno == ENOSYS || errno == EPERM || errno == ESRCH || errno == EINVAL)
            return AE_ENOTSUP;
        return core->set_errno("epoll: pidfd_open");
    }
    if (slot == s->nchildren) {
        ep_child *c = realloc(s->children, (s->nchildren + 1) * sizeof *c);
        if (!c) {
            close(pidfd);
            return core->set_error(AE_ENOMEM, "epoll: out of memory for child %d", (int)pid);
        }
        s->children = c;
        s->nchildren++;
    }
    s->children[slot] = (ep_child){.pid = pid, .pidfd = pidfd, .refs = 1};
    int rc = add_pidfd(s, slot);
    if (rc < 0) {
        close(pidfd);
        s->children[slot].pid = 0;
    }
    return rc;
}

static void ep_child_stop(ae_loop *loop, void *state, pid_t pid)
{
    (void)loop;
    ep_state *s = state;
    for (size_t i = 0; i < s->nchildren; i++) {
        ep_child *c = &s->children[i];
        if (c->pid != pid)
            continue;
        if (--c->refs == 0) {
            /* DEL before close: a forked copy of the pidfd would keep the
             * registration alive. */
            epoll_ctl(s->epfd, EPOLL_CTL_DEL, c->pidfd, NULL);
            close(c->pidfd);
            c->pid = 0;
        }
        return;
    }
}

/* From the first pass of wait(): no callback ran since epoll_wait, so the
 * slot is the one registered. */
static void child_event(ep_state *s, uint32_t slot)
{
    if (slot < s->nchildren && s->children[slot].pid)
        core->child_ready(s->loop, s->children[slot].pid);
}

/* ---- the tables and the entry ------------------------------------------------------------ */

static const ae_backend_ops epoll_ops = {
    .abi_version = AE_BACKEND_ABI_VERSION,
    .struct_size = sizeof(ae_backend_ops),
    .name = "epoll",
    .state_size = sizeof(ep_state),
    .fd_data_size = sizeof(ep_fd),
    .fd_data_align = _Alignof(ep_fd),
    .features = AE_BACKEND_F_REENTRANT, /* a nested wait uses its own buffer */
    .init = ep_init,
    .destroy = ep_destroy,
    .fd_init = ep_fd_init,
    .fd_fini = ep_fd_fini,
    .fd_update = ep_fd_update,
    .wait = ep_wait,
    .fork = ep_fork,
    .child_start = ep_child_start,
    .child_stop = ep_child_stop,
};

/* For a core whose services table predates child_ready: the same without
 * native children (the core emulates them). */
static const ae_backend_ops epoll_ops_no_children = {
    .abi_version = AE_BACKEND_ABI_VERSION,
    .struct_size = sizeof(ae_backend_ops),
    .name = "epoll",
    .state_size = sizeof(ep_state),
    .fd_data_size = sizeof(ep_fd),
    .fd_data_align = _Alignof(ep_fd),
    .features = AE_BACKEND_F_REENTRANT,
    .init = ep_init,
    .destroy = ep_destroy,
    .fd_init = ep_fd_init,
    .fd_fini = ep_fd_fini,
    .fd_update = ep_fd_update,
    .wait = ep_wait,
    .fork = ep_fork,
};

AE_BACKEND_ENTRY(services)
{
    /* Everything up to set_errno is what this backend cannot do without. */
    if (!services || services->version < 1 || !AE_BACKEND_SERVICES_HAS(services, set_errno))
        return NULL;
    core = services;
    int probe = epoll_create1(EPOLL_CLOEXEC);
    if (probe < 0) {
        services->set_errno("epoll: epoll_create1");
        return NULL;
    }
    close(probe);
    return AE_BACKEND_SERVICES_HAS(services, child_ready) ? &epoll_ops : &epoll_ops_no_children;
}
