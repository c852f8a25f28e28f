/*
 * hiredis through anyevent against hiredis's own adapter, on one native
 * library's loop (built once per library: libev, libevent, libuv; never two
 * event libraries in one program). Starts its own redis-server on a unix
 * socket, then runs the same pipelined workload, interleaved, in three ways:
 *
 *   hiredis   hiredis's own adapter (hiredis/adapters/<lib>.h) on the native loop
 *   adopted   anyevent-hiredis on an anyevent loop adopted from the same kind
 *             of native loop (ae_loop_adopt), run by the native library
 *   anyevent  anyevent-hiredis on ae_loop_new(<lib>), run by ae_run()
 *
 * and reports the client's CPU time (getrusage: user + sys of this process;
 * the server is another process) per 1,000 commands, medians over the
 * repetitions, and the ratio to hiredis's own adapter.
 *
 *   ae-bench-hiredis-libev [--clients N] [--commands N] [--window N]
 *                          [--reps N] [--server PATH] [--only MODE]
 *
 * --only runs one mode (for profiling it alone: perf, strace -c).
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "anyevent-hiredis.h"
#include "host.h"
#include "native.h"
#include "redis_server.h"

#ifndef AE_REDIS_SERVER
#define AE_REDIS_SERVER "redis-server"
#endif

enum { MAX_CLIENTS = 64, MAX_REPS = 101 };
enum mode { MODE_HIREDIS, MODE_ADOPTED, MODE_ANYEVENT, MODES };
static const char *const mode_names[MODES] = {"hiredis", "adopted", "anyevent"};

struct options {
    int clients;
    long commands; /* per client */
    long window;   /* outstanding per client */
    int reps;
    const char *server;
    int only; /* a mode, or -1 for all */
};

struct client {
    redisAsyncContext *ac;
    struct run *run;
    int id;
    long sent, answered;
};

struct run {
    const struct options *o;
    struct client clients[MAX_CLIENTS];
    int live;
    long errors;
};

static void die(const char *fmt, const char *detail)
{
    fprintf(stderr, fmt, detail);
    fputc('\n', stderr);
    exit(1);
}

static void on_reply(redisAsyncContext *ac, void *r, void *privdata);

static void send_next(struct client *c)
{
    long seq = c->sent++;
    int rc;
    /* The tests' mix: INCR, SET of a key, GET of it. */
    switch (seq % 3) {
    case 0:
        rc = redisAsyncCommand(c->ac, on_reply, NULL, "INCR b:count:%d", c->id);
        break;
    case 1:
        rc = redisAsyncCommand(c->ac, on_reply, NULL, "SET b:%d:%ld v%ld", c->id, seq % 1000, seq);
        break;
    default:
        rc = redisAsyncCommand(c->ac, on_reply, NULL, "GET b:%d:%ld", c->id, (seq - 1) % 1000);
        break;
    }
    if (rc != REDIS_OK)
        die("redisAsyncCommand: %s", c->ac->errstr);
}

static void on_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    (void)privdata;
    struct client *c = ac->data;
    const redisReply *reply = r;
    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        c->run->errors++;
        return;
    }
    c->answered++;
    if (c->sent < c->run->o->commands)
        send_next(c);
    else if (c->answered == c->run->o->commands)
        redisAsyncDisconnect(ac);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct client *c = ac->data;
    if (status != REDIS_OK)
        c->run->errors++;
    c->run->live--;
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           (double)ru.ru_stime.tv_usec / 1e6;
}

