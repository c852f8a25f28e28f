/*
 * Judging one check from how its process ended and what it printed: passed,
 * or failed with a one-line reason (the failed assertion's message, the
 * signal that ended it, the deadline it missed, a sanitizer's report).
 */
#ifndef AE_CONFORMANCE_VERDICT_H
#define AE_CONFORMANCE_VERDICT_H

#include <stdbool.h>
#include <stddef.h>

#include "isolate.h"

typedef struct check_verdict {
    bool passed;
    char reason[512]; /* why it failed; empty when it passed */
} check_verdict;

/* Judges the isolated run of the check named name, which ran cmocka with
 * its subunit output ("test: NAME", then "success: NAME" or
 * "failure: NAME [" message lines "]"); timeout is the limit it ran under.
 * A check passes only if cmocka said so and its process then exited with
 * status 0 (a leak found at exit fails it). */
void verdict_judge(const char *name, const isolated_run *run, double timeout, check_verdict *verdict);

/* The name of signal signum ("SIGSEGV"), or "signal N" in buf. */
const char *verdict_signal_name(int signum, char *buf, size_t size);

#endif /* AE_CONFORMANCE_VERDICT_H */
