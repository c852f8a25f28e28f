/*
 * The larger stream workloads of ae-stream-bench (issue 18):
 *
 * bulk: MIB MiB each way at once over a socketpair, both ends in one
 *   process: a plain poll()/read()/write() loop ("plain", the floor), raw
 *   anyevent io watchers ("raw"), ae_stream with ae_stream_write() (copies
 *   what the kernel refuses; "stream") and with ae_stream_write_ref() (no
 *   copy; "stream-ref"). Reads are up to 256 KiB (the stream's largest),
 *   writes 64 KiB. CPU (getrusage, user + system) per GiB moved.
 *
 * conns: N TCP connections over loopback; a child process holds the client
 *   ends (both ends in one process would need 2N fds: the limit here is
 *   20,000). The server side, this process, serves each connection with a
 *   bare io watcher ("io") or an ae_stream with an AE_LINE request ("stream").
 *   Memory per connection from the allocator (mallinfo2: in-use bytes of the
 *   heap and of mmapped blocks) fresh, after one request on every
 *   connection, and after the active phase: 1% of the connections make
 *   REQUESTS requests of 64 bytes in all (all of them in flight at once);
 *   server CPU per request. With RTIMEOUT > 0 every connection has a read
 *   timeout of that many seconds (a stream's rtimeout; the io server's own
 *   timer per connection, re-armed with ae_timer_set() on every request).
 *
 * cmd: RUNS commands through ae_cmd_run, one at a time and 16 at a time,
 *   against a posix_spawn()+waitpid() loop in the same run: /bin/true
 *   ("true"), or /bin/echo with captured output that is checked ("print").
 *   Wall time is the scheduler's on a loaded machine; CPU of this process
 *   per run is the figure to read. With ONLY (plain|one|par) one way runs
 *   alone and prints nothing, for counting its system calls.
 */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <anyevent/stream.h>

#include "conns.h"
#include "scale.h"

extern char **environ;

#define WCHUNK 65536
#define RCHUNK (256 * 1024)

static void die(const char *what)
{
    fprintf(stderr, "ae-stream-bench: %s: %s (ae: %s)\n", what, strerror(errno), ae_last_error());
    exit(1);
}

static double rusage_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           (double)ru.ru_stime.tv_usec / 1e6;
}

static double wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- bulk ----------------------------------------------------------------- */

static char wchunk[WCHUNK];
static char rchunk[RCHUNK];

struct bulk_end {
    int fd;
    long long to_send, received, total;
    ae_stream *s;
    ae_watcher *w;
};

static struct bulk_end ends[2];
static int ends_done;

static void got(struct bulk_end *e, size_t n)
{
    e->received += (long long)n;
    if (e->received == e->total)
        ends_done++;
}

static void plain_loop(void)
{
    while (ends_done < 2) {
        struct pollfd p[2];
        for (int i = 0; i < 2; i++)
            p[i] = (struct pollfd){ends[i].fd, (short)((ends[i].to_send ? POLLOUT : 0) |
                                                       (ends[i].received < ends[i].total ? POLLIN : 0)), 0};
        if (poll(p, 2, -1) < 0)
            die("poll");
        for (int i = 0; i < 2; i++) {
            struct bulk_end *e = &ends[i];
            if (p[i].revents & POLLOUT) {
                ssize_t n = write(e->fd, wchunk, e->to_send < WCHUNK ? (size_t)e->to_send : WCHUNK);
                if (n > 0)
                    e->to_send -= n;
            }
            if (p[i].revents & POLLIN) {
                ssize_t n = read(e->fd, rchunk, RCHUNK);
                if (n > 0)
                    got(e, (size_t)n);
            }
        }
    }
}

static void raw_bulk_cb(ae_watcher *w, int revents, void *arg)
{
    struct bulk_end *e = arg;
    if (revents & AE_WRITE) {
        ssize_t n = write(e->fd, wchunk, e->to_send < WCHUNK ? (size_t)e->to_send : WCHUNK);
        if (n > 0)
            e->to_send -= n;
    }
    if (revents & AE_READ) {
        ssize_t n = read(e->fd, rchunk, RCHUNK);
        if (n > 0)
            got(e, (size_t)n);
    }
    int ev = (e->to_send ? AE_WRITE : 0) | (e->received < e->total ? AE_READ : 0);
    ae_io_set(w, ev);
}

static void bulk_fill(struct bulk_end *e)
{
    while (e->to_send) {
        size_t k = e->to_send < WCHUNK ? (size_t)e->to_send : WCHUNK;
        int rc = ae_stream_write(e->s, wchunk, k);
        if (rc < 0)
            die("ae_stream_write");
        e->to_send -= (long long)k;
        if (rc == 1)
            return; /* at wbuf_high: DRAIN tells when to go on */
    }
}

