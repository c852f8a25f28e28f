/*
 * The plugin kit's smoke test: a program built only against the installed
 * anyevent (pkg-config) loads a backend plugin and runs a pipe io watcher
 * and a timer on it.
 * Usage: smoke BACKEND EXPECTED_NAME
 *   BACKEND: a plugin name, an absolute path to a .so, or "-" for the
 *   default choice (ANYEVENT_BACKEND); EXPECTED_NAME: what
 *   ae_loop_backend() must say. Exit status 0: it worked.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <anyevent.h>

typedef struct progress {
    int fd;     /* the pipe's read end */
    int reads;  /* bytes read by the io watcher */
    int timers; /* timer calls */
} progress;

static void on_readable(ae_watcher *w, int revents, void *arg)
{
    progress *p = arg;
    char byte;
    if (revents == AE_READ && read(p->fd, &byte, 1) == 1)
        p->reads++;
    ae_watcher_free(w);
}

static void on_timer(ae_watcher *w, void *arg)
{
    progress *p = arg;
    p->timers++;
    ae_watcher_free(w);
}

static int fail(const char *what)
{
    fprintf(stderr, "smoke: %s: %s\n", what, ae_last_error());
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: smoke BACKEND|- EXPECTED_NAME\n");
        return 2;
    }
    ae_loop *loop = ae_loop_new(strcmp(argv[1], "-") == 0 ? NULL : argv[1]);
    if (!loop)
        return fail("ae_loop_new");
    if (strcmp(ae_loop_backend(loop), argv[2]) != 0) {
        fprintf(stderr, "smoke: the loop runs on '%s', not '%s'\n", ae_loop_backend(loop), argv[2]);
        return 1;
    }
    int p[2];
    if (pipe(p) < 0 || write(p[1], "x", 1) != 1) {
        perror("smoke: pipe");
        return 1;
    }
    progress got = {.fd = p[0]};
    if (!ae_io(loop, p[0], AE_READ, on_readable, &got))
        return fail("ae_io");
    if (!ae_timer(loop, 0.01, 0, on_timer, &got))
        return fail("ae_timer");
    int rc = ae_run(loop); /* returns once both watchers freed themselves */
    if (rc < 0)
        return fail("ae_run");
    ae_loop_free(loop);
    close(p[0]);
    close(p[1]);
    if (got.reads != 1 || got.timers != 1) {
        fprintf(stderr, "smoke: %d reads and %d timer calls, expected 1 and 1\n", got.reads, got.timers);
        return 1;
    }
    printf("smoke: %s: io and timer ran on '%s'\n", argv[1], argv[2]);
    return 0;
}
