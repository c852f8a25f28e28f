/* The DNS responder as a child process of a test or example: started with
 * its options, its port read from the first line it prints, stopped with
 * SIGTERM, its closing line of counters kept for the caller to read. The
 * child gets SIGTERM too if the parent dies first (PR_SET_PDEATHSIG). */
#ifndef DNS_RESPONDER_PROCESS_H
#define DNS_RESPONDER_PROCESS_H

#include <stddef.h>
#include <sys/types.h>

struct responder_process {
    pid_t pid;          /* 0 when not running */
    int out;            /* read end of its stdout, -1 when closed */
    unsigned port;
    char stats[512];    /* its "stats ..." line, after responder_stop() */
};

/* Start binary with the NULL-terminated options args (NULL for none) and
 * wait (at most 10 s) for its port. Returns 0, or -1 with a message in err;
 * nothing is left running on failure. */
int responder_start(struct responder_process *r, const char *binary,
                    const char *const *args, char *err, size_t errlen);

/* SIGTERM, read its counters, reap it. Returns 0 if it exited 0 and printed
 * its counters, else -1. Safe to call twice and after a failed start. */
int responder_stop(struct responder_process *r);

/* A counter from the stats line ("received", "kernel_drops", ...), or -1 if
 * there is no such counter (or no line). */
long responder_stat(const struct responder_process *r, const char *name);

#endif
