/*
 * spawn-fast: AnyEvent::Fork as a faster fork+exec. A process is forked from
 * the loop's template (this program never forks), its standard output goes
 * to a file, its standard error comes back over the socket, and it execs a
 * command; however big this program is, the loop is blocked only for a few
 * system calls.
 *
 *   build/examples/spawn-fast/spawn-fast [command args...]
 *   (default: sh -c 'echo hi; echo to stderr >&2; exit 3')
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "anyevent.h"
#include "anyevent/fork.h"

struct state {
    ae_loop *loop;
    int sock; /* our end: the command's standard error */
};

static void stderr_ready(ae_watcher *w, int revents, void *arg)
{
    (void)revents;
    int sock = ((struct state *)arg)->sock;
    char buf[4096];
    ssize_t n = read(sock, buf, sizeof buf);
    if (n > 0) {
        printf("stderr: %.*s", (int)n, buf);
        return;
    }
    ae_watcher_free(w); /* EOF: the command is done with it */
    close(sock);
}

static void running(ae_fork *p, int sock, void *arg)
{
    if (sock < 0) {
        fprintf(stderr, "spawn-fast: %s\n", ae_fork_error(p));
        return;
    }
    struct state *st = arg;
    printf("pid %d running\n", (int)ae_fork_pid(p));
    st->sock = sock;
    ae_io(st->loop, sock, AE_READ, stderr_ready, st);
}

static void ended(ae_fork *p, int status, void *arg)
{
    (void)arg;
    if (WIFEXITED(status))
        printf("pid %d exited with %d\n", (int)ae_fork_pid(p), WEXITSTATUS(status));
    else
        printf("pid %d killed by signal %d\n", (int)ae_fork_pid(p), WTERMSIG(status));
    ae_fork_free(p);
}

int main(int argc, char **argv)
{
    ae_loop *loop = ae_loop_new(NULL);
    if (!loop) {
        fprintf(stderr, "spawn-fast: %s\n", ae_last_error());
        return 1;
    }
    char path[] = "/tmp/spawn-fast-XXXXXX";
    int out = mkostemp(path, O_CLOEXEC);
    if (out < 0) {
        perror("spawn-fast: mkostemp");
        return 1;
    }
    char *def[] = {"sh", "-c", "echo hi; echo to stderr >&2; exit 3", NULL};
    char **cmd = argc > 1 ? argv + 1 : def;

    ae_fork *p = ae_fork_new(loop);
    ae_fork_require(p, SPAWN_WORKER);
    ae_fork_send_fd(p, out);
    for (int i = 0; cmd[i]; i++)
        ae_fork_send_arg(p, cmd[i], strlen(cmd[i]));
    struct state st = {loop, -1};
    ae_fork_on_exit(p, ended, NULL);
    ae_fork_run(p, "spawn_exec", running, &st);
    ae_run(loop);

    char buf[4096];
    ssize_t n = pread(out, buf, sizeof buf, 0);
    printf("stdout (in %s): %.*s", path, n > 0 ? (int)n : 0, buf);
    close(out);
    unlink(path);
    ae_loop_free(loop);
    return 0;
}