static void bulk_ref_done(void *data, void *arg);

static void bulk_ref_next(struct bulk_end *e)
{
    if (!e->to_send)
        return;
    size_t k = e->to_send < WCHUNK ? (size_t)e->to_send : WCHUNK;
    e->to_send -= (long long)k;
    if (ae_stream_write_ref(e->s, wchunk, k, bulk_ref_done, e) < 0)
        die("ae_stream_write_ref");
}

/* Two chunks in flight: one the kernel takes while the other waits. */
static void bulk_ref_done(void *data, void *arg)
{
    (void)data;
    bulk_ref_next(arg);
}

static void bulk_event(ae_stream *s, int what, int err, void *arg)
{
    if (what == AE_STREAM_DRAIN) {
        bulk_fill(arg);
        return;
    }
    fprintf(stderr, "bulk: stream event %d err %d: %s\n", what, err, ae_stream_error(s));
    exit(1);
}

static size_t bulk_consume(ae_stream *s, const char *data, size_t len, int eof, void *arg)
{
    (void)s, (void)data, (void)eof;
    got(arg, len);
    return len;
}

int run_bulk(const char *backend, const char *impl, long mib)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) < 0)
        die("socketpair");
    long long total = (long long)mib << 20;
    for (int i = 0; i < 2; i++)
        ends[i] = (struct bulk_end){.fd = sv[i], .to_send = total, .total = total};
    ae_loop *loop = ae_loop_new(backend);
    if (!loop)
        die(backend);
    memset(wchunk, 'b', sizeof wchunk);
    double t0 = wall(), c0 = rusage_cpu();
    long a0 = bench_allocs();
    if (strcmp(impl, "plain") == 0) {
        plain_loop();
    } else if (strcmp(impl, "raw") == 0) {
        for (int i = 0; i < 2; i++)
            ends[i].w = ae_io(loop, sv[i], AE_READ | AE_WRITE, raw_bulk_cb, &ends[i]);
        while (ends_done < 2)
            ae_run_once(loop, 0);
        for (int i = 0; i < 2; i++)
            ae_watcher_free(ends[i].w);
    } else if (strcmp(impl, "stream") == 0 || strcmp(impl, "stream-ref") == 0) {
        bool ref = strcmp(impl, "stream-ref") == 0;
        for (int i = 0; i < 2; i++) {
            ends[i].s = ae_stream_new(loop, sv[i], NULL, bulk_event, &ends[i]);
            if (!ends[i].s || ae_stream_on_read(ends[i].s, bulk_consume, &ends[i]) < 0)
                die("ae_stream_new");
        }
        for (int i = 0; i < 2; i++) {
            if (ref) {
                bulk_ref_next(&ends[i]);
                bulk_ref_next(&ends[i]);
            } else {
                bulk_fill(&ends[i]);
            }
        }
        while (ends_done < 2)
            ae_run_once(loop, 0);
        for (int i = 0; i < 2; i++)
            ae_stream_free(ends[i].s);
    } else {
        fprintf(stderr, "bulk: unknown implementation %s (plain|raw|stream|stream-ref)\n", impl);
        return 2;
    }
    double w = wall() - t0, cpu = rusage_cpu() - c0;
    long a = bench_allocs() - a0;
    double gib = (double)(2 * total) / (double)(1 << 30);
    printf("%-16s bulk %-10s %6ld MiB each way  %7.3f s  %6.0f MiB/s  %6.3f cpu-s/GiB  %ld allocs\n", backend, impl,
           mib, w, (double)(2 * total) / (1 << 20) / w, cpu / gib, a);
    ae_loop_free(loop);
    close(sv[0]);
    close(sv[1]);
    return 0;
}

/* ---- conns (conns.h): io watchers or streams ----------------------------- */

static ae_loop *conns_loop;
static double conn_rtimeout;
static void **conn_objs;
static long conn_count, conn_cap;
static bool conn_stream;

struct io_conn { /* the io server's state with a timeout; without one, arg is the fd */
    ae_watcher *io, *timer;
    int fd;
};

static void io_conn_timeout(ae_watcher *w, void *arg)
{
    (void)w, (void)arg;
    fprintf(stderr, "io server: a read timeout fired\n");
    exit(1);
}

