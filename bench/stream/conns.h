/* The conns workload's harness, shared by ae-stream-bench and its twins:
 * N TCP connections over loopback whose client ends a child process holds
 * (both ends in one process would need 2N fds; the limit here is 20,000),
 * and the server's phases: memory per connection from the allocator
 * (mallinfo2: in-use bytes of the heap and of mmapped blocks) fresh, after
 * one request on every connection and after the active phase, where 1% of
 * the connections make REQUESTS requests of 64 bytes in all, all of them in
 * flight at once (server CPU per request, getrusage). A request is a line of
 * 64 bytes; the reply is 64 bytes. One connection is served once and freed
 * before the count starts, so that what a loop makes once is not counted. */
#ifndef AE_BENCH_STREAM_CONNS_H
#define AE_BENCH_STREAM_CONNS_H

#include <errno.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define REQ_LEN 64

static void conns_die(const char *what)
{
    fprintf(stderr, "conns: %s: %s\n", what, strerror(errno));
    exit(1);
}

static double conns_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           (double)ru.ru_stime.tv_usec / 1e6;
}

static double conns_wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- the client process ---- */

static void ctl_send(int ctl, char c)
{
    if (write(ctl, &c, 1) != 1)
        conns_die("control write");
}

static char ctl_recv(int ctl)
{
    char c;
    if (read(ctl, &c, 1) != 1)
        exit(0); /* the server is gone */
    return c;
}

/* One request on fd and its whole reply, blocking. */
static void client_request(int fd, const char *req)
{
    if (write(fd, req, REQ_LEN) != REQ_LEN)
        conns_die("client write");
    size_t have = 0;
    char buf[REQ_LEN];
    while (have < REQ_LEN) {
        ssize_t n = read(fd, buf + have, REQ_LEN - have);
        if (n <= 0)
            conns_die("client read");
        have += (size_t)n;
    }
}

