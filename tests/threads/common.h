/*
 * What the thread scenarios share: the backend under test, the scale of the
 * sizes (THREADS_SCALE in (0, 1]; a tenth under valgrind unless set), and
 * small helpers.
 */
#ifndef THREADS_COMMON_H
#define THREADS_COMMON_H

#include <stdbool.h>

#include "anyevent.h"

extern const char *threads_backend;

/* Read THREADS_SCALE and print the scale used. Call once, first. */
void threads_init(const char *backend);

/* full * scale, at least minimum. */
long threads_scaled(long full, long minimum);

bool threads_under_valgrind(void);
bool threads_under_tsan(void); /* this program was built with -fsanitize=thread */

double threads_mono(void);

/* ae_loop_new(threads_backend), or the check fails. */
ae_loop *threads_loop_new(void);

#endif
