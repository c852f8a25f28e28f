#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "anyevent.h"
#include "ticker.h"

typedef struct ticker {
    int fd;
    int byte;
    int *result;
    ae_watcher *io, *timer;
} ticker;

static void on_timer(ae_watcher *w, void *arg)
{
    (void)w;
    ticker *t = arg;
    *t->result = t->byte + 1;
    ae_watcher_free(t->timer);
    free(t);
}

static void on_read(ae_watcher *w, int revents, void *arg)
{
    (void)revents;
    ticker *t = arg;
    unsigned char c;
    if (read(t->fd, &c, 1) != 1)
        return;
    t->byte = c;
    ae_loop *loop = ae_watcher_loop(w);
    ae_watcher_free(w);
    t->timer = ae_timer(loop, 0.005, 0, on_timer, t);
}

int ticker_start(int in_fd, int *result)
{
    ae_loop *loop = ae_loop_default();
    if (!loop)
        return ae_last_error_code();
    ticker *t = calloc(1, sizeof *t);
    if (!t)
        return AE_ENOMEM;
    t->fd = in_fd;
    t->result = result;
    t->io = ae_io(loop, in_fd, AE_READ, on_read, t);
    if (!t->io) {
        free(t);
        return ae_last_error_code();
    }
    return 0;
}

const char *ticker_default_backend(void) { return ae_loop_backend(ae_loop_default()); }

const char *ticker_new_loop_backend(void)
{
    static char name[32];
    ae_loop *loop = ae_loop_new(NULL);
    if (!loop)
        return ae_last_error();
    snprintf(name, sizeof name, "%s", ae_loop_backend(loop));
    ae_loop_free(loop);
    return name;
}

void *ticker_default_native(void) { return ae_loop_native(ae_loop_default()); }
