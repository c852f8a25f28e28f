/* What the poll and select variants share: the set of registered fds and
 * the dispatch of ready ones. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pureselect.h"

int ps_init(ps_state *s, int limit)
{
    s->limit = limit;
    return 0;
}

void ps_destroy(ae_loop *loop, void *state)
{
    (void)loop;
    ps_state *s = state;
    free(s->regs);
    free(s->slot_of);
    free(s->gen_of);
    for (size_t i = 0; i < s->nlevels; i++)
        free(s->levels[i].ready);
    free(s->levels);
}

static short poll_events(int events)
{
    return (short)(((events & AE_READ) ? POLLIN : 0) | ((events & AE_WRITE) ? POLLOUT : 0));
}

int ps_fd_init(ae_loop *loop, void *state, int fd, void *fd_data)
{
    (void)loop;
    (void)fd_data;
    ps_state *s = state;
    if ((size_t)fd >= s->slot_cap) {
        /* In size_t: doubling an int past an fd near 2^30 would overflow. */
        size_t cap = s->slot_cap ? s->slot_cap : 64;
        while (cap <= (size_t)fd)
            cap *= 2;
        int *slots = realloc(s->slot_of, cap * sizeof *slots);
        if (!slots)
            return ae__set_error(AE_ENOMEM, "poll: out of memory");
        s->slot_of = slots;
        unsigned *gens = realloc(s->gen_of, cap * sizeof *gens);
        if (!gens)
            return ae__set_error(AE_ENOMEM, "poll: out of memory");
        s->gen_of = gens;
        for (size_t i = s->slot_cap; i < cap; i++) {
            slots[i] = -1;
            gens[i] = 0;
        }
        s->slot_cap = cap;
    }
    if (s->nfds_seen + 1 > s->regs_cap) {
        size_t cap = s->regs_cap ? s->regs_cap * 2 : 64;
        struct pollfd *r = realloc(s->regs, cap * sizeof *r);
        if (!r)
            return ae__set_error(AE_ENOMEM, "poll: out of memory");
        s->regs = r;
        s->regs_cap = cap;
    }
    s->nfds_seen++;
    return 0;
}

/* Never allocates: ps_fd_init made room for every fd. */
int ps_fd_update(ae_loop *loop, void *state, int fd, void *fd_data, int old_events, int new_events)
{
    (void)loop;
    (void)fd_data;
    ps_state *s = state;
    if (old_events == 0) {
        if (s->limit && fd >= s->limit)
            return ae__set_error(AE_ELIMIT, "select: fd %d is not below FD_SETSIZE (%d); use the poll backend", fd,
                                 s->limit);
        /* A closed fd comes back from poll() as POLLNVAL: AE_ERROR. */
        s->slot_of[fd] = (int)s->nregs;
        s->regs[s->nregs++] = (struct pollfd){.fd = fd, .events = poll_events(new_events)};
        return 0;
    }
    int slot = s->slot_of[fd];
    if (new_events) {
        s->regs[slot].events = poll_events(new_events);
        return 0;
    }
    struct pollfd last = s->regs[--s->nregs];
    if ((size_t)slot != s->nregs) {
        s->regs[slot] = last;
        s->slot_of[last.fd] = slot;
    }
    s->slot_of[fd] = -1;
    s->gen_of[fd]++;
    return 0;
}

void ps_ready_add(const ps_state *s, ps_ready *buf, int *k, int fd, int revents)
{
    buf[(*k)++] = (ps_ready){fd, revents, s->gen_of[fd]};
}

ps_ready *ps_ready_buffer(ps_state *s, size_t n)
{
    size_t d = (size_t)s->depth;
    if (d >= s->nlevels) {
        ps_level *lv = realloc(s->levels, (d + 1) * sizeof *lv);
        if (!lv) {
            ae__set_error(AE_ENOMEM, "poll: out of memory");
            return NULL;
        }
        memset(lv + s->nlevels, 0, (d + 1 - s->nlevels) * sizeof *lv);
        s->levels = lv;
        s->nlevels = d + 1;
    }
    ps_level *level = &s->levels[d];
    if (n > level->cap) {
        size_t cap = level->cap ? level->cap : 16;
        while (cap < n)
            cap *= 2;
        ps_ready *r = realloc(level->ready, cap * sizeof *r);
        if (!r) {
            ae__set_error(AE_ENOMEM, "poll: out of memory");
            return NULL;
        }
        level->ready = r;
        level->cap = cap;
    }
    return level->ready;
}

int ps_dispatch(ae_loop *loop, ps_state *s, ps_ready *buf, int n)
{
    s->depth++;
    for (int i = 0; i < n; i++)
        if (buf[i].gen == s->gen_of[buf[i].fd])
            ae_backend_io_ready(loop, buf[i].fd, buf[i].revents);
    s->depth--;
    return n;
}

int ps_timeout_ms(double timeout)
{
    if (timeout < 0)
        return -1;
    double ms = ceil(timeout * 1000.0);
    return ms >= INT_MAX ? INT_MAX : (int)ms;
}
