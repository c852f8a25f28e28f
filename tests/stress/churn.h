/*
 * The churn scenario: a million random steps, taken from inside io, timer,
 * idle, signal and child callbacks, that create and free watchers of every
 * kind against a model of which watchers are alive.
 */
#ifndef STRESS_CHURN_H
#define STRESS_CHURN_H

/* The cmocka test (state unused). */
void test_churn_random_steps(void **state);

#endif /* STRESS_CHURN_H */
