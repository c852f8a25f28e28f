#include <ev.h>
#include <stdlib.h>

#include "host.h"

const char *host_backend(void) { return "libev"; }

void *host_loop_new(void) { return ev_loop_new(EVFLAG_AUTO); }

void host_loop_free(void *native) { ev_loop_destroy(native); }

struct host_timer {
    ev_timer t;
    int *fired;
};

static void host_timer_cb(struct ev_loop *ev, ev_timer *w, int revents)
{
    (void)ev;
    (void)revents;
    struct host_timer *h = (struct host_timer *)w;
    (*h->fired)++;
    free(h); /* a fired one-shot ev_timer is stopped: ours to free */
}

void host_timer(void *native, double after, int *fired)
{
    struct host_timer *h = malloc(sizeof *h);
    h->fired = fired;
    ev_timer_init(&h->t, host_timer_cb, after, 0);
    ev_timer_start(native, &h->t);
}

void host_run(void *native) { ev_run(native, 0); }

void host_run_once(void *native) { ev_run(native, EVRUN_ONCE); }

void *host_loop_new_forkcheck(void) { return ev_loop_new(EVFLAG_AUTO | EVFLAG_FORKCHECK); }
