/*
 * The conformance suite's checks (tests/conformance.c) as the runner
 * (runner.c) sees them: one table of cmocka tests, and what they test.
 */
#ifndef AE_CONFORMANCE_H
#define AE_CONFORMANCE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

/* Every check of the suite, in its order; *count gets how many. */
const struct CMUnitTest *conformance_checks(size_t *count);

/* What the checks test, set before any runs: given is what they pass to
 * ae_loop_new() (a backend name, or the absolute path of a plugin file),
 * own_name what that backend calls itself (ae_loop_backend()), self the
 * absolute path of this program, which some checks run again as
 * `self --debug-probe`. The strings must outlive the checks. */
void conformance_configure(const char *given, const char *own_name, const char *self);

/* What `ae-conformance --debug-probe` does: create and free one loop, with
 * the backend ANYEVENT_BACKEND names, so that a check can read what
 * ANYEVENT_DEBUG=1 prints for a fresh process. Returns the exit status. */
int conformance_debug_probe(void);

/* The checks of tests/conformance_plugin.c (adoption through the plugin's
 * test host, waits, nesting, allocations, fork), in conformance.c's table;
 * configured by conformance_configure. */
void conformance_plugin_configure(const char *given, const char *own_name);
void test_adopt_watchers_fire_in_host_loop(void **state);
void test_adopt_timer_zero_next_host_iteration(void **state);
void test_adopt_timer_update_rearms(void **state);
void test_adopt_free_from_host_callbacks(void **state);
void test_adopt_core_runs_adopted_loop(void **state);
void test_adopt_hooks_in_host_iterations(void **state);
void test_wait_never_ends_before_timeout(void **state);
void test_nested_wait_when_reentrant(void **state);
void test_fd_update_allocates_nothing(void **state);
void test_fork_noticed_by_itself(void **state);
void test_fork_explicit(void **state);
void test_fork_twice(void **state);
void test_fork_io_reused_fd(void **state);
void test_adopt_fork_io_reused_fd(void **state);
void test_fork_renewal_failure_sticks(void **state);
void test_fork_bad_input(void **state);

#endif /* AE_CONFORMANCE_H */
