/* The built-in loop: the registration set and dispatch that "poll" and
 * "select" share; each variant adds only its wait call. */
#ifndef AE_PURESELECT_H
#define AE_PURESELECT_H

#include <poll.h>
#include <stddef.h>

#include "backend.h"

typedef struct ps_ready {
    int fd;
    int revents;  /* AE_* bits */
    unsigned gen; /* the fd's registration when it was found ready */
} ps_ready;

/* One buffer of ready fds per nesting depth, so that a wait re-entered from
 * a callback does not overwrite the results its caller is still walking. */
typedef struct ps_level {
    ps_ready *ready;
    size_t cap;
} ps_level;

typedef struct ps_state {
    struct pollfd *regs; /* registered fds, densely packed */
    size_t nregs, regs_cap;
    int *slot_of;     /* fd -> index in regs, -1 if none */
    unsigned *gen_of; /* fd -> registration count: tells stale readiness */
    size_t slot_cap;
    size_t nfds_seen; /* fds given to fd_init: regs has room for them all */
    ps_level *levels;
    size_t nlevels;
    int depth;
    int limit; /* highest fd + 1 the variant can watch, 0: none */
} ps_state;

int ps_init(ps_state *s, int limit);
void ps_destroy(ae_loop *loop, void *state);
int ps_fd_init(ae_loop *loop, void *state, int fd, void *fd_data);
int ps_fd_update(ae_loop *loop, void *state, int fd, void *fd_data, int old_events, int new_events);

/* Append a ready fd to buf[*k]. */
void ps_ready_add(const ps_state *s, ps_ready *buf, int *k, int fd, int revents);

/* A buffer for n ready fds at the current depth, or NULL (error set). */
ps_ready *ps_ready_buffer(ps_state *s, size_t n);

/* Report the n ready fds in buf to the core, skipping any whose registration
 * a callback removed meanwhile (its fd number may already be reused);
 * returns n. */
int ps_dispatch(ae_loop *loop, ps_state *s, ps_ready *buf, int n);

/* The timeout in whole milliseconds, rounded up so that a timer is never
 * found not yet due after the wait; -1 for none. */
int ps_timeout_ms(double timeout);

#endif
