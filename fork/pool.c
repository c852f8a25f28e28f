/* ae_pool: RPC workers forked from one template, after AnyEvent::Fork::Pool.
 * Calls wait in a queue and go to the least loaded worker below `load`; the
 * first worker starts at once, more after `start` s of calls still waiting
 * (up to `max`); a timer every `stop` s retires workers idle that long, down
 * to `idle`. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "parent.h"

#define AE_POOL_MAGIC 0x6165706cu /* "aepl" */

struct worker;

/* A call: queued (data held), then in flight on a worker. */
struct pool_call {
    struct pool_call *next, *prev;
    struct ae_pool *pool;
    struct worker *worker;
    ae_rpc_cb cb;
    void *arg;
    size_t len;
    unsigned char data[];
};

struct worker {
    ae_rpc *r;
    int load;
    bool retired; /* out of the pool: freed when its last call is answered */
    double idle_since;
};

struct ae_pool {
    uint32_t magic;
    ae_fork_ctx *ctx;
    ae_pool *next, *prev;
    ae_fork *tmpl;
    char *handler;
    ae_pool_opts o;
    struct worker **w;
    int nw, capw;
    struct pool_call *queue, *queue_tail; /* waiting, oldest first */
    struct pool_call *flying;             /* sent to a worker */
    ae_watcher *start_timer, *stop_timer;
    bool freed;
    int calling;
};

static void list_add(struct pool_call **head, struct pool_call *c)
{
    c->prev = NULL;
    c->next = *head;
    if (*head)
        (*head)->prev = c;
    *head = c;
}

static void list_del(struct pool_call **head, struct pool_call *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        *head = c->next;
    if (c->next)
        c->next->prev = c->prev;
}

void ae__pool_destroy(ae_pool *pool)
{
    ae_fork_ctx *ctx = pool->ctx;
    if (pool->prev)
        pool->prev->next = pool->next;
    else
        ctx->pools = pool->next;
    if (pool->next)
        pool->next->prev = pool->prev;
    ae_watcher_free(pool->start_timer);
    ae_watcher_free(pool->stop_timer);
    while (pool->queue) {
        struct pool_call *c = pool->queue;
        pool->queue = c->next;
        free(c);
    }
    while (pool->flying) { /* their ae_rpc forgets them without calling back */
        struct pool_call *c = pool->flying;
        pool->flying = c->next;
        if (c->worker->retired && --c->worker->load == 0)
            free(c->worker);
        free(c);
    }
    for (int i = 0; i < pool->nw; i++)
        free(pool->w[i]);
    free(pool->w);
    free(pool->handler);
    pool->magic = 0;
    free(pool);
}

/* Out of the pool; its ae_rpc finishes what it has, then the worker exits. */
static void retire(ae_pool *pool, int i)
{
    struct worker *w = pool->w[i];
    pool->w[i] = pool->w[--pool->nw];
    w->retired = true;
    ae_rpc_free(w->r);
    if (w->load == 0)
        free(w);
}

static void maybe_finish(ae_pool *pool)
{
    if (!pool->freed || pool->calling || pool->queue || pool->flying)
        return;
    while (pool->nw)
        retire(pool, pool->nw - 1);
    ae__pool_destroy(pool);
}

static int add_worker(ae_pool *pool)
{
    if (pool->nw == pool->capw) {
        int cap = pool->capw ? 2 * pool->capw : 4;
        struct worker **w = realloc(pool->w, (size_t)cap * sizeof *w);
        if (!w)
            return ae__set_error(AE_ENOMEM, "out of memory");
        pool->w = w;
        pool->capw = cap;
    }
    struct worker *w = calloc(1, sizeof *w);
    ae_fork *p = w ? ae_fork_fork(pool->tmpl) : NULL;
    ae_rpc *r = p ? ae_rpc_new(p, pool->handler) : NULL;
    if (!r) {
        free(w);
        return w ? ae_last_error_code() : ae__set_error(AE_ENOMEM, "out of memory");
    }
    w->r = r;
    w->idle_since = ae_now(pool->ctx->loop);
    pool->w[pool->nw++] = w;
    return 0;
}

static void on_reply(ae_rpc *r, const void *reply, size_t len, int err, void *arg);

static void dispatch(ae_pool *pool)
{
    while (pool->queue) {
        struct worker *best = NULL;
        for (int i = 0; i < pool->nw; i++)
            if (pool->w[i]->load < pool->o.load && (!best || pool->w[i]->load < best->load))
                best = pool->w[i];
        if (!best) {
            if (pool->nw == 0 && add_worker(pool) == 0)
                continue; /* the first worker at once */
            break;
        }
        struct pool_call *c = pool->queue;
        if (ae_rpc_call(best->r, c->data, c->len, on_reply, c) < 0)
            break; /* no memory: the calls wait for the next reply */
        pool->queue = c->next;
        if (!pool->queue)
            pool->queue_tail = NULL;
        c->worker = best;
        best->load++;
        list_add(&pool->flying, c);
    }
    if (pool->queue && pool->nw < pool->o.max && !ae_watcher_active(pool->start_timer))
        ae_timer_set(pool->start_timer, pool->o.start, 0);
}

