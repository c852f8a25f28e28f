/* The thread scenarios, one cmocka test each (threads.c lists them). */
#ifndef THREADS_SCENARIOS_H
#define THREADS_SCENARIOS_H

void test_loops_churn_while_plugins_load(void **state); /* first: plugins not loaded yet */
void test_loop_default_raced(void **state);
void test_loop_per_thread_2x_cores(void **state);
void test_loop_per_thread_64(void **state);
void test_async_worker_pool(void **state);
void test_async_send_no_lost_wakeup(void **state);
void test_fork_under_signal_storm(void **state);

#endif
