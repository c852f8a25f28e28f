/*
 * What the conformance suite does not reach in the epoll backend: fds epoll
 * refuses (reported always ready, as poll(2) does), a registration left
 * behind by a closed fd whose file another descriptor keeps open (the set is
 * rebuilt instead of spinning), and a re-arm after the number was reused.
 * Usage: epoll-edges  (exit status 0: all passed)
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <anyevent.h>

#define CHECK(cond)                                                                                           \
    do {                                                                                                      \
        if (!(cond)) {                                                                                        \
            fprintf(stderr, "%s:%d: check failed: %s (%s)\n", __FILE__, __LINE__, #cond, ae_last_error());  \
            exit(1);                                                                                          \
        }                                                                                                     \
    } while (0)

typedef struct record {
    int calls;
    int last;
} record;

static void on_io(ae_watcher *w, int revents, void *arg)
{
    (void)w;
    record *r = arg;
    r->calls++;
    r->last = revents;
}

static void on_timer(ae_watcher *w, void *arg)
{
    (void)w;
    (*(int *)arg)++;
}

static ae_loop *new_loop(void)
{
    ae_loop *loop = ae_loop_new("epoll");
    CHECK(loop);
    CHECK(strcmp(ae_loop_backend(loop), "epoll") == 0);
    return loop;
}

/* A regular file: epoll_ctl says EPERM; the watcher sees it ready each
 * iteration, for what it asked, until paused. */
static void test_regular_file_always_ready(void)
{
    ae_loop *loop = new_loop();
    FILE *tmp = tmpfile();
    CHECK(tmp);
    int fd = fileno(tmp);
    record r = {0};
    ae_watcher *w = ae_io(loop, fd, AE_READ, on_io, &r);
    CHECK(w);
    for (int i = 0; i < 3; i++)
        CHECK(ae_run_once(loop, 0) == 1);
    CHECK(r.calls == 3 && r.last == AE_READ);
    CHECK(ae_io_set(w, AE_READ | AE_WRITE) == 0);
    CHECK(ae_run_once(loop, 0) == 1);
    CHECK(r.calls == 4 && r.last == (AE_READ | AE_WRITE));
    CHECK(ae_io_set(w, 0) == 0);
    CHECK(ae_run_once(loop, AE_NOWAIT) == 0); /* nothing active */
    CHECK(r.calls == 4);
    /* Watched again after a pause: refused again, ready again. */
    CHECK(ae_io_set(w, AE_WRITE) == 0);
    CHECK(ae_run_once(loop, 0) == 1);
    CHECK(r.calls == 5 && r.last == AE_WRITE);
    ae_watcher_free(w);
    fclose(tmp);
    ae_loop_free(loop);
}

/* The watcher is freed and the fd closed (in that order, as it should be),
 * but a dup keeps the pipe open: epoll keeps the registration, which no
 * epoll_ctl can reach any more, and keeps reporting it. The backend must
 * rebuild its set instead of waking up for nothing forever. */
static void test_stale_registration_rebuilt(void)
{
    ae_loop *loop = new_loop();
    int p[2];
    CHECK(pipe(p) == 0);
    int keep = dup(p[0]);
    CHECK(keep >= 0);
    record r = {0};
    ae_watcher *w = ae_io(loop, p[0], AE_READ, on_io, &r);
    CHECK(w);
    CHECK(ae_run_once(loop, AE_NOWAIT) == 1); /* registered now */
    ae_watcher_free(w);
    close(p[0]);
    CHECK(write(p[1], "x", 1) == 1); /* the kept file is readable from now on */

    int fired = 0;
    ae_watcher *t = ae_timer(loop, 0.05, 0, on_timer, &fired);
    CHECK(t);
    int iterations = 0;
    while (!fired && iterations < 1000) {
        CHECK(ae_run_once(loop, 0) >= 0);
        iterations++;
    }
    CHECK(fired == 1);
    CHECK(iterations <= 5); /* waited for the timer, did not spin */
    CHECK(r.calls == 0);

    /* The loop still works for new fds, also on the old number. */
    int q[2];
    CHECK(pipe(q) == 0);
    record rq = {0};
    ae_watcher *wq = ae_io(loop, q[0], AE_READ, on_io, &rq);
    CHECK(wq);
    CHECK(write(q[1], "y", 1) == 1);
    CHECK(ae_run_once(loop, 0) == 1);
    CHECK(rq.calls == 1 && rq.last == AE_READ);
    ae_watcher_free(wq);
    ae_watcher_free(t);
    close(q[0]);
    close(q[1]);
    close(keep);
    close(p[1]);
    ae_loop_free(loop);
}

/* A watched fd is closed and its number reused by a socket while the
 * watcher stays; ae_io_set then changes the interest: the backend watches
 * the new file under the number (as poll(2) would), with no error. */
static void test_rearm_after_number_reused(void)
{
    ae_loop *loop = new_loop();
    int p[2];
    CHECK(pipe(p) == 0);
    record r = {0};
    ae_watcher *w = ae_io(loop, p[0], AE_READ, on_io, &r);
    CHECK(w);
    CHECK(ae_run_once(loop, AE_NOWAIT) == 1);
    int number = p[0];
    close(p[0]);
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    if (sv[0] != number) {
        CHECK(dup2(sv[0], number) == number);
        close(sv[0]);
        sv[0] = number;
    }
    CHECK(ae_io_set(w, AE_READ | AE_WRITE) == 0);
    CHECK(ae_run_once(loop, 0) == 1);
    CHECK(r.calls == 1 && r.last == AE_WRITE); /* a fresh socket is writable */
    ae_watcher_free(w);
    close(sv[0]);
    close(sv[1]);
    close(p[1]);
    ae_loop_free(loop);
}

int main(void)
{
    test_regular_file_always_ready();
    test_stale_registration_rebuilt();
    test_rearm_after_number_reused();
    printf("epoll-edges: 3 tests passed\n");
    return 0;
}