static void on_reply(ae_rpc *r, const void *reply, size_t len, int err, void *arg)
{
    struct pool_call *c = arg;
    ae_pool *pool = c->pool;
    struct worker *w = c->worker;
    list_del(&pool->flying, c);
    w->load--;
    w->idle_since = ae_now(pool->ctx->loop);
    if (!w->retired && ae_rpc_error(r)) { /* it died: its other calls fail too */
        for (int i = 0; i < pool->nw; i++)
            if (pool->w[i] == w) {
                retire(pool, i); /* frees w if this was its last call */
                break;
            }
    } else if (w->retired && w->load == 0) {
        free(w);
    }
    pool->calling++;
    if (c->cb)
        c->cb(r, reply, len, err, c->arg);
    free(c);
    pool->calling--;
    if (!ae__loop_freeing(pool->ctx->loop))
        dispatch(pool);
    maybe_finish(pool);
}

static void on_start(ae_watcher *t, void *arg)
{
    (void)t;
    ae_pool *pool = arg;
    if (pool->queue && pool->nw < pool->o.max)
        add_worker(pool);
    dispatch(pool);
}

static void on_stop(ae_watcher *t, void *arg)
{
    (void)t;
    ae_pool *pool = arg;
    double now = ae_now(pool->ctx->loop);
    for (int i = pool->nw - 1; i >= 0 && pool->nw > pool->o.idle; i--)
        if (pool->w[i]->load == 0 && now - pool->w[i]->idle_since >= pool->o.stop)
            retire(pool, i);
}

ae_pool *ae_pool_new(ae_fork *tmpl, const char *handler_symbol, const ae_pool_opts *o)
{
    if (!ae__fork_ok(tmpl, "ae_pool_new"))
        return NULL;
    if (!handler_symbol) {
        ae__set_error(AE_EINVAL, "ae_pool_new: handler symbol is NULL");
        return NULL;
    }
    if (tmpl->ran) {
        ae__set_error(AE_ESTATE, "ae_pool_new: the template was run: it cannot fork any more");
        return NULL;
    }
    ae_pool_opts d = o ? *o : (ae_pool_opts){0};
    if (d.max < 0 || d.idle < 0 || d.load < 0 || !(d.start >= 0) || !(d.stop >= 0)) {
        ae__set_error(AE_EINVAL, "ae_pool_new: negative or NaN options");
        return NULL;
    }
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (d.max == 0)
        d.max = ncpu > 0 ? (int)ncpu : 1;
    if (d.load == 0)
        d.load = 2;
    if (d.start == 0)
        d.start = 0.1;
    if (d.stop == 0)
        d.stop = 10;
    if (d.idle > d.max)
        d.idle = d.max;
    ae_pool *pool = calloc(1, sizeof *pool);
    if (!pool) {
        ae__set_error(AE_ENOMEM, "out of memory");
        return NULL;
    }
    pool->magic = AE_POOL_MAGIC;
    pool->ctx = tmpl->ctx;
    pool->tmpl = tmpl;
    pool->o = d;
    pool->handler = strdup(handler_symbol);
    pool->start_timer = ae_timer(pool->ctx->loop, 0, 0, on_start, pool);
    pool->stop_timer = pool->start_timer ? ae_timer(pool->ctx->loop, d.stop, d.stop, on_stop, pool) : NULL;
    if (!pool->handler || !pool->stop_timer) {
        ae_watcher_free(pool->start_timer);
        free(pool->handler);
        free(pool);
        ae__set_error(AE_ENOMEM, "out of memory");
        return NULL;
    }
    ae_timer_stop(pool->start_timer);
    ae_watcher_unref(pool->stop_timer); /* housekeeping keeps no loop going */
    pool->next = pool->ctx->pools;
    if (pool->next)
        pool->next->prev = pool;
    pool->ctx->pools = pool;
    for (int i = 0; i < d.idle; i++)
        add_worker(pool);
    return pool;
}

int ae_pool_call(ae_pool *pool, const void *req, size_t len, ae_rpc_cb cb, void *arg)
{
    if (!pool || pool->magic != AE_POOL_MAGIC || pool->freed)
        return ae__set_error(AE_EINVAL, "ae_pool_call: not a live ae_pool");
    if ((!req && len) || len > AE_FORK_MAX_FRAME)
        return ae__set_error(AE_EINVAL, "ae_pool_call: bad request (NULL data, or more than %u bytes)",
                             AE_FORK_MAX_FRAME);
    struct pool_call *c = malloc(sizeof *c + len);
    if (!c)
        return ae__set_error(AE_ENOMEM, "out of memory");
    *c = (struct pool_call){.pool = pool, .cb = cb, .arg = arg, .len = len};
    if (len)
        memcpy(c->data, req, len);
    if (pool->queue_tail)
        pool->queue_tail->next = c;
    else
        pool->queue = c;
    pool->queue_tail = c;
    dispatch(pool);
    return 0;
}

void ae_pool_free(ae_pool *pool)
{
    if (!pool)
        return;
    if (pool->magic != AE_POOL_MAGIC || pool->freed) {
        ae__set_error(AE_EINVAL, "ae_pool_free: not a live ae_pool");
        return;
    }
    pool->freed = true;
    maybe_finish(pool);
}
