#include <event2/event.h>
#include <stdlib.h>

#include "host.h"

const char *host_backend(void) { return "libevent"; }

void *host_loop_new(void) { return event_base_new(); }

void host_loop_free(void *native) { event_base_free(native); }

struct host_timer {
    struct event *ev;
    int *fired;
};

static void host_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct host_timer *h = arg;
    (*h->fired)++;
    event_free(h->ev);
    free(h);
}

void host_timer(void *native, double after, int *fired)
{
    struct host_timer *h = malloc(sizeof *h);
    h->fired = fired;
    h->ev = evtimer_new(native, host_timer_cb, h);
    struct timeval tv = {(time_t)after, (suseconds_t)((after - (double)(time_t)after) * 1e6)};
    evtimer_add(h->ev, &tv);
}

void host_run(void *native) { event_base_dispatch(native); }

void host_run_once(void *native) { event_base_loop(native, EVLOOP_ONCE); }

void *host_loop_new_forkcheck(void) { return NULL; }
