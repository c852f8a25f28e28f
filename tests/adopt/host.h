/* The host program's side of the adoption suite: a native loop of one event
 * library, used directly, as a program that owns its loop would. One small
 * file per library (host_libev.c, ...), each linked into its own executable
 * with adopt.c. */
#ifndef AE_TESTS_HOST_H
#define AE_TESTS_HOST_H

const char *host_backend(void);   /* the anyevent backend name: "libev", ... */
void *host_loop_new(void);        /* the program's own native loop */
void host_loop_free(void *native);
/* A native one-shot timer of the host's own; *fired is incremented. */
void host_timer(void *native, double after, int *fired);
/* Run the native loop until nothing keeps it alive, as the host would. */
void host_run(void *native);
/* One iteration of the native loop, waiting if nothing is ready. */
void host_run_once(void *native);
/* A native loop that finds a fork by itself (libev's EVFLAG_FORKCHECK), or
 * NULL where the library has none. */
void *host_loop_new_forkcheck(void);

#endif
