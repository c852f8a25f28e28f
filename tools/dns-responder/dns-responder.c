/*
 * dns-responder: a small DNS server on loopback for the tests and examples.
 *
 * It answers every A query for any name with one address, after a delay,
 * over UDP on 127.0.0.1. It is built on anyevent's "poll" loop: one io
 * watcher for the socket, one timer re-armed for the next answer due, and a
 * FIFO of answers waiting for their time, so a delay never serializes the
 * answers: a burst of a thousand queries is answered a delay later, all of it.
 *
 * The socket buffers are sized for such a burst (--buffer, forced past the
 * system's limit when allowed), and the kernel's count of datagrams dropped
 * for a full receive buffer (SO_RXQ_OVFL) is reported, so a test can check
 * that nothing was lost.
 *
 * Usage: dns-responder [options]
 *   --port P            UDP port (default 0: any free port)
 *   --delay-ms D        answer D milliseconds after the query (default 0)
 *   --address A.B.C.D   the address in every answer (default 192.0.2.1)
 *   --number-address    answer 10.x.y.z where x.y.z is the first number in
 *                       the name (host123.test -> 10.0.0.123), so callers
 *                       can check each answer belongs to its question
 *   --drop-attempts K   ignore the first K queries of each name (makes a
 *                       client time out and retry)
 *   --silent TEXT       never answer names containing TEXT
 *   --nxdomain TEXT     answer NXDOMAIN for names containing TEXT
 *   --buffer BYTES      socket receive and send buffer size (default 8 MiB)
 *
 * The first line on stdout is the port, so a parent can read it. On SIGTERM
 * or SIGINT it prints one line of counters on stdout and exits 0:
 *   stats received=N answered=N nxdomain=N dropped=N silent=N malformed=N
 *         send_errors=N deferred_sends=N max_pending=N kernel_drops=N
 *         rcvbuf=N sndbuf=N
 * (on one line). Other queries (AAAA, ...) get an empty NOERROR answer.
 */
#include <anyevent.h>

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "answer-queue.h"
#include "dns-wire.h"
#include "name-counts.h"

/* Answers due this close to now go out now, rather than one more wake-up
 * for a fraction of a millisecond. */
#define DUE_SLACK 0.0002

struct options {
    unsigned port;
    double delay;
    uint8_t address[4];
    int number_address;
    unsigned long drop_attempts;
    const char *silent, *nxdomain;
    int buffer;
};

struct stats {
    unsigned long received, answered, nxdomain, dropped, silent, malformed;
    unsigned long send_errors, deferred_sends;
    uint32_t kernel_drops;
};

struct responder {
    struct options opt;
    struct stats stats;
    ae_loop *loop;
    int fd;
    ae_watcher *io, *timer;
    int blocked; /* the socket's send buffer was full: waiting for AE_WRITE */
    struct answer_queue queue;
    struct name_counts names;
};

static void die(const char *what)
{
    fprintf(stderr, "dns-responder: %s\n", what);
    exit(2);
}

static void die_ae(const char *what)
{
    fprintf(stderr, "dns-responder: %s: %s\n", what, ae_last_error());
    exit(2);
}

static void die_errno(const char *what)
{
    fprintf(stderr, "dns-responder: %s: %s\n", what, strerror(errno));
    exit(2);
}

static unsigned long parse_number(const char *text, const char *option, unsigned long max)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(text, &end, 10);
    if (errno || end == text || *end || v > max || text[0] == '-') {
        fprintf(stderr, "dns-responder: %s wants a number up to %lu, not '%s'\n", option, max, text);
        exit(2);
    }
    return v;
}

static void usage(void)
{
    fputs("usage: dns-responder [--port P] [--delay-ms D] [--address A.B.C.D] [--number-address]\n"
          "                     [--drop-attempts K] [--silent TEXT] [--nxdomain TEXT] [--buffer BYTES]\n",
          stderr);
    exit(2);
}

static void parse_options(int argc, char **argv, struct options *o)
{
    static const struct option longopts[] = {
        {"port", required_argument, NULL, 'p'},
        {"delay-ms", required_argument, NULL, 'd'},
        {"address", required_argument, NULL, 'a'},
        {"number-address", no_argument, NULL, 'N'},
        {"drop-attempts", required_argument, NULL, 'k'},
        {"silent", required_argument, NULL, 's'},
        {"nxdomain", required_argument, NULL, 'x'},
        {"buffer", required_argument, NULL, 'b'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *o = (struct options){.buffer = 8 << 20};
    inet_pton(AF_INET, "192.0.2.1", o->address);
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'p': o->port = (unsigned)parse_number(optarg, "--port", 65535); break;
        case 'd': o->delay = parse_number(optarg, "--delay-ms", 3600000) / 1000.0; break;
        case 'a':
            if (inet_pton(AF_INET, optarg, o->address) != 1)
                die("--address wants an IPv4 address");
            break;
        case 'N': o->number_address = 1; break;
        case 'k': o->drop_attempts = parse_number(optarg, "--drop-attempts", 1000000); break;
        case 's': o->silent = optarg; break;
        case 'x': o->nxdomain = optarg; break;
        case 'b': o->buffer = (int)parse_number(optarg, "--buffer", INT_MAX / 2); break;
        default: usage();
        }
    }
    if (optind != argc)
        usage();
}

