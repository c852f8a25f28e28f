/* A small library built on anyevent, as a library author would write it: it
 * knows nothing of the program's loop and only calls ae_loop_default(). The
 * host programs of this test link it and libev or libuv, never anyevent. */
#ifndef AE_TESTS_TICKER_H
#define AE_TESTS_TICKER_H

/* Waits for a byte on in_fd, then, 5 ms later (a timer), stores byte + 1 in
 * *result and frees its watchers. Returns 0 or a negative AE_E* code. */
int ticker_start(int in_fd, int *result);

/* The backend of ae_loop_default(), and of a new loop of ae_loop_new(NULL). */
const char *ticker_default_backend(void);
const char *ticker_new_loop_backend(void);

/* Whether the default loop runs inside the program's own default loop. */
void *ticker_default_native(void);

#endif
