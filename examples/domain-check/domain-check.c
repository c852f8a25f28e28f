/*
 * domain-check: the classic AnyEvent DNS fan-out, in C on anyevent + c-ares.
 *
 * It looks up one name in each of N domains (NAME.domain1.test, ... or the
 * domains of a file), an A query each (as AnyEvent::DNS::a), twice:
 *
 *   one at a time  each lookup started, then waited for on its own condvar
 *                  before the next one starts (what a blocking resolver does);
 *   all at once    every lookup started, each with ae_cv_begin() on one
 *                  condvar and ae_cv_end() in its callback, then one
 *                  ae_cv_recv() waits for all of them.
 *
 * and prints both wall times and the speed-up. With a DNS server that takes
 * D ms to answer, one at a time takes about N x D, all at once about D.
 *
 * Without --server it starts tools/dns-responder itself on a free loopback
 * port, answering every name after --delay-ms (default 20), and stops it at
 * the end (its counters are printed: nothing may be lost).
 *
 * Usage: domain-check [-n N] [--name NAME] [--domains FILE] [--delay-ms D]
 *                     [--server IP:PORT] [--responder PATH] [--mode both|one|all]
 *                     [--timeout-ms T] [--tries K] [-v]
 * The backend is the default one: set ANYEVENT_BACKEND=libev (poll, select,
 * libevent, libuv, ...) to choose.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netdb.h>

#include "anyevent-cares.h"
#include <ares_nameser.h>
#include "responder-process.h"

#ifndef DNS_RESPONDER_PATH
#define DNS_RESPONDER_PATH "dns-responder"
#endif

struct settings {
    unsigned long count;
    const char *name, *domains_file, *server, *responder, *mode;
    unsigned long delay_ms, timeout_ms, tries;
    int verbose;
};

struct lookup {
    char *host;
    int status, timeouts;
    char address[INET_ADDRSTRLEN];
    ae_cv *cv;
    int one_at_a_time; /* ae_cv_send() its own condvar, else ae_cv_end() */
};

struct round {
    double seconds;
    unsigned long resolved, failed, timeouts;
};

static void fail(const char *what, const char *why)
{
    fprintf(stderr, "domain-check: %s%s%s\n", what, why ? ": " : "", why ? why : "");
    exit(1);
}

static unsigned long parse_number(const char *text, const char *option, unsigned long min,
                                  unsigned long max)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(text, &end, 10);
    if (errno || end == text || *end || text[0] == '-' || v < min || v > max) {
        fprintf(stderr, "domain-check: %s wants a number from %lu to %lu, not '%s'\n", option,
                min, max, text);
        exit(2);
    }
    return v;
}

static void usage(void)
{
    fputs("usage: domain-check [-n N] [--name NAME] [--domains FILE] [--delay-ms D]\n"
          "                    [--server IP:PORT] [--responder PATH] [--mode both|one|all]\n"
          "                    [--timeout-ms T] [--tries K] [-v]\n",
          stderr);
    exit(2);
}

static void parse_settings(int argc, char **argv, struct settings *s)
{
    static const struct option longopts[] = {
        {"count", required_argument, NULL, 'n'},
        {"name", required_argument, NULL, 'N'},
        {"domains", required_argument, NULL, 'D'},
        {"delay-ms", required_argument, NULL, 'd'},
        {"server", required_argument, NULL, 's'},
        {"responder", required_argument, NULL, 'r'},
        {"mode", required_argument, NULL, 'm'},
        {"timeout-ms", required_argument, NULL, 't'},
        {"tries", required_argument, NULL, 'k'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *s = (struct settings){
        .count = 861, .name = "www", .responder = DNS_RESPONDER_PATH, .mode = "both",
        .delay_ms = 20, .timeout_ms = 2000, .tries = 3,
    };
    int c;
    while ((c = getopt_long(argc, argv, "n:v", longopts, NULL)) != -1) {
        switch (c) {
        case 'n': s->count = parse_number(optarg, "-n", 1, 1000000); break;
        case 'N': s->name = optarg; break;
        case 'D': s->domains_file = optarg; break;
        case 'd': s->delay_ms = parse_number(optarg, "--delay-ms", 0, 60000); break;
        case 's': s->server = optarg; break;
        case 'r': s->responder = optarg; break;
        case 'm': s->mode = optarg; break;
        case 't': s->timeout_ms = parse_number(optarg, "--timeout-ms", 1, 600000); break;
        case 'k': s->tries = parse_number(optarg, "--tries", 1, 100); break;
        case 'v': s->verbose = 1; break;
        default: usage();
        }
    }
    if (optind != argc || (strcmp(s->mode, "both") && strcmp(s->mode, "one") && strcmp(s->mode, "all")))
        usage();
}

static char *host_name(const char *name, const char *domain)
{
    size_t len = strlen(name) + 1 + strlen(domain) + 1;
    char *host = malloc(len);
    if (!host)
        fail("out of memory", NULL);
    snprintf(host, len, "%s.%s", name, domain);
    return host;
}

/* NAME.domain1.test ... NAME.domainN.test, or NAME.<each line of the file>
 * (at most N of them). Returns how many. */
static unsigned long make_lookups(const struct settings *s, struct lookup *lookups)
{
    if (!s->domains_file) {
        for (unsigned long i = 0; i < s->count; i++) {
            char domain[64];
            snprintf(domain, sizeof domain, "domain%lu.test", i + 1);
            lookups[i].host = host_name(s->name, domain);
        }
        return s->count;
    }
    FILE *in = fopen(s->domains_file, "r");
    if (!in)
        fail(s->domains_file, strerror(errno));
    unsigned long n = 0;
    char line[256];
    while (n < s->count && fgets(line, sizeof line, in)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] && line[0] != '#')
            lookups[n++].host = host_name(s->name, line);
    }
    fclose(in);
    if (!n)
        fail(s->domains_file, "no domains in it");
    return n;
}

