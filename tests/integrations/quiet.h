/* For the integration tests: whether a loop has gone quiet. Include after
 * <cmocka.h> and <anyevent.h>. */
#ifndef AE_TESTS_INTEGRATIONS_QUIET_H
#define AE_TESTS_INTEGRATIONS_QUIET_H

static void quiet_count_idle(ae_watcher *w, void *arg)
{
    (void)w;
    (*(int *)arg)++;
}

/* Whether one iteration that does not wait runs no callback of the loop's
 * other watchers: idle callbacks run only in an iteration in which nothing
 * else ran. */
static int next_iteration_runs_nothing(ae_loop *loop)
{
    int idle_runs = 0;
    ae_watcher *idle = ae_idle(loop, quiet_count_idle, &idle_runs);
    assert_non_null(idle);
    assert_true(ae_run_once(loop, AE_NOWAIT) >= 0);
    ae_watcher_free(idle);
    return idle_runs == 1;
}

#endif
