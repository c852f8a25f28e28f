/* The thread scenarios, one cmocka test each (threads.c lists them). */
#ifndef THREADS_SCENARIOS_H
#define THREADS_SCENARIOS_H

void test_fork_under_signal_storm(void **state);

#endif
