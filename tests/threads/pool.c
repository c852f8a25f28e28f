/*
 * A worker pool handing results to one loop through ae_async_send(): 8
 * threads, 1,000,000 results (scaled), every result seen exactly once and in
 * each worker's order, no callback on a worker thread, and none lost (the
 * loop runs until it has seen them all, under a deadline).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>

#include <cmocka.h>

#include "common.h"
#include "scenarios.h"

enum { WORKERS = 8 };

/* One worker's results: written by the worker, then published with a
 * release store; the loop reads up to what is published. */
struct lane {
    long *results;
    atomic_long published;
    long taken;
};

struct pool {
    struct lane lanes[WORKERS];
    long per_worker;
    ae_watcher *wake;
    pthread_t loop_thread;
    long seen, callbacks, foreign, out_of_order;
    atomic_long sends;
};

struct worker_arg {
    struct pool *pool;
    int index;
};

static void *worker_run(void *arg)
{
    struct worker_arg *a = arg;
    struct lane *lane = &a->pool->lanes[a->index];
    for (long k = 0; k < a->pool->per_worker; k++) {
        lane->results[k] = (long)a->index * a->pool->per_worker + k; /* the work's result */
        atomic_store_explicit(&lane->published, k + 1, memory_order_release);
        if (ae_async_send(a->pool->wake) != 0)
            return "ae_async_send";
        atomic_fetch_add_explicit(&a->pool->sends, 1, memory_order_relaxed);
    }
    return NULL;
}

static void on_results(ae_watcher *w, void *arg)
{
    struct pool *p = arg;
    p->callbacks++;
    if (!pthread_equal(pthread_self(), p->loop_thread))
        p->foreign++;
    for (int i = 0; i < WORKERS; i++) {
        struct lane *lane = &p->lanes[i];
        long upto = atomic_load_explicit(&lane->published, memory_order_acquire);
        for (; lane->taken < upto; lane->taken++, p->seen++)
            if (lane->results[lane->taken] != (long)i * p->per_worker + lane->taken)
                p->out_of_order++;
    }
    /* All in: ae_run() returns. Not freed yet: a worker may still be inside
     * its last ae_async_send(), after publishing its last result. */
    if (p->seen == WORKERS * p->per_worker)
        ae_watcher_unref(w);
}

static void on_deadline(ae_watcher *w, void *arg)
{
    (void)w;
    struct pool *p = arg;
    fail_msg("deadline: %ld of %ld results seen after %ld callbacks (a lost wake-up)", p->seen,
             WORKERS * p->per_worker, p->callbacks);
}

void test_async_worker_pool(void **state)
{
    (void)state;
    struct pool p = {.per_worker = threads_scaled(1000000, 16000) / WORKERS, .loop_thread = pthread_self()};
    for (int i = 0; i < WORKERS; i++) {
        p.lanes[i].results = calloc((size_t)p.per_worker, sizeof(long));
        assert_non_null(p.lanes[i].results);
    }
    ae_loop *loop = threads_loop_new();
    p.wake = ae_async(loop, on_results, &p);
    assert_non_null(p.wake);
    ae_watcher *deadline = ae_timer(loop, 120, 0, on_deadline, &p);
    ae_watcher_unref(deadline); /* ae_run() ends when the async watcher is unref'd */

    pthread_t threads[WORKERS];
    struct worker_arg args[WORKERS];
    double t0 = threads_mono();
    for (int i = 0; i < WORKERS; i++) {
        args[i] = (struct worker_arg){&p, i};
        assert_int_equal(pthread_create(&threads[i], NULL, worker_run, &args[i]), 0);
    }
    assert_int_equal(ae_run(loop), 0);
    double took = threads_mono() - t0;
    for (int i = 0; i < WORKERS; i++) {
        void *why;
        assert_int_equal(pthread_join(threads[i], &why), 0);
        if (why)
            fail_msg("worker %d: %s", i, (char *)why);
    }
    assert_int_equal(p.seen, WORKERS * p.per_worker);
    assert_int_equal(p.out_of_order, 0);
    assert_int_equal(p.foreign, 0);
    assert_int_equal(atomic_load(&p.sends), WORKERS * p.per_worker);
    printf("threads: %ld results from %d workers, %ld sends, %ld callbacks, in %.2f s\n", p.seen, WORKERS,
           (long)atomic_load(&p.sends), p.callbacks, took);
    ae_watcher_free(p.wake); /* the workers are joined: nobody sends any more */
    ae_watcher_free(deadline);
    ae_loop_free(loop);
    for (int i = 0; i < WORKERS; i++)
        free(p.lanes[i].results);
}