/* The answer to one A query: its first address, as AnyEvent::DNS::a gives. */
static void on_answer(void *arg, int status, int timeouts, unsigned char *answer, int len)
{
    struct lookup *l = arg;
    l->timeouts = timeouts;
    struct ares_addrttl addresses[1];
    int count = 1;
    if (status == ARES_SUCCESS)
        status = ares_parse_a_reply(answer, len, NULL, addresses, &count);
    if (status == ARES_SUCCESS && count < 1)
        status = ARES_ENODATA;
    if (status == ARES_SUCCESS)
        inet_ntop(AF_INET, &addresses[0].ipaddr, l->address, sizeof l->address);
    l->status = status;
    int rc = l->one_at_a_time ? ae_cv_send(l->cv, NULL) : ae_cv_end(l->cv);
    if (rc < 0)
        fail("condvar", ae_last_error());
}

static ae_cares *make_resolver(ae_loop *loop, const struct settings *s, const char *server)
{
    struct ares_options o;
    memset(&o, 0, sizeof o);
    o.flags = ARES_FLAG_NOSEARCH; /* the names as given, over UDP */
    o.timeout = (int)s->timeout_ms;
    o.tries = (int)s->tries;
    o.ndomains = 0;              /* no search domains */
    /* Room for the answers to every query at once, should this process fall
     * behind reading them (capped by net.core.rmem_max). */
    o.socket_receive_buffer_size = 4 << 20;
    ae_cares *c;
    int status = ae_cares_new(loop, &o,
                              ARES_OPT_FLAGS | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES |
                                  ARES_OPT_DOMAINS | ARES_OPT_SOCK_RCVBUF,
                              &c);
    if (status != ARES_SUCCESS)
        fail("ae_cares_new", ares_strerror(status));
    status = ares_set_servers_ports_csv(ae_cares_channel(c), server);
    if (status != ARES_SUCCESS)
        fail(server, ares_strerror(status));
    return c;
}

static void tally(const struct lookup *lookups, unsigned long n, struct round *r)
{
    for (unsigned long i = 0; i < n; i++) {
        if (lookups[i].status == ARES_SUCCESS)
            r->resolved++;
        else
            r->failed++;
        r->timeouts += (unsigned long)lookups[i].timeouts;
    }
}

static void one_at_a_time(ae_loop *loop, ae_cares *c, struct lookup *lookups, unsigned long n,
                          struct round *r)
{
    double t0 = ae_time();
    for (unsigned long i = 0; i < n; i++) {
        struct lookup *l = &lookups[i];
        l->cv = ae_cv_new(loop);
        if (!l->cv)
            fail("ae_cv_new", ae_last_error());
        l->one_at_a_time = 1;
        ae_cares_query(c, l->host, ns_c_in, ns_t_a, on_answer, l);
        if (ae_cv_recv(l->cv, NULL) < 0)
            fail("ae_cv_recv", ae_last_error());
        ae_cv_free(l->cv);
        l->cv = NULL;
    }
    r->seconds = ae_time() - t0;
    tally(lookups, n, r);
}

