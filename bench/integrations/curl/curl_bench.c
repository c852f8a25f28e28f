/*
 * ae-bench-curl: N fetches of small bodies from a local nginx (started here,
 * in a temporary folder, and always stopped), driven once by anyevent (the
 * curl integration, on one backend) and once by libcurl's own loop
 * (curl_multi_perform + curl_multi_poll), in interleaved repetitions.
 * Prints the medians of wall and CPU time of each and their ratio
 * (anyevent / curl_multi_poll); the target is at most 1.10.
 *
 *   ae-bench-curl [--backend NAME] [--fetches N] [--connections C] [--reps R]
 *
 * The backend defaults to ANYEVENT_BACKEND, else anyevent's own choice. One
 * process per backend, so event libraries are never mixed in one program.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "anyevent-curl.h"
#include "nginx_server.h"

#define BODY_MIN 200
#define BODY_SPREAD 800

struct options {
    const char *backend;
    long fetches;
    long connections;
    long reps;
};

struct fetch {
    CURL *easy;
    size_t received;
    char url[64];
};

struct round {
    struct fetch *fetches;
    long n;
    long done;
    long failed;
    size_t bytes;
};

static struct nginx_server server;
static size_t *body_size;

static _Noreturn void die(const char *fmt, const char *detail)
{
    fprintf(stderr, "ae-bench-curl: ");
    fprintf(stderr, fmt, detail);
    fputc('\n', stderr);
    nginx_stop(&server);
    exit(1);
}

static double clock_seconds(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    (void)data;
    struct fetch *f = arg;
    f->received += size * n;
    return size * n;
}

/* The same multi and easy handles for both drivers. */
static CURLM *round_start(struct round *r, const struct options *o)
{
    CURLM *multi = curl_multi_init();
    if (!multi)
        die("%s", "curl_multi_init failed");
    curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, o->connections);
    r->done = r->failed = 0;
    r->bytes = 0;
    for (long i = 0; i < r->n; i++) {
        struct fetch *f = &r->fetches[i];
        f->received = 0;
        f->easy = curl_easy_init();
        if (!f->easy)
            die("%s", "curl_easy_init failed");
        curl_easy_setopt(f->easy, CURLOPT_URL, f->url);
        curl_easy_setopt(f->easy, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(f->easy, CURLOPT_WRITEDATA, f);
        curl_easy_setopt(f->easy, CURLOPT_PRIVATE, f);
        curl_easy_setopt(f->easy, CURLOPT_NOSIGNAL, 1L);
        if (curl_multi_add_handle(multi, f->easy) != CURLM_OK)
            die("%s", "curl_multi_add_handle failed");
    }
    return multi;
}

/* A finished transfer (already removed from the multi). */
static void round_done(struct round *r, CURL *easy, CURLcode result)
{
    char *private_data = NULL;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, &private_data);
    struct fetch *f = (struct fetch *)private_data;
    long i = f - r->fetches;
    if (result != CURLE_OK || f->received != body_size[i])
        r->failed++;
    r->bytes += f->received;
    r->done++;
    curl_easy_cleanup(easy);
    f->easy = NULL;
}

static void round_finish(struct round *r, CURLM *multi)
{
    if (r->done != r->n || r->failed) {
        fprintf(stderr, "ae-bench-curl: %ld of %ld fetches done, %ld failed\n", r->done, r->n,
                r->failed);
        nginx_stop(&server);
        exit(1);
    }
    curl_multi_cleanup(multi);
}

static void on_done(ae_curl *ac, CURL *easy, CURLcode result, void *arg)
{
    (void)ac;
    round_done(arg, easy, result);
}

static void run_anyevent(struct round *r, const struct options *o, ae_loop *loop)
{
    CURLM *multi = round_start(r, o);
    ae_curl *ac = ae_curl_attach(loop, multi, on_done, r);
    if (!ac)
        die("ae_curl_attach: %s", strerror(errno));
    if (ae_run(loop) != 0)
        die("ae_run: %s", ae_last_error());
    if (ae_curl_error(ac))
        die("integration: %s", ae_curl_error(ac));
    ae_curl_detach(ac);
    round_finish(r, multi);
}

static void run_curl_poll(struct round *r, const struct options *o)
{
    CURLM *multi = round_start(r, o);
    int running = 1;
    while (running) {
        if (curl_multi_perform(multi, &running) != CURLM_OK)
            die("%s", "curl_multi_perform failed");
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(multi, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            CURL *easy = msg->easy_handle;
            CURLcode result = msg->data.result;
            curl_multi_remove_handle(multi, easy);
            round_done(r, easy, result);
        }
        if (running && curl_multi_poll(multi, NULL, 0, 1000, NULL) != CURLM_OK)
            die("%s", "curl_multi_poll failed");
    }
    round_finish(r, multi);
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, long n)
{
    qsort(v, (size_t)n, sizeof *v, by_value);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static long parse_long(const char *s, const char *name)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v <= 0)
        die("bad %s", name);
    return v;
}

