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

#include <cmocka.h>

#include "common.h"
#include "scenarios.h"

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s BACKEND\n", argv[0]);
        return 2;
    }
    threads_init(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fork_under_signal_storm),
    };
    return cmocka_run_group_tests_name(argv[1], tests, NULL, NULL);
}
