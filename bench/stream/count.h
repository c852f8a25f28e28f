/* Allocation counting for the stream benchmarks: the executable's malloc
 * wins over libc's for every library in the process. */
#ifndef AE_BENCH_STREAM_COUNT_H
#define AE_BENCH_STREAM_COUNT_H

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);

static long allocs;

void *malloc(size_t n)
{
    allocs++;
    return __libc_malloc(n);
}

void *calloc(size_t n, size_t m)
{
    allocs++;
    return __libc_calloc(n, m);
}

void *realloc(void *p, size_t n)
{
    allocs++;
    return __libc_realloc(p, n);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One result line: impl mode size count, round trips per second, CPU
 * microseconds per round trip, allocations per round trip. */
static void report(const char *impl, const char *mode, long size, long count, double wall, double cpu, long a)
{
    printf("%-16s %-6s %6ld B %8ld rt  %9.0f rt/s  %6.2f us-cpu/rt  %5.2f allocs/rt\n", impl, mode, size, count,
           count / wall, cpu * 1e6 / (double)count, (double)a / (double)count);
}

#endif