static double wall_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One run of the workload in one mode; returns CPU seconds, *wall set. */
static double run_once(const struct options *o, const struct redis_server *srv, enum mode mode, double *wall)
{
    static struct run run;
    memset(&run, 0, sizeof run);
    run.o = o;
    void *native = NULL;
    ae_loop *loop = NULL;
    double cpu0 = cpu_seconds(), wall0 = wall_seconds();
    if (mode == MODE_ANYEVENT) {
        loop = ae_loop_new(host_backend());
        if (!loop)
            die("ae_loop_new: %s", ae_last_error());
    } else {
        native = host_loop_new();
        if (!native)
            die("%s", "host_loop_new failed");
        if (mode == MODE_ADOPTED && !(loop = ae_loop_adopt(host_backend(), native)))
            die("ae_loop_adopt: %s", ae_last_error());
    }
    for (int i = 0; i < o->clients; i++) {
        struct client *c = &run.clients[i];
        c->run = &run;
        c->id = i;
        c->ac = redisAsyncConnectUnix(srv->socket);
        if (!c->ac || c->ac->err)
            die("redisAsyncConnectUnix: %s", c->ac ? c->ac->errstr : "out of memory");
        c->ac->data = c;
        redisAsyncSetDisconnectCallback(c->ac, on_disconnect);
        int rc = mode == MODE_HIREDIS ? native_attach(c->ac, native) : ae_hiredis_attach(c->ac, loop);
        if (rc != 0)
            die("attach failed: %s", mode == MODE_HIREDIS ? "hiredis adapter" : ae_strerror(rc));
        run.live++;
        for (long k = 0; k < o->window && c->sent < o->commands; k++)
            send_next(c);
    }
    if (mode == MODE_ANYEVENT) {
        if (ae_run(loop) != 0)
            die("ae_run: %s", ae_last_error());
    } else {
        host_run(native);
    }
    if (run.live != 0 || run.errors != 0)
        die("%s", "a run did not complete: clients left or errors");
    ae_loop_free(loop);
    if (native)
        host_loop_free(native);
    *wall = wall_seconds() - wall0;
    return cpu_seconds() - cpu0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static long parse_long(const char *s, long min, long max, const char *what)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < min || v > max)
        die("bad value for %s", what);
    return v;
}

int main(int argc, char **argv)
{
    struct options o = {4, 50000, 100, 9, getenv("AE_TEST_REDIS_SERVER"), -1};
    if (!o.server || !*o.server)
        o.server = AE_REDIS_SERVER;
    for (int i = 1; i < argc; i += 2) { /* options, each with a value */
        const char *arg = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!val)
            die("usage: %s [--clients N] [--commands N] [--window N] [--reps N] [--server PATH] "
                "[--only hiredis|adopted|anyevent]",
                argv[0]);
        if (strcmp(arg, "--clients") == 0)
            o.clients = (int)parse_long(val, 1, MAX_CLIENTS, arg);
        else if (strcmp(arg, "--commands") == 0)
            o.commands = parse_long(val, 1, 100000000, arg);
        else if (strcmp(arg, "--window") == 0)
            o.window = parse_long(val, 1, 1000000, arg);
        else if (strcmp(arg, "--reps") == 0)
            o.reps = (int)parse_long(val, 1, MAX_REPS, arg);
        else if (strcmp(arg, "--server") == 0)
            o.server = val;
        else if (strcmp(arg, "--only") == 0) {
            for (int m = 0; m < MODES; m++)
                if (strcmp(val, mode_names[m]) == 0)
                    o.only = m;
            if (o.only < 0)
                die("unknown mode %s", val);
        }
        else
            die("unknown option %s", arg);
    }
    signal(SIGPIPE, SIG_IGN);
    struct redis_server srv;
    char err[600];
    if (redis_server_start(&srv, o.server, err, sizeof err) < 0)
        die("redis-server: %s", err);

    static double cpu[MODES][MAX_REPS], wall[MODES][MAX_REPS];
    double warm;
    int first = o.only < 0 ? 0 : o.only, last = o.only < 0 ? MODES - 1 : o.only;
    for (int m = first; m <= last; m++) /* warm-up: page in code, let the server settle */
        run_once(&o, &srv, (enum mode)m, &warm);
    for (int r = 0; r < o.reps; r++)
        for (int m = first; m <= last; m++) /* interleaved: drift hits every mode alike */
            cpu[m][r] = run_once(&o, &srv, (enum mode)m, &wall[m][r]);
    redis_server_stop(&srv);

    double total = (double)o.clients * (double)o.commands;
    printf("hiredis %d.%d on %s: %d clients x %ld pipelined commands (window %ld), %d reps, medians\n",
           HIREDIS_MAJOR, HIREDIS_MINOR, host_backend(), o.clients, o.commands, o.window, o.reps);
    printf("%-10s %16s %16s %12s\n", "mode", "cpu us/1k cmds", "wall us/1k cmds", "cpu ratio");
    /* The ratio is to the first mode shown: hiredis's own adapter unless --only. */
    double base = 0;
    for (int m = first; m <= last; m++) {
        double c = median(cpu[m], o.reps) / total * 1e9, w = median(wall[m], o.reps) / total * 1e9;
        if (m == first)
            base = c;
        printf("%-10s %16.1f %16.1f %12.3f\n", mode_names[m], c, w, c / base);
    }
    return 0;
}
