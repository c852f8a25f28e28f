/* LD_PRELOAD module: the time spent in epoll_wait, epoll_ctl, send and recv
 * (the pipe chain's system calls), with their counts, appended as one line to
 * $AE_SYSCALL_TIME_OUT (else stderr) when the program exits:
 *   wait NS N ctl NS N send NS N recv NS N
 * A time no instruction count shows: the kernel's side of each call. Not
 * thread-safe (the pipe chain workers have one thread). docs/benchmarks.md,
 * "libev pipe chain at 1,000 active".
 *   LD_PRELOAD=build/bench/libae-syscall-time.so build/bench/ae-bench-libev pipechain ... */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/types.h>
#include <time.h>

/* Declared here, not through <sys/socket.h>, whose fortified inline recv
 * (_FORTIFY_SOURCE) would clash with this definition. */
ssize_t send(int fd, const void *buf, size_t len, int flags);
ssize_t recv(int fd, void *buf, size_t len, int flags);

static int (*real_epoll_wait)(int, struct epoll_event *, int, int);
static int (*real_epoll_ctl)(int, int, int, struct epoll_event *);
static ssize_t (*real_send)(int, const void *, size_t, int);
static ssize_t (*real_recv)(int, void *, size_t, int);
static uint64_t ns_wait, ns_ctl, ns_send, ns_recv;
static uint64_t n_wait, n_ctl, n_send, n_recv;

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void *next_symbol(const char *name)
{
    void *f = dlsym(RTLD_NEXT, name);
    if (!f) {
        fprintf(stderr, "ae-syscall-time: %s not found\n", name);
        abort();
    }
    return f;
}

/* Looked up before main: dlsym may allocate, which a worker would count
 * as an allocation of the timed run. */
__attribute__((constructor)) static void resolve(void)
{
    *(void **)&real_epoll_wait = next_symbol("epoll_wait");
    *(void **)&real_epoll_ctl = next_symbol("epoll_ctl");
    *(void **)&real_send = next_symbol("send");
    *(void **)&real_recv = next_symbol("recv");
}

#define TIMED(total, count, call)                                                                          \
    do {                                                                                                   \
        uint64_t t0_ = now_ns();                                                                           \
        r = call;                                                                                          \
        total += now_ns() - t0_;                                                                           \
        count++;                                                                                           \
    } while (0)

int epoll_wait(int ep, struct epoll_event *events, int max, int timeout)
{
    int r;
    TIMED(ns_wait, n_wait, real_epoll_wait(ep, events, max, timeout));
    return r;
}

int epoll_ctl(int ep, int op, int fd, struct epoll_event *event)
{
    int r;
    TIMED(ns_ctl, n_ctl, real_epoll_ctl(ep, op, fd, event));
    return r;
}

ssize_t send(int fd, const void *buf, size_t len, int flags)
{
    ssize_t r;
    TIMED(ns_send, n_send, real_send(fd, buf, len, flags));
    return r;
}

ssize_t recv(int fd, void *buf, size_t len, int flags)
{
    ssize_t r;
    TIMED(ns_recv, n_recv, real_recv(fd, buf, len, flags));
    return r;
}

__attribute__((destructor)) static void report(void)
{
    const char *path = getenv("AE_SYSCALL_TIME_OUT");
    FILE *f = path && *path ? fopen(path, "a") : stderr;
    if (!f)
        return;
    fprintf(f, "wait %llu %llu ctl %llu %llu send %llu %llu recv %llu %llu\n", (unsigned long long)ns_wait,
            (unsigned long long)n_wait, (unsigned long long)ns_ctl, (unsigned long long)n_ctl,
            (unsigned long long)ns_send, (unsigned long long)n_send, (unsigned long long)ns_recv,
            (unsigned long long)n_recv);
    if (f != stderr)
        fclose(f);
}