int main(int argc, char **argv)
{
    struct options o = {getenv("ANYEVENT_BACKEND"), 1000, 16, 15};
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr,
                    "usage: %s [--backend NAME] [--fetches N] [--connections C] [--reps R]\n",
                    argv[0]);
            return 2;
        }
        if (strcmp(a, "--backend") == 0)
            o.backend = v;
        else if (strcmp(a, "--fetches") == 0)
            o.fetches = parse_long(v, "--fetches");
        else if (strcmp(a, "--connections") == 0)
            o.connections = parse_long(v, "--connections");
        else if (strcmp(a, "--reps") == 0)
            o.reps = parse_long(v, "--reps");
        else
            die("unknown option %s", a);
    }
    if (NGINX_PATH[0] == '\0')
        die("%s", "nginx was not found when configuring");
    signal(SIGPIPE, SIG_IGN);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        die("%s", "curl_global_init failed");

    body_size = calloc((size_t)o.fetches, sizeof *body_size);
    struct round r = {.fetches = calloc((size_t)o.fetches, sizeof *r.fetches), .n = o.fetches};
    double *wall[2], *cpu[2];
    for (int k = 0; k < 2; k++) {
        wall[k] = calloc((size_t)o.reps, sizeof **wall);
        cpu[k] = calloc((size_t)o.reps, sizeof **cpu);
        if (!wall[k] || !cpu[k])
            die("%s", "out of memory");
    }
    if (!body_size || !r.fetches)
        die("%s", "out of memory");
    for (long i = 0; i < o.fetches; i++)
        body_size[i] = BODY_MIN + (size_t)(i * 37) % BODY_SPREAD;

    char err[2048];
    if (nginx_start(&server, NGINX_PATH, body_size, (unsigned)o.fetches, 0, err, sizeof err) != 0)
        die("cannot start nginx: %s", err);
    for (long i = 0; i < o.fetches; i++)
        snprintf(r.fetches[i].url, sizeof r.fetches[i].url, "http://127.0.0.1:%d/f%ld", server.port, i);

    ae_loop *loop = ae_loop_new(o.backend);
    if (!loop)
        die("ae_loop_new: %s", ae_last_error());

    /* One warm-up of each, then interleaved measured rounds, alternating
     * which goes first. */
    run_anyevent(&r, &o, loop);
    run_curl_poll(&r, &o);
    for (long rep = 0; rep < o.reps; rep++) {
        for (int step = 0; step < 2; step++) {
            int k = (int)((rep + step) % 2); /* 0: anyevent, 1: curl_multi_poll */
            double w0 = clock_seconds(CLOCK_MONOTONIC);
            double c0 = clock_seconds(CLOCK_PROCESS_CPUTIME_ID);
            if (k == 0)
                run_anyevent(&r, &o, loop);
            else
                run_curl_poll(&r, &o);
            wall[k][rep] = clock_seconds(CLOCK_MONOTONIC) - w0;
            cpu[k][rep] = clock_seconds(CLOCK_PROCESS_CPUTIME_ID) - c0;
        }
    }
    double w_ae = median(wall[0], o.reps), w_curl = median(wall[1], o.reps);
    double c_ae = median(cpu[0], o.reps), c_curl = median(cpu[1], o.reps);
    printf("curl bench: backend=%s fetches=%ld connections=%ld reps=%ld bytes/round=%zu\n",
           ae_loop_backend(loop), o.fetches, o.connections, o.reps, r.bytes);
    printf("%-18s %14s %14s\n", "", "wall ms (med)", "cpu ms (med)");
    printf("%-18s %14.2f %14.2f\n", "anyevent", w_ae * 1e3, c_ae * 1e3);
    printf("%-18s %14.2f %14.2f\n", "curl_multi_poll", w_curl * 1e3, c_curl * 1e3);
    printf("%-18s %14.3f %14.3f   (target: wall <= 1.10)\n", "ratio", w_ae / w_curl, c_ae / c_curl);

    ae_loop_free(loop);
    nginx_stop(&server);
    for (int k = 0; k < 2; k++) {
        free(wall[k]);
        free(cpu[k]);
    }
    free(r.fetches);
    free(body_size);
    curl_global_cleanup();
    return 0;
}
