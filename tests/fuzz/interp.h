/*
 * The interpreter of the differential fuzzer: runs one program on a loop of
 * one backend and writes what it observed into a trace. Run the same program
 * on every backend: any difference between the traces is a bug (of a
 * backend, of the core, or of this trace's definition, see interp.c).
 */
#ifndef FUZZ_INTERP_H
#define FUZZ_INTERP_H

#include "program.h"
#include "trace.h"

/* Run prog on a new loop of backend, writing the trace into *out (emptied
 * first). Returns 0, or -1 when the program could not be set up (the loop,
 * a pipe or a socketpair could not be created): then *out holds the reason. */
int fz_run(const fz_program *prog, const char *backend, fz_trace *out);

#endif
