/*
 * Programs for the differential fuzzer: a small, fixed-size representation
 * of "what to do with the API", decoded from a byte string (a seeded PRNG's
 * bytes, or a fuzzer's input), so that the same program can be run on every
 * backend and the traces compared.
 *
 * A program has lanes. A lane owns at most one event source whose callbacks
 * may run in an order the contract leaves open relative to other sources
 * (one watched fd, or one signal watcher, or one child watcher), plus its own
 * timers, idle watchers and condvars. A callback only ever acts on objects of
 * its own lane, so the lanes never influence each other inside an iteration,
 * and each lane's sequence of events is fixed by the contract (see interp.c
 * for why).
 */
#ifndef FUZZ_PROGRAM_H
#define FUZZ_PROGRAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define FZ_MAX_LANES 6
#define FZ_SLOTS 6         /* watcher slots per lane */
#define FZ_CVS 2           /* condvar slots per lane */
#define FZ_SCRIPTS 8       /* action lists a watcher or condvar callback runs */
#define FZ_SCRIPT_LEN 3
#define FZ_MAX_STEPS 48    /* top-level steps of one program */
#define FZ_MAX_CHILDREN 2  /* fork()s per program */
/* New fds a burst watches: more than the first capacity of any per-fd array
 * of the core or a backend (64), so that the burst grows them all, from
 * inside a callback when a script does it. */
#define FZ_BURST_FDS 100

/* What a lane's event source is. */
enum fz_lane_kind {
    FZ_LANE_PLAIN,      /* timers, idle watchers and condvars only */
    FZ_LANE_PIPE_READ,  /* io watchers on a pipe's read end */
    FZ_LANE_PIPE_WRITE, /* io watchers on a pipe's write end */
    FZ_LANE_SOCKET,     /* io watchers on one end of a socketpair */
    FZ_LANE_SIGNAL,     /* one signal watcher at a time (SIGUSR1 or SIGUSR2) */
    FZ_LANE_CHILD,      /* one child watcher at a time */
    FZ_LANE_KINDS
};

/* Actions on a lane's objects, done by callbacks of the lane or at top level. */
enum fz_action_op {
    FZ_TIMER,       /* create a timer in slot: arg picks (after, interval) */
    FZ_IDLE,        /* create an idle watcher in slot */
    FZ_IO,          /* create an io watcher on the lane's fd, events = arg & 3 */
    FZ_SOURCE,      /* create the lane's signal or child watcher (arg: which child) */
    FZ_FREE,        /* ae_watcher_free(slot), also the running watcher */
    FZ_IO_SET,      /* ae_io_set(slot, arg & 3) */
    FZ_TIMER_SET,   /* ae_timer_set(slot, times picked by arg) */
    FZ_ACTIVE,      /* record ae_watcher_active(slot) */
    FZ_CV_NEW,      /* condvar slots: slot % FZ_CVS */
    FZ_CV_SEND,     /* value: arg */
    FZ_CV_CROAK,
    FZ_CV_BEGIN,
    FZ_CV_END,
    FZ_CV_FREE,
    FZ_CV_CB,       /* set the condvar's callback (script), or remove it (arg odd) */
    FZ_CV_READY,    /* record ae_cv_ready() and ae_cv_error() */
    FZ_FD_WRITE,    /* one byte: the lane's fd becomes readable (pipe write end: written to) */
    FZ_FD_DRAIN,    /* read everything: readable no more, writable again */
    FZ_FD_FILL,     /* write until EAGAIN: the lane's fd is not writable */
    FZ_FD_CLOSE_PEER, /* close the unwatched end: hang-up, end of file, EPIPE */
    FZ_FD_BURST,    /* once per program: watch FZ_BURST_FDS new fds (interp.c, "bursts") */
    FZ_ACTION_OPS
};

/* Steps only the top level (outside any callback) does. */
enum fz_top_op {
    FZ_TOP_ACTION,      /* an action on a lane */
    FZ_TOP_RUN_NOWAIT,  /* ae_run_once(loop, AE_NOWAIT) */
    FZ_TOP_RUN_ONCE,    /* ae_run_once(loop, 0) with a due guard timer, so it cannot block */
    FZ_TOP_RUN_BREAK,   /* ae_run(loop) with a due guard timer that calls ae_break() */
    FZ_TOP_RECV,        /* ae_cv_recv() with a due guard timer that sends it */
    FZ_TOP_RAISE,       /* raise(SIGUSR1 or SIGUSR2) */
    FZ_TOP_SPAWN,       /* fork() a child that exits at once with status arg */
    FZ_TOP_NOW_UPDATE,  /* ae_now_update() */
    FZ_TOP_OPS
};

typedef struct fz_action {
    uint8_t op;     /* enum fz_action_op */
    uint8_t slot;   /* FZ_SLOTS watcher slots, FZ_CVS condvar slots */
    uint8_t arg;
    uint8_t script; /* for created watchers and condvar callbacks */
} fz_action;

typedef struct fz_step {
    uint8_t op;   /* enum fz_top_op */
    uint8_t lane;
    uint8_t arg;
    fz_action action; /* FZ_TOP_ACTION */
} fz_step;

typedef struct fz_lane {
    uint8_t kind;   /* enum fz_lane_kind */
    uint8_t signal; /* signal lanes: 0 SIGUSR1, 1 SIGUSR2; socket lanes: 0 read, 1 write (without both_directions) */
} fz_lane;

typedef struct fz_program {
    /* Whether io watchers on a socket may ask for reading and writing (else
     * each socket lane keeps to one direction). Not decoded: the caller
     * chooses, see fz_program_decode(). */
    bool both_directions;
    int nlanes;
    fz_lane lanes[FZ_MAX_LANES];
    int script_len[FZ_SCRIPTS];
    fz_action scripts[FZ_SCRIPTS][FZ_SCRIPT_LEN];
    int nsteps;
    fz_step steps[FZ_MAX_STEPS];
} fz_program;

/* Decode bytes into *prog. Every byte string is a valid program (missing
 * bytes read as 0); what cannot apply at run time (no fd in the lane, an
 * empty slot) is skipped by the interpreter, the same way on every backend.
 * both_directions: see fz_program. */
void fz_program_decode(fz_program *prog, const uint8_t *data, size_t size, bool both_directions);

/* The io events a watcher of lane may ask for: a pipe's read end only
 * AE_READ, its write end only AE_WRITE (the other direction could only ever
 * be "ready" through a hang-up or an error, which select() cannot report as
 * that direction: see the report in interp.c), a socket both or one. */
int fz_lane_io_events(const fz_program *prog, const fz_lane *lane);

/* Fill buf with size bytes of a program for seed (a PRNG stream). */
void fz_program_bytes(uint64_t seed, uint8_t *buf, size_t size);

/* The number of bytes fz_program_bytes() uses for seed: varies the length. */
size_t fz_program_size(uint64_t seed);

/* Print the program, one step per line. */
void fz_program_print(FILE *out, const fz_program *prog);

/* Name of an action or lane kind, for traces and printing. */
const char *fz_action_name(int op);
const char *fz_lane_kind_name(int kind);

/* The signal of a signal lane. */
int fz_lane_signal(const fz_lane *lane);

/* The (after, interval) a timer action's arg picks: zero and "long" (never
 * due during a program) afters, and intervals of zero, "tiny" (below the
 * clock's resolution: repeats once per iteration) and "long". */
void fz_timer_times(uint8_t arg, double *after, double *interval);

#endif
