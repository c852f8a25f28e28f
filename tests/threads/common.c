/* Helpers shared by the thread scenarios: see common.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#ifdef HAVE_VALGRIND_H
#include <valgrind/valgrind.h>
#endif

#include "common.h"

#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

const char *threads_backend;
static double scale = 1.0;

static bool threads_under_asan(void)
{
#ifdef UNDER_ASAN
    return true;
#else
    return false;
#endif
}

bool threads_under_tsan(void)
{
#ifdef UNDER_TSAN
    return true;
#else
    return false;
#endif
}

bool threads_under_valgrind(void)
{
#ifdef HAVE_VALGRIND_H
    if (RUNNING_ON_VALGRIND)
        return true;
#endif
    const char *preload = getenv("LD_PRELOAD");
    return preload && strstr(preload, "vgpreload");
}

void threads_init(const char *backend)
{
    threads_backend = backend;
    const char *s = getenv("THREADS_SCALE");
    if (s && *s) {
        char *end;
        scale = strtod(s, &end);
        if (*end || !(scale > 0 && scale <= 1)) {
            fprintf(stderr, "THREADS_SCALE=%s: want a number in (0, 1]\n", s);
            exit(2);
        }
        printf("threads: scale %g (THREADS_SCALE)\n", scale);
    } else if (threads_under_asan()) {
        /* fork() copies ASan's shadow mappings: many times slower. */
        scale = 0.05;
        printf("threads: scale %g: under AddressSanitizer (set THREADS_SCALE to choose)\n", scale);
    } else if (threads_under_valgrind() || threads_under_tsan()) {
        /* Threads, and fork() above all, are many times slower there. */
        scale = 0.02;
        printf("threads: scale %g: under %s (set THREADS_SCALE to choose)\n", scale,
               threads_under_tsan() ? "ThreadSanitizer" : "valgrind");
    }
}

long threads_scaled(long full, long minimum)
{
    long n = (long)((double)full * scale);
    return n < minimum ? minimum : n;
}

double threads_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

ae_loop *threads_loop_new(void)
{
    ae_loop *loop = ae_loop_new(threads_backend);
    if (!loop)
        fail_msg("ae_loop_new(%s): %s", threads_backend, ae_last_error());
    return loop;
}