/* Requests are whole lines of REQ_LEN; a reply is what was read. */
static void io_conn_cb(ae_watcher *w, int revents, void *arg)
{
    (void)w, (void)revents;
    struct io_conn *c = conn_rtimeout > 0 ? arg : NULL;
    int fd = c ? c->fd : (int)(intptr_t)arg;
    char buf[4096];
    ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) {
        if (n < 0 && errno == EAGAIN)
            return;
        fprintf(stderr, "io server: %s\n", n ? strerror(errno) : "EOF");
        exit(1);
    }
    if (c)
        ae_timer_set(c->timer, conn_rtimeout, 0);
    if (write(fd, buf, (size_t)n) != n)
        die("io server write");
    conns_served += (long)n;
}

static void conn_event(ae_stream *s, int what, int err, void *arg)
{
    (void)arg;
    fprintf(stderr, "stream server: event %d err %d: %s\n", what, err, ae_stream_error(s));
    exit(1);
}

static void conn_line(ae_stream *s, const char *data, size_t len, void *arg)
{
    (void)arg;
    char reply[REQ_LEN];
    memcpy(reply, data, len < REQ_LEN - 1 ? len : REQ_LEN - 1);
    reply[REQ_LEN - 1] = '\n';
    ae_stream_write(s, reply, REQ_LEN);
    conns_served += REQ_LEN;
    ae_stream_read(s, AE_LINE(NULL), conn_line, NULL);
}

static void ae_conn_add(int fd, long i, double rtimeout)
{
    (void)i;
    conn_rtimeout = rtimeout;
    if (conn_count == conn_cap) {
        conn_cap = conn_cap ? 2 * conn_cap : 1024;
        conn_objs = realloc(conn_objs, (size_t)conn_cap * sizeof *conn_objs);
    }
    void *obj;
    if (conn_stream) {
        ae_stream_opts so = {.rtimeout = rtimeout};
        ae_stream *s = ae_stream_new(conns_loop, fd, &so, conn_event, NULL);
        if (!s || ae_stream_read(s, AE_LINE(NULL), conn_line, NULL) < 0)
            die("ae_stream_new");
        obj = s;
    } else if (rtimeout > 0) {
        struct io_conn *c = malloc(sizeof *c);
        c->fd = fd;
        c->io = ae_io(conns_loop, fd, AE_READ, io_conn_cb, c);
        c->timer = ae_timer(conns_loop, rtimeout, 0, io_conn_timeout, c);
        if (!c->io || !c->timer)
            die("ae_io");
        obj = c;
    } else {
        obj = ae_io(conns_loop, fd, AE_READ, io_conn_cb, (void *)(intptr_t)fd);
        if (!obj)
            die("ae_io");
    }
    conn_objs[conn_count++] = obj;
}

static void ae_conn_run_once(int nowait) { ae_run_once(conns_loop, nowait ? AE_NOWAIT : 0); }

static void ae_conn_free_all(void)
{
    for (long i = 0; i < conn_count; i++) {
        if (conn_stream) {
            ae_stream_free(conn_objs[i]);
        } else if (conn_rtimeout > 0) {
            struct io_conn *c = conn_objs[i];
            ae_watcher_free(c->io);
            ae_watcher_free(c->timer);
            free(c);
        } else {
            ae_watcher_free(conn_objs[i]);
        }
    }
    conn_count = 0;
}

int run_conns(const char *backend, const char *impl, long n, long requests, double rtimeout)
{
    conn_stream = strcmp(impl, "stream") == 0;
    if (!conn_stream && strcmp(impl, "io") != 0) {
        fprintf(stderr, "conns: unknown implementation %s (io|stream)\n", impl);
        return 2;
    }
    conns_loop = ae_loop_new(backend);
    if (!conns_loop)
        die(backend);
    char name[64];
    snprintf(name, sizeof name, "ae-%s %s", backend, impl);
    struct conns_impl im = {name, ae_conn_add, ae_conn_run_once, ae_conn_free_all, bench_allocs, 0};
    int rc = conns_main(&im, n, requests, rtimeout);
    ae_loop_free(conns_loop);
    free(conn_objs);
    return rc;
}

/* ---- cmd ------------------------------------------------------------------- */

static const char *true_argv[] = {"/bin/true", NULL};
static const char *echo_argv[] = {"/bin/echo", "printed then exited", NULL};
#define ECHO_OUT "printed then exited\n"

