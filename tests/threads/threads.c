/*
 * The thread suite: loops in many threads at once, and fork() among them.
 * Run once per backend, named as the first argument. Sizes shrink with
 * THREADS_SCALE, and by themselves under valgrind (see common.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "common.h"
#include "scenarios.h"

static double started;

static int timer_start(void **state)
{
    (void)state;
    started = threads_mono();
    return 0;
}

static int timer_report(void **state)
{
    (void)state;
    printf("threads: took %.2f s\n", threads_mono() - started);
    return 0;
}

#define T(name) cmocka_unit_test_setup_teardown(name, timer_start, timer_report)

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s BACKEND\n", argv[0]);
        return 2;
    }
    threads_init(argv[1]);
    /* ae_loop_default() makes a loop of this backend. */
    setenv("ANYEVENT_BACKEND", argv[1], 1);
    const struct CMUnitTest tests[] = {
        T(test_loops_churn_while_plugins_load),
        T(test_loop_default_raced),
        T(test_loop_per_thread_2x_cores),
        T(test_loop_per_thread_64),
        T(test_async_worker_pool),
        T(test_async_send_no_lost_wakeup),
        T(test_fork_under_signal_storm),
    };
    return cmocka_run_group_tests_name(argv[1], tests, NULL, NULL);
}
