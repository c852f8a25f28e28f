/* What a second epoll registration of a socket costs the kernel per event:
 * the libev plugin keeps every fd it checked in a private epoll set (events 0,
 * never waited on; backends/libev/libev.c probe_fd), so each wake-up of the
 * socket also runs that set's callback. Two groups of N socket pairs, each
 * read end in its group's epoll set, one group's also in a private set; a
 * round writes one byte to every pair of a group, takes the events with one
 * epoll_wait and reads every byte. The groups take turns, and the private set
 * moves to the other group halfway (so that neither group's own placement
 * decides). docs/benchmarks.md, "libev pipe chain at 1,000 active".
 *   build/bench/epoll-private-set [--n N] [--rounds R] */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void fail(const char *what)
{
    fprintf(stderr, "epoll-private-set: %s: %s\n", what, strerror(errno));
    exit(1);
}

static double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec * 1e-3;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

typedef struct group {
    int ep;
    int (*pairs)[2];
} group;

/* One round on g: a byte to every pair, one epoll_wait, every byte read. */
static double round_us(group *g, int n, struct epoll_event *events)
{
    char byte = 'e';
    double t0 = now_us();
    for (int i = 0; i < n; i++)
        if (send(g->pairs[i][1], &byte, 1, 0) != 1)
            fail("send");
    int got = 0;
    while (got < n) {
        int k = epoll_wait(g->ep, events, n, -1);
        if (k < 0)
            fail("epoll_wait");
        for (int j = 0; j < k; j++)
            if (recv(g->pairs[events[j].data.u32][0], &byte, 1, 0) != 1)
                fail("recv");
        got += k;
    }
    return now_us() - t0;
}

static void private_set(int priv, group *g, int n, int op)
{
    for (int i = 0; i < n; i++) {
        struct epoll_event e = {0}; /* no events: never reported, as the plugin's */
        if (epoll_ctl(priv, op, g->pairs[i][0], &e) < 0)
            fail("epoll_ctl (private set)");
    }
}

int main(int argc, char **argv)
{
    int n = 1000, rounds = 201;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--n"))
            n = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--rounds"))
            rounds = atoi(argv[i + 1]);
    }
    if (n < 1 || rounds < 2) {
        fprintf(stderr, "usage: epoll-private-set [--n N (>= 1)] [--rounds R (>= 2)]\n");
        return 2;
    }
    group g[2];
    for (int k = 0; k < 2; k++) {
        g[k].ep = epoll_create1(EPOLL_CLOEXEC);
        g[k].pairs = malloc((size_t)n * sizeof *g[k].pairs);
        if (g[k].ep < 0 || !g[k].pairs)
            fail("setup");
        for (int i = 0; i < n; i++) {
            if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, g[k].pairs[i]) < 0)
                fail("socketpair (ulimit -n >= 4 N + 10)");
            struct epoll_event e = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
            if (epoll_ctl(g[k].ep, EPOLL_CTL_ADD, g[k].pairs[i][0], &e) < 0)
                fail("epoll_ctl");
        }
    }
    int priv = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event *events = malloc((size_t)n * sizeof *events);
    double *t[2] = {malloc((size_t)rounds * sizeof(double)), malloc((size_t)rounds * sizeof(double))};
    if (priv < 0 || !events || !t[0] || !t[1])
        fail("setup");
    double one[2], both[2];
    for (int phase = 0; phase < 2; phase++) {
        int with = phase; /* the group also in the private set */
        private_set(priv, &g[with], n, EPOLL_CTL_ADD);
        for (int r = 0; r < rounds; r++)
            for (int k = 0; k < 2; k++) {
                int which = r % 2 ? 1 - k : k;
                t[which][r] = round_us(&g[which], n, events);
            }
        both[phase] = median(t[with], rounds);
        one[phase] = median(t[1 - with], rounds);
        private_set(priv, &g[with], n, EPOLL_CTL_DEL);
        printf("private set on group %d: one set %.0f us, also in the private set %.0f us per round of %d "
               "events (medians of %d): %+.0f ns per event\n",
               with, one[phase], both[phase], n, rounds, (both[phase] - one[phase]) * 1e3 / n);
    }
    printf("both phases: %+.0f ns per event\n", (both[0] + both[1] - one[0] - one[1]) * 1e3 / (2.0 * n));
    return 0;
}