/* Ask for size; past net.core.[rw]mem_max only with CAP_NET_ADMIN (the
 * FORCE options), else the kernel caps it. Returns the size in effect. */
static int size_buffer(int fd, int force_option, int option, int size)
{
    if (setsockopt(fd, SOL_SOCKET, force_option, &size, sizeof size) < 0 &&
        setsockopt(fd, SOL_SOCKET, option, &size, sizeof size) < 0)
        die_errno("setsockopt(SO_RCVBUF/SO_SNDBUF)");
    int got = 0;
    socklen_t len = sizeof got;
    if (getsockopt(fd, SOL_SOCKET, option, &got, &len) < 0)
        die_errno("getsockopt");
    return got;
}

static int open_socket(const struct options *o, int *rcvbuf, int *sndbuf, unsigned *port)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die_errno("socket");
    *rcvbuf = size_buffer(fd, SO_RCVBUFFORCE, SO_RCVBUF, o->buffer);
    *sndbuf = size_buffer(fd, SO_SNDBUFFORCE, SO_SNDBUF, o->buffer);
    int on = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_RXQ_OVFL, &on, sizeof on) < 0)
        die_errno("setsockopt(SO_RXQ_OVFL)");
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)o->port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
        die_errno("bind 127.0.0.1");
    socklen_t len = sizeof sa;
    if (getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
        die_errno("getsockname");
    *port = ntohs(sa.sin_port);
    return fd;
}

static void set_blocked(struct responder *r, int blocked)
{
    if (r->blocked == blocked)
        return;
    r->blocked = blocked;
    if (ae_io_set(r->io, blocked ? AE_READ | AE_WRITE : AE_READ) < 0)
        die_ae("ae_io_set");
}

/* Send one answer. Returns 0 if it is done with (sent, or failed for good),
 * -1 if the send buffer is full and it must wait for AE_WRITE. */
static int send_answer(struct responder *r, const struct pending_answer *a)
{
    if (sendto(r->fd, a->packet, a->len, 0, (const struct sockaddr *)&a->to, sizeof a->to) >= 0) {
        r->stats.answered++;
        return 0;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) {
        r->stats.deferred_sends++;
        return -1;
    }
    r->stats.send_errors++;
    return 0;
}

/* Send every answer that is due, then arm the timer for the next one. */
static void send_due(struct responder *r)
{
    double now = ae_now(r->loop);
    struct pending_answer *a;
    while ((a = answer_queue_head(&r->queue)) && a->due <= now + DUE_SLACK) {
        if (send_answer(r, a) < 0) {
            set_blocked(r, 1);
            return;
        }
        answer_queue_pop(&r->queue);
    }
    set_blocked(r, 0);
    if (a && ae_timer_set(r->timer, a->due - now, 0) < 0)
        die_ae("ae_timer_set");
}

static int contains(const char *name, const char *text) { return text && strstr(name, text); }

/* 10.x.y.z from the first number in the name. */
static void number_address(const char *name, uint8_t out[4])
{
    unsigned long n = 0;
    const char *p = name + strcspn(name, "0123456789");
    for (; *p >= '0' && *p <= '9'; p++)
        n = (n * 10 + (unsigned long)(*p - '0')) & 0xFFFFFF;
    out[0] = 10;
    out[1] = (uint8_t)(n >> 16);
    out[2] = (uint8_t)(n >> 8);
    out[3] = (uint8_t)n;
}

