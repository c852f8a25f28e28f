/*
 * Running one program on several backends and comparing the traces; shared
 * by ae-difffuzz and the libFuzzer harness.
 */
#ifndef FUZZ_DIFFERENCE_H
#define FUZZ_DIFFERENCE_H

#include <stdbool.h>
#include <stdio.h>

#include "program.h"
#include "trace.h"

typedef struct fz_comparison {
    const char *const *backends;
    int nbackends;
    fz_trace *traces;           /* one per backend, of the last program */
    const char *failed_backend; /* after FZ_SETUP_FAILED */
    unsigned long long total_lines;
    unsigned long long runaways; /* programs that ran away (interp.c, RUNAWAY_LIMIT) */
} fz_comparison;

enum { FZ_SAME = 0, FZ_DIFFERENT = 1, FZ_SETUP_FAILED = -1 };

/* Prepare to compare the named backends (the first is the reference).
 * Returns 0, or -1 out of memory. */
int fz_comparison_init(fz_comparison *cmp, const char *const *backends, int nbackends);

/* Run prog on every backend: FZ_SAME, FZ_DIFFERENT, or FZ_SETUP_FAILED (a
 * loop, pipe or socketpair could not be made; failed_backend names where). */
int fz_compare(fz_comparison *cmp, const fz_program *prog);

/* For each backend whose trace differs from the first one's: the first
 * differing line of both. */
void fz_comparison_print_difference(const fz_comparison *cmp, FILE *out);

/* Every backend's full trace of the last program. */
void fz_comparison_print_traces(const fz_comparison *cmp, FILE *out);

void fz_comparison_free(fz_comparison *cmp);

#endif