/* posix_spawn + waitpid, one at a time; print: stdout through a pipe read to EOF. */
static void plain_runs(bool print, long runs)
{
    for (long i = 0; i < runs; i++) {
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        int p[2] = {-1, -1};
        if (print) {
            if (pipe2(p, O_CLOEXEC) < 0)
                die("pipe");
            posix_spawn_file_actions_adddup2(&fa, p[1], 1);
        }
        pid_t pid;
        int rc = posix_spawn(&pid, print ? echo_argv[0] : true_argv[0], &fa, NULL,
                             (char *const *)(print ? echo_argv : true_argv), environ);
        posix_spawn_file_actions_destroy(&fa);
        if (rc != 0) {
            errno = rc;
            die("posix_spawn");
        }
        if (print) {
            close(p[1]);
            char buf[256];
            size_t have = 0;
            ssize_t n;
            while ((n = read(p[0], buf + have, sizeof buf - have)) > 0)
                have += (size_t)n;
            close(p[0]);
            if (have != strlen(ECHO_OUT) || memcmp(buf, ECHO_OUT, have) != 0) {
                fprintf(stderr, "plain: output lost\n");
                exit(1);
            }
        }
        int st;
        if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
            die("waitpid");
    }
}

static long cmd_started, cmd_finished, cmd_runs, cmd_lost;
static bool cmd_print;
static ae_loop *cmd_loop;

static void cmd_start(void);

static void cmd_done(ae_cv *cv, void *arg)
{
    ae_cmd *c = arg;
    void *v = NULL;
    ae_cv_recv(cv, &v);
    int st = (int)(intptr_t)v;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        cmd_lost++;
    if (cmd_print) {
        size_t len = 0;
        const char *out = ae_cmd_output(c, 1, &len);
        if (!out || len != strlen(ECHO_OUT) || memcmp(out, ECHO_OUT, len) != 0)
            cmd_lost++;
    }
    ae_cmd_free(c);
    cmd_finished++;
    cmd_start();
}

static void cmd_start(void)
{
    if (cmd_started >= cmd_runs)
        return;
    cmd_started++;
    ae_cmd_opts o = {.argv = cmd_print ? echo_argv : true_argv, .out = cmd_print ? AE_CMD_CAPTURE : AE_CMD_INHERIT};
    ae_cmd *c = ae_cmd_run(cmd_loop, &o);
    if (!c)
        die("ae_cmd_run");
    ae_cv_cb(ae_cmd_cv(c), cmd_done, c);
}

static void ae_runs(ae_loop *loop, bool print, long runs, int parallel)
{
    cmd_loop = loop;
    cmd_print = print;
    cmd_runs = runs;
    cmd_started = cmd_finished = cmd_lost = 0;
    for (int i = 0; i < parallel; i++)
        cmd_start();
    while (cmd_finished < runs)
        ae_run_once(loop, 0);
    if (cmd_lost) {
        fprintf(stderr, "ae_cmd_run: %ld runs failed or lost output\n", cmd_lost);
        exit(1);
    }
}

int run_cmd(const char *backend, const char *what, long runs, const char *only)
{
    bool print = strcmp(what, "print") == 0;
    if (!print && strcmp(what, "true") != 0) {
        fprintf(stderr, "cmd: unknown command kind %s (true|print)\n", what);
        return 2;
    }
    if (only) { /* one way alone, for strace -c */
        ae_loop *loop = ae_loop_new(backend);
        if (!loop)
            die(backend);
        if (strcmp(only, "plain") == 0)
            plain_runs(print, runs);
        else
            ae_runs(loop, print, runs, strcmp(only, "one") == 0 ? 1 : 16);
        ae_loop_free(loop);
        return 0;
    }
    double t0 = wall(), c0 = rusage_cpu();
    plain_runs(print, runs);
    double plain_w = wall() - t0, plain_c = rusage_cpu() - c0;
    ae_loop *loop = ae_loop_new(backend);
    if (!loop)
        die(backend);
    t0 = wall(), c0 = rusage_cpu();
    ae_runs(loop, print, runs, 1);
    double one_w = wall() - t0, one_c = rusage_cpu() - c0;
    t0 = wall(), c0 = rusage_cpu();
    ae_runs(loop, print, runs, 16);
    double par_w = wall() - t0, par_c = rusage_cpu() - c0;
    ae_loop_free(loop);
    printf("%-16s cmd %-6s %6ld runs  runs/s: posix_spawn+waitpid %6.0f, ae_cmd_run %6.0f (%.2fx), 16 at a time %6.0f;"
           "  parent cpu-us/run %5.0f, %5.0f, %5.0f;  no output lost\n",
           backend, what, runs, runs / plain_w, runs / one_w, plain_w / one_w, runs / par_w, plain_c * 1e6 / runs,
           one_c * 1e6 / runs, par_c * 1e6 / runs);
    return 0;
}