static void all_at_once(ae_loop *loop, ae_cares *c, struct lookup *lookups, unsigned long n,
                        struct round *r)
{
    double t0 = ae_time();
    ae_cv *all = ae_cv_new(loop);
    if (!all)
        fail("ae_cv_new", ae_last_error());
    for (unsigned long i = 0; i < n; i++) {
        struct lookup *l = &lookups[i];
        l->cv = all;
        l->one_at_a_time = 0;
        if (ae_cv_begin(all) < 0)
            fail("ae_cv_begin", ae_last_error());
        ae_cares_query(c, l->host, ns_c_in, ns_t_a, on_answer, l);
    }
    if (ae_cv_recv(all, NULL) < 0)
        fail("ae_cv_recv", ae_last_error());
    r->seconds = ae_time() - t0;
    ae_cv_free(all);
    for (unsigned long i = 0; i < n; i++)
        lookups[i].cv = NULL;
    tally(lookups, n, r);
}

static void report(const char *label, unsigned long n, const struct round *r)
{
    printf("%-14s %lu names looked up in %.3f s (%lu resolved, %lu did not, %lu timeouts)\n",
           label, n, r->seconds, r->resolved, r->failed, r->timeouts);
}

static void show(const struct lookup *lookups, unsigned long n)
{
    for (unsigned long i = 0; i < n; i++)
        printf("  %s: %s\n", lookups[i].host,
               lookups[i].status == ARES_SUCCESS ? lookups[i].address
                                                 : ares_strerror(lookups[i].status));
}

int main(int argc, char **argv)
{
    struct settings s;
    parse_settings(argc, argv, &s);

    struct responder_process responder = {.out = -1};
    char server[128];
    if (s.server) {
        snprintf(server, sizeof server, "%s", s.server);
    } else {
        char delay[32], err[256];
        snprintf(delay, sizeof delay, "%lu", s.delay_ms);
        const char *const args[] = {"--delay-ms", delay, NULL};
        if (responder_start(&responder, s.responder, args, err, sizeof err) < 0)
            fail("cannot start the DNS responder", err);
        snprintf(server, sizeof server, "127.0.0.1:%u", responder.port);
    }

    int status = ares_library_init(ARES_LIB_INIT_ALL);
    if (status != ARES_SUCCESS)
        fail("ares_library_init", ares_strerror(status));
    ae_loop *loop = ae_loop_new(NULL);
    if (!loop)
        fail("ae_loop_new", ae_last_error());
    ae_cares *c = make_resolver(loop, &s, server);

    struct lookup *lookups = calloc(s.count, sizeof *lookups);
    if (!lookups)
        fail("out of memory", NULL);
    unsigned long n = make_lookups(&s, lookups);
    printf("domain-check: %lu names (%s ...), backend %s, server %s", n, lookups[0].host,
           ae_loop_backend(loop), server);
    if (!s.server)
        printf(" (dns-responder, answers after %lu ms)", s.delay_ms);
    printf("\n");

    struct round one = {0}, all = {0};
    if (strcmp(s.mode, "all") != 0) {
        one_at_a_time(loop, c, lookups, n, &one);
        report("one at a time:", n, &one);
        if (s.verbose)
            show(lookups, n);
    }
    if (strcmp(s.mode, "one") != 0) {
        all_at_once(loop, c, lookups, n, &all);
        report("all at once:", n, &all);
        if (s.verbose)
            show(lookups, n);
    }
    if (strcmp(s.mode, "both") == 0)
        printf("speed-up:      %.0fx\n", one.seconds / all.seconds);

    int exit_code = one.failed || all.failed ? 1 : 0;
    if (ae_cares_error(c)[0]) {
        fprintf(stderr, "domain-check: %s\n", ae_cares_error(c));
        exit_code = 1;
    }
    ae_cares_free(c);
    ae_loop_free(loop);
    ares_library_cleanup();
    for (unsigned long i = 0; i < n; i++)
        free(lookups[i].host);
    free(lookups);
    if (!s.server) {
        if (responder_stop(&responder) < 0) {
            fprintf(stderr, "domain-check: the DNS responder did not stop cleanly\n");
            exit_code = 1;
        } else {
            printf("responder:     %s\n", responder.stats + strlen("stats "));
            long drops = responder_stat(&responder, "kernel_drops");
            if (drops > 0)
                fprintf(stderr, "domain-check: the kernel dropped %ld queries on their way to the "
                                "responder (full receive buffer, rcvbuf=%ld): c-ares had to time out "
                                "and retry. Raise net.core.rmem_max, or run as root.\n",
                        drops, responder_stat(&responder, "rcvbuf"));
        }
    }
    return exit_code;
}
