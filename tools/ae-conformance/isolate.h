/*
 * Running one piece of work in a child process of its own, so that a crash
 * or a hang there cannot take the caller down: the child gets a process group
 * of its own, a deadline, and a pipe for its stdout and stderr.
 */
#ifndef AE_CONFORMANCE_ISOLATE_H
#define AE_CONFORMANCE_ISOLATE_H

#include <stdbool.h>
#include <stddef.h>

typedef enum isolated_end {
    ISOLATED_EXITED,    /* code is the exit status */
    ISOLATED_SIGNALED,  /* code is the signal that ended it */
    ISOLATED_TIMED_OUT, /* killed at the deadline (code is 0) */
} isolated_end;

typedef struct isolated_run {
    isolated_end end;
    int code;
    double seconds;   /* from fork to the end */
    char *output;     /* what the child wrote on stdout and stderr, NUL-terminated; malloc'd */
    size_t length;    /* bytes in output */
    bool truncated;   /* output was longer than what is kept */
} isolated_run;

/* Installs what isolate_run() needs in this process: SIGINT, SIGTERM and
 * SIGHUP end the running child's group before ending this process. Call once,
 * before the first isolate_run(). Returns 0, or -1 with errno set. */
int isolate_init(void);

/* Runs work(arg) in a child process and returns how it ended in *run: the
 * child's exit status is what work() returns (through exit(), so atexit
 * handlers such as a leak checker's run). The child is the leader of a new
 * process group, has /dev/null on stdin and one pipe on stdout and stderr
 * (stdout unbuffered, so the two keep their order), and dies with this
 * process. At the deadline (timeout seconds, > 0) its whole group is killed
 * with SIGKILL; when it ends on its own, whatever it left running in its
 * group is killed too. Returns 0, or -1 with errno set if the child could not
 * be started (nothing to free then). */
int isolate_run(int (*work)(void *arg), void *arg, double timeout, isolated_run *run);

/* Frees what isolate_run() filled in. */
void isolated_run_free(isolated_run *run);

#endif /* AE_CONFORMANCE_ISOLATE_H */
