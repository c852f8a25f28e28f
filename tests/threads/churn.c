/*
 * Loops created and freed in many threads while plugins load (this runs
 * first, in a fresh process: the first ae_loop_new of each backend loads its
 * plugin), and ae_loop_default() raced from many threads.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>

#include <cmocka.h>

#include "common.h"
#include "scenarios.h"

static const char *const names[] = {"libev", "libuv", "libevent", "epoll", "poll", "select"};
#define N_NAMES (sizeof names / sizeof names[0])

static atomic_int go;

static void on_tick(ae_watcher *w, void *arg)
{
    (void)w;
    (*(int *)arg)++;
}

static void *churn_run(void *arg)
{
    int index = (int)(intptr_t)arg;
    long rounds = threads_scaled(200, 10);
    while (!atomic_load(&go))
        ;
    for (long j = 0; j < rounds; j++) {
        const char *name = j % 2 ? threads_backend : names[(size_t)(index + j) % N_NAMES];
        ae_loop *loop = ae_loop_new(name);
        if (!loop) {
            if (ae_last_error_code() == AE_ENOENT && name != threads_backend)
                continue; /* a plugin not built here */
            return "ae_loop_new";
        }
        int ticks = 0;
        if (!ae_timer(loop, 0, 0, on_tick, &ticks) || ae_run(loop) != 0 || ticks != 1)
            return "timer";
        ae_loop_free(loop);
        if (j % 16 == 0) {
            const ae_backend_info *list;
            if (ae_backends(&list) < 1 || !strstr(ae_backend_names(), "poll"))
                return "ae_backends";
        }
    }
    return NULL;
}

void test_loops_churn_while_plugins_load(void **state)
{
    (void)state;
    enum { N = 8 };
    pthread_t th[N];
    atomic_store(&go, 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(pthread_create(&th[i], NULL, churn_run, (void *)(intptr_t)i), 0);
    atomic_store(&go, 1);
    for (int i = 0; i < N; i++) {
        void *why;
        assert_int_equal(pthread_join(th[i], &why), 0);
        if (why)
            fail_msg("thread %d: %s: %s", i, (char *)why, ae_last_error());
    }
}

struct default_race {
    atomic_int go;
    ae_loop *got;
};

static void *default_run(void *arg)
{
    struct default_race *r = arg;
    while (!atomic_load(&r->go))
        ;
    r->got = ae_loop_default();
    return NULL;
}

void test_loop_default_raced(void **state)
{
    (void)state;
    enum { N = 16 };
    long rounds = threads_scaled(50, 2);
    for (long round = 0; round < rounds; round++) {
        struct default_race rs[N];
        pthread_t th[N];
        memset(rs, 0, sizeof rs);
        for (int i = 0; i < N; i++)
            assert_int_equal(pthread_create(&th[i], NULL, default_run, &rs[i]), 0);
        for (int i = 0; i < N; i++)
            atomic_store(&rs[i].go, 1);
        for (int i = 0; i < N; i++)
            assert_int_equal(pthread_join(th[i], NULL), 0);
        for (int i = 0; i < N; i++) {
            assert_non_null(rs[i].got);
            assert_ptr_equal(rs[i].got, rs[0].got); /* one default loop */
        }
        assert_string_equal(ae_loop_backend(rs[0].got), threads_backend);
        ae_loop_free(rs[0].got);
    }
}