static void handle_query(struct responder *r, const uint8_t *buf, size_t len,
                         const struct sockaddr_in *from)
{
    struct dns_question q;
    r->stats.received++;
    if (dns_read_query(buf, len, &q) < 0) {
        r->stats.malformed++;
        return;
    }
    if (r->opt.drop_attempts) {
        unsigned long seen = name_counts_bump(&r->names, q.name);
        if (seen == 0)
            die("out of memory for the names seen");
        if (seen <= r->opt.drop_attempts) {
            r->stats.dropped++;
            return;
        }
    }
    if (contains(q.name, r->opt.silent)) {
        r->stats.silent++;
        return;
    }
    int nxdomain = contains(q.name, r->opt.nxdomain) != 0;
    uint8_t numbered[4];
    const uint8_t *address = NULL;
    if (!nxdomain && q.type == DNS_TYPE_A && q.dnsclass == DNS_CLASS_IN) {
        address = r->opt.address;
        if (r->opt.number_address) {
            number_address(q.name, numbered);
            address = numbered;
        }
    }
    r->stats.nxdomain += (unsigned long)nxdomain;
    int was_empty = answer_queue_head(&r->queue) == NULL;
    struct pending_answer *a = answer_queue_push(&r->queue);
    if (!a)
        die("out of memory for the answer queue");
    a->due = ae_now(r->loop) + r->opt.delay;
    a->to = *from;
    a->len = dns_answer(buf, &q, nxdomain ? DNS_RCODE_NXDOMAIN : DNS_RCODE_NOERROR, address, a->packet);
    if (was_empty && !r->blocked && ae_timer_set(r->timer, r->opt.delay, 0) < 0)
        die_ae("ae_timer_set");
}

/* The kernel's count of datagrams dropped on this socket so far. */
static void note_kernel_drops(struct responder *r, struct msghdr *msg)
{
    for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR(msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_RXQ_OVFL) {
            uint32_t drops;
            memcpy(&drops, CMSG_DATA(c), sizeof drops);
            r->stats.kernel_drops = drops;
        }
    }
}

static void on_socket(ae_watcher *w, int revents, void *arg)
{
    (void)w;
    struct responder *r = arg;
    if (revents & AE_WRITE)
        send_due(r);
    if (!(revents & AE_READ))
        return;
    for (;;) {
        uint8_t buf[4096];
        union {
            struct cmsghdr align;
            char space[CMSG_SPACE(sizeof(uint32_t))];
        } control;
        struct sockaddr_in from;
        struct iovec iov = {.iov_base = buf, .iov_len = sizeof buf};
        struct msghdr msg = {
            .msg_name = &from, .msg_namelen = sizeof from,
            .msg_iov = &iov, .msg_iovlen = 1,
            .msg_control = control.space, .msg_controllen = sizeof control.space,
        };
        ssize_t n = recvmsg(r->fd, &msg, 0);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            if (errno == EINTR)
                continue;
            die_errno("recvmsg");
        }
        note_kernel_drops(r, &msg);
        if (msg.msg_namelen == sizeof from && from.sin_family == AF_INET)
            handle_query(r, buf, (size_t)n, &from);
    }
}

static void on_due(ae_watcher *w, void *arg)
{
    (void)w;
    struct responder *r = arg;
    if (!r->blocked)
        send_due(r);
}

static void on_stop(ae_watcher *w, int signum, void *arg)
{
    (void)w;
    (void)signum;
    ae_break(((struct responder *)arg)->loop);
}

int main(int argc, char **argv)
{
    struct responder r = {.fd = -1};
    parse_options(argc, argv, &r.opt);
    int rcvbuf, sndbuf;
    unsigned port;
    r.fd = open_socket(&r.opt, &rcvbuf, &sndbuf, &port);

    /* The built-in poll loop, whatever ANYEVENT_BACKEND says: the responder
     * is a fixed point for tests of the other backends. */
    r.loop = ae_loop_new("poll");
    if (!r.loop)
        die_ae("ae_loop_new");
    r.io = ae_io(r.loop, r.fd, AE_READ, on_socket, &r);
    r.timer = ae_timer(r.loop, 0, 0, on_due, &r);
    ae_watcher *term = ae_signal(r.loop, SIGTERM, on_stop, &r);
    ae_watcher *intr = ae_signal(r.loop, SIGINT, on_stop, &r);
    if (!r.io || !r.timer || !term || !intr)
        die_ae("cannot make the watchers");

    printf("%u\n", port);
    fflush(stdout);
    int rc = ae_run(r.loop);
    if (rc < 0)
        die_ae("ae_run");

    printf("stats received=%lu answered=%lu nxdomain=%lu dropped=%lu silent=%lu malformed=%lu"
           " send_errors=%lu deferred_sends=%lu max_pending=%zu kernel_drops=%lu"
           " rcvbuf=%d sndbuf=%d\n",
           r.stats.received, r.stats.answered, r.stats.nxdomain, r.stats.dropped,
           r.stats.silent, r.stats.malformed, r.stats.send_errors, r.stats.deferred_sends,
           r.queue.max_count, (unsigned long)r.stats.kernel_drops, rcvbuf, sndbuf);
    fflush(stdout);
    ae_loop_free(r.loop);
    close(r.fd);
    answer_queue_free(&r.queue);
    name_counts_clear(&r.names);
    return 0;
}