static void client_main(int port, long n, long requests, int ctl)
{
    int *fds = malloc((size_t)n * sizeof *fds);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    for (long i = 0; i < n; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        if (fds[i] < 0 || connect(fds[i], (struct sockaddr *)&a, sizeof a) < 0)
            conns_die("client connect");
        int one = 1;
        setsockopt(fds[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    char req[REQ_LEN];
    memset(req, 'r', sizeof req);
    req[REQ_LEN - 1] = '\n';
    ctl_send(ctl, 'c');
    for (;;) {
        char c = ctl_recv(ctl);
        if (c == 'w' || c == 'x') { /* one request on every connection, or on the first */
            for (long i = 0; i < (c == 'x' ? 1 : n); i++)
                client_request(fds[i], req);
        } else if (c == 'a') { /* 1% active, all in flight at once */
            long k = n / 100 > 0 ? n / 100 : 1, sent = 0, answered = 0;
            struct pollfd *p = calloc((size_t)k, sizeof *p);
            size_t *have = calloc((size_t)k, sizeof *have);
            for (long i = 0; i < k && sent < requests; i++, sent++) {
                p[i] = (struct pollfd){fds[i * (n / k)], POLLIN, 0};
                if (write(p[i].fd, req, REQ_LEN) != REQ_LEN)
                    conns_die("client write");
            }
            while (answered < requests) {
                if (poll(p, (nfds_t)k, -1) < 0)
                    conns_die("client poll");
                for (long i = 0; i < k; i++) {
                    if (!(p[i].revents & POLLIN))
                        continue;
                    char buf[REQ_LEN];
                    ssize_t r = read(p[i].fd, buf, REQ_LEN - have[i]);
                    if (r <= 0)
                        conns_die("client read");
                    have[i] += (size_t)r;
                    if (have[i] < REQ_LEN)
                        continue;
                    have[i] = 0;
                    answered++;
                    if (sent < requests) {
                        sent++;
                        if (write(p[i].fd, req, REQ_LEN) != REQ_LEN)
                            conns_die("client write");
                    }
                }
            }
            free(p);
            free(have);
        } else {
            break;
        }
        ctl_send(ctl, c);
    }
    for (long i = 0; i < n; i++)
        close(fds[i]);
    free(fds);
}

/* ---- the server's side ---- */

/* An implementation: add serves fd (connection i; -1 for the warm-up
 * connection, freed before the count) and its requests, adding REQ_LEN to
 * conns_served per reply; run_once runs one iteration (without waiting if
 * nowait: replies that libraries write from a later iteration); free_all frees every
 * connection's server, and closes the fds if closes_fds (libuv's uv_close
 * does; its warm-up connection is served on a dup). */
struct conns_impl {
    const char *name;
    void (*add)(int fd, long i, double rtimeout);
    void (*run_once)(int nowait);
    void (*free_all)(void);
    long (*allocs)(void);
    int closes_fds;
};

static long conns_served;

static size_t heap_in_use(void)
{
    struct mallinfo2 m = mallinfo2();
    return m.uordblks + m.hblkhd;
}

/* Serve until the client says it finished phase c. */
static void conns_phase(const struct conns_impl *im, int ctl, char c, long goal_bytes)
{
    conns_served = 0;
    ctl_send(ctl, c);
    while (conns_served < goal_bytes)
        im->run_once(0);
    /* Replies may still be queued: iterate until the client has them all. */
    struct pollfd p = {ctl, POLLIN, 0};
    while (poll(&p, 1, 0) == 0)
        im->run_once(1);
    if (ctl_recv(ctl) != c)
        conns_die("control");
}

static int conns_main(const struct conns_impl *im, long n, long requests, double rtimeout)
{
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, 4096) < 0 ||
        getsockname(lfd, (struct sockaddr *)&a, &alen) < 0)
        conns_die("listen");
    int ctl[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, ctl) < 0)
        conns_die("socketpair");
    pid_t pid = fork();
    if (pid < 0)
        conns_die("fork");
    if (pid == 0) {
        close(lfd);
        close(ctl[0]);
        client_main(ntohs(a.sin_port), n, requests, ctl[1]);
        _exit(0);
    }
    close(ctl[1]);
    int *fds = malloc((size_t)n * sizeof *fds);
    for (long i = 0; i < n; i++) {
        fds[i] = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fds[i] < 0)
            conns_die("accept");
        int one = 1;
        setsockopt(fds[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    close(lfd);
    if (ctl_recv(ctl[0]) != 'c')
        conns_die("control");
    im->add(fds[0], -1, rtimeout);
    conns_phase(im, ctl[0], 'x', REQ_LEN);
    im->free_all();

    size_t m0 = heap_in_use();
    for (long i = 0; i < n; i++)
        im->add(fds[i], i, rtimeout);
    size_t m1 = heap_in_use();
    conns_phase(im, ctl[0], 'w', n * REQ_LEN);
    size_t m2 = heap_in_use();
    double c0 = conns_cpu(), t0 = conns_wall();
    long a0 = im->allocs();
    conns_phase(im, ctl[0], 'a', requests * REQ_LEN);
    double cpu = conns_cpu() - c0, w = conns_wall() - t0;
    long allocs = im->allocs() - a0;
    size_t m3 = heap_in_use();
    char name[64];
    snprintf(name, sizeof name, "%s rt=%g", im->name, rtimeout);
    printf("conns %-26s %6ld conns  bytes/conn: fresh %6.0f, after 1 request %6.0f, after active %6.0f;"
           "  1%% active: %ld req %6.0f req/s  %6.2f us-cpu/req  %.2f allocs/req\n",
           name, n, (double)(m1 - m0) / (double)n, (double)(m2 - m0) / (double)n, (double)(m3 - m0) / (double)n,
           requests, (double)requests / w, cpu * 1e6 / (double)requests, (double)allocs / (double)requests);
    ctl_send(ctl[0], 'q');
    im->free_all();
    for (long i = 0; i < n && !im->closes_fds; i++)
        close(fds[i]);
    free(fds);
    close(ctl[0]);
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}

#endif
