/*
 * No lost wake-up in ae_async_send()'s fast path (a send that finds the
 * watcher's flag still set writes nothing): 4 threads publish counters with
 * relaxed stores and send, racing the loop as it clears the flag (each
 * sender often waits a little for the loop to take its last value, so that
 * sends keep landing just as the loop takes the flag). The loop's callback
 * takes every counter. A lost wake-up is a send that returned without
 * writing while the callback that took the flag missed the value: then no
 * callback comes for the value at all.
 *
 * It is found without a deadline, in episodes: each sender sends 3 values,
 * and once every send returned, a byte on a pipe (the probe, independent of
 * async watchers) starts a 0 s timer that fires twice, one iteration apart.
 * Each send whose flag was still set had written the wake-up fd before the
 * probe, so one of those iterations dispatched it: each sender's last value
 * must have been taken by then. Either way the episode ends, so a lost
 * wake-up fails the check instead of hanging the test.
 */
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <cmocka.h>

#include "common.h"
#include "scenarios.h"

enum { SENDERS = 4 };

struct lane {
    atomic_long published; /* relaxed: only the fences of ae_async_send order it */
    atomic_long taken;     /* by the loop's callback */
};

struct stress {
    struct lane lanes[SENDERS];
    long episodes;
    ae_watcher *work, *probe, *hop;
    int probe_pipe[2];
    pthread_barrier_t start, sent;
    atomic_long checked; /* episodes the probe has checked */
    long callbacks, hops;
    long missing; /* values not taken when the probe checked */
};

struct sender_arg {
    struct stress *s;
    int index;
};

static void *sender_run(void *arg)
{
    struct sender_arg *a = arg;
    struct stress *s = a->s;
    struct lane *lane = &s->lanes[a->index];
    unsigned seed = (unsigned)a->index * 2654435761u + 1;
    for (long e = 1; e <= s->episodes; e++) {
        pthread_barrier_wait(&s->start);
        /* Each sender's last send lands somewhere between the loop's
         * wake-up and its clearing of the flag another sender set. */
        for (int burst = 0; burst < 3; burst++) {
            seed = seed * 1103515245u + 12345u;
            for (volatile unsigned spin = (seed >> 16) % 2048; spin > 0; spin--)
                ;
            atomic_store_explicit(&lane->published, e * 3 + burst, memory_order_relaxed);
            if (ae_async_send(s->work) != 0)
                return "ae_async_send";
        }
        pthread_barrier_wait(&s->sent);
    }
    return NULL;
}

static void on_work(ae_watcher *w, void *arg)
{
    (void)w;
    struct stress *s = arg;
    s->callbacks++;
    for (int i = 0; i < SENDERS; i++)
        atomic_store_explicit(&s->lanes[i].taken,
                              atomic_load_explicit(&s->lanes[i].published, memory_order_relaxed),
                              memory_order_relaxed);
}

/* Two iterations after the probe: the wake-up fd, written by any send
 * whose flag is still set, was polled in at least one of them. */
static void on_hop(ae_watcher *w, void *arg)
{
    struct stress *s = arg;
    if (++s->hops < 2) {
        assert_int_equal(ae_watcher_start(w), 0);
        return;
    }
    s->hops = 0;
    long e = atomic_load_explicit(&s->checked, memory_order_relaxed) + 1;
    for (int i = 0; i < SENDERS; i++)
        if (atomic_load_explicit(&s->lanes[i].taken, memory_order_relaxed) != e * 3 + 2)
            s->missing++;
    if (e == s->episodes) {
        ae_watcher_unref(s->work); /* ae_run() returns */
        ae_watcher_unref(s->probe);
    }
    atomic_store_explicit(&s->checked, e, memory_order_release);
}

static void on_probe(ae_watcher *w, int revents, void *arg)
{
    (void)w;
    (void)revents;
    struct stress *s = arg;
    char byte;
    assert_int_equal(read(s->probe_pipe[0], &byte, 1), 1);
    assert_int_equal(ae_watcher_start(s->hop), 0);
}

/* Starts each episode, and once its sends all returned, sends the probe and
 * waits for its check. */
static void *coordinator_run(void *arg)
{
    struct stress *s = arg;
    for (long e = 1; e <= s->episodes; e++) {
        pthread_barrier_wait(&s->start);
        pthread_barrier_wait(&s->sent);
        if (write(s->probe_pipe[1], "p", 1) != 1)
            return "write(probe)";
        while (atomic_load_explicit(&s->checked, memory_order_acquire) < e)
            sched_yield();
    }
    return NULL;
}

void test_async_send_no_lost_wakeup(void **state)
{
    (void)state;
    static struct stress s;
    s = (struct stress){.episodes = threads_scaled(10000, 200)};
    assert_int_equal(pthread_barrier_init(&s.start, NULL, SENDERS + 1), 0);
    assert_int_equal(pthread_barrier_init(&s.sent, NULL, SENDERS + 1), 0);
    ae_loop *loop = threads_loop_new();
    s.work = ae_async(loop, on_work, &s);
    assert_int_equal(pipe(s.probe_pipe), 0);
    s.probe = ae_io(loop, s.probe_pipe[0], AE_READ, on_probe, &s);
    s.hop = ae_timer(loop, 0, 0, on_hop, &s);
    assert_non_null(s.work);
    assert_non_null(s.probe);
    assert_non_null(s.hop);
    assert_int_equal(ae_watcher_stop(s.hop), 0);

    pthread_t senders[SENDERS], coordinator;
    struct sender_arg args[SENDERS];
    for (int i = 0; i < SENDERS; i++) {
        args[i] = (struct sender_arg){&s, i};
        assert_int_equal(pthread_create(&senders[i], NULL, sender_run, &args[i]), 0);
    }
    assert_int_equal(pthread_create(&coordinator, NULL, coordinator_run, &s), 0);
    assert_int_equal(ae_run(loop), 0);
    void *why;
    for (int i = 0; i < SENDERS; i++) {
        assert_int_equal(pthread_join(senders[i], &why), 0);
        if (why)
            fail_msg("sender %d: %s", i, (char *)why);
    }
    assert_int_equal(pthread_join(coordinator, &why), 0);
    if (why)
        fail_msg("%s", (char *)why);

    printf("threads: %ld episodes of %d senders x 3 sends, %ld callbacks, %ld last values missed\n", s.episodes,
           SENDERS, s.callbacks, s.missing);
    assert_int_equal(atomic_load(&s.checked), s.episodes);
    assert_int_equal(s.missing, 0);
    ae_watcher_free(s.work);
    ae_watcher_free(s.probe);
    ae_watcher_free(s.hop);
    ae_loop_free(loop);
    close(s.probe_pipe[0]);
    close(s.probe_pipe[1]);
    pthread_barrier_destroy(&s.start);
    pthread_barrier_destroy(&s.sent);
}
