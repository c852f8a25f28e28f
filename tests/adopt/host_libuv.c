#include <stdlib.h>
#include <uv.h>

#include "host.h"

const char *host_backend(void) { return "libuv"; }

void *host_loop_new(void)
{
    uv_loop_t *uv = malloc(sizeof *uv);
    if (uv && uv_loop_init(uv) != 0) {
        free(uv);
        return NULL;
    }
    return uv;
}

void host_loop_free(void *native)
{
    /* Handles closed by others (anyevent's) finish their close here. */
    while (uv_loop_close(native) == UV_EBUSY)
        uv_run(native, UV_RUN_NOWAIT);
    free(native);
}

struct host_timer {
    uv_timer_t t;
    int *fired;
};

static void host_timer_closed(uv_handle_t *h) { free(h); }

static void host_timer_cb(uv_timer_t *t)
{
    struct host_timer *h = (struct host_timer *)t;
    (*h->fired)++;
    uv_close((uv_handle_t *)t, host_timer_closed);
}

void host_timer(void *native, double after, int *fired)
{
    struct host_timer *h = malloc(sizeof *h);
    h->fired = fired;
    uv_timer_init(native, &h->t);
    uv_timer_start(&h->t, host_timer_cb, (uint64_t)(after * 1000), 0);
}

void host_run(void *native) { uv_run(native, UV_RUN_DEFAULT); }

void host_run_once(void *native) { uv_run(native, UV_RUN_ONCE); }

void *host_loop_new_forkcheck(void) { return NULL; }
