/*
 * What the stress scenarios share: the backend under test, the scale and the
 * seed taken from the environment, a seeded random generator, and helpers to
 * run a loop until a condition holds and to start gated child processes.
 */
#ifndef STRESS_COMMON_H
#define STRESS_COMMON_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "anyevent.h"

/* The backend named on the command line (argv[1]). */
extern const char *stress_backend;

/* Read STRESS_SCALE and STRESS_SEED and print what will be used. Call once,
 * first. STRESS_SCALE (a number in (0, 1], default 1) shrinks every size;
 * under valgrind without STRESS_SCALE it is 0.1, said on stdout, because the
 * full sizes take minutes per backend there. STRESS_SEED
 * (an unsigned integer) fixes the random seed, else it is taken from the
 * clock and the pid and printed so that a failure can be repeated. */
void stress_init(void);

/* full * STRESS_SCALE, at least minimum. */
long stress_scaled(long full, long minimum);

/* The seed of this run. */
uint64_t stress_seed(void);

/* A small seeded generator (xorshift64*): one per scenario, each started
 * from the run's seed and a scenario-specific salt. */
typedef struct stress_rng {
    uint64_t state;
} stress_rng;

void stress_rng_init(stress_rng *rng, uint64_t salt);
uint64_t stress_rng_next(stress_rng *rng);
/* Uniform in [0, bound), bound > 0. */
uint32_t stress_rng_below(stress_rng *rng, uint32_t bound);

/* A monotonic clock reading, in seconds. */
double stress_mono(void);

/* A new loop on the backend under test; fails the test if it cannot be made. */
ae_loop *stress_loop_new(void);

/* Raise RLIMIT_NOFILE's soft limit to the hard limit and return it. */
long stress_raise_nofile(void);

/* A last-resort guard for hangs outside the loop's own guards: after
 * seconds, SIGALRM prints the test's name, its current phase and progress
 * counter on stderr and ends the process by SIGALRM. */
void stress_guard_start(const char *test, unsigned seconds);
void stress_guard_stop(void);

/* What the guard prints: a phase name (a string constant) and a counter. */
void stress_phase(const char *phase);
extern volatile long stress_progress;

/* Run iterations of loop until done(ctx) is true. A repeating guard timer
 * keeps the loop from blocking forever; if done() is still false after
 * limit seconds, the test fails with "what" and describe(ctx)'s words. */
void stress_wait_for(ae_loop *loop, bool (*done)(void *ctx), void (*describe)(void *ctx, char *buf, size_t len),
                     void *ctx, double limit, const char *what);

/* Fork a child that runs /bin/sh -c script with gate_fd as its fd 3 and
 * ready_fd (if >= 0) as its fd 4; the script decides how it uses them. The
 * child runs only exec'd code (not a forked copy of this program), so that a
 * memory checker does not judge the copy of our heap. Fails the test if fork
 * fails. */
pid_t stress_spawn_shell(const char *script, int gate_fd, int ready_fd);

/* End a forked copy of this program through exec with the given exit code,
 * for the same reason. */
void stress_exec_exit(int code) __attribute__((noreturn));

#endif /* STRESS_COMMON_H */
