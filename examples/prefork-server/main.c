/*
 * prefork-server: AnyEvent::Fork's "pool of server processes all accepting
 * on the same socket". The listening socket is sent once to a template; four
 * workers are forked from it, each with its number; every worker accepts,
 * answers and counts its connections. This program then connects a few
 * times, and at the end closes the workers' sockets: each exits with its
 * count, which ae_fork_on_exit reports.
 *
 *   build/examples/prefork-server/prefork-server [backend]
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "anyevent.h"
#include "anyevent/fork.h"

#define WORKERS 4

static int worker_sock[WORKERS];

static void started(ae_fork *p, int sock, void *arg)
{
    struct { ae_cv *cv; int id; } *w = arg;
    if (sock < 0)
        fprintf(stderr, "worker %d: %s\n", w->id, ae_fork_error(p));
    else
        printf("worker %d is pid %d\n", w->id, (int)ae_fork_pid(p));
    worker_sock[w->id] = sock;
    ae_cv_end(w->cv);
}

static void ended(ae_fork *p, int status, void *arg)
{
    ae_cv *done = arg;
    if (WIFEXITED(status))
        printf("pid %d served %d connections\n", (int)ae_fork_pid(p), WEXITSTATUS(status));
    else
        printf("pid %d ended with status %#x\n", (int)ae_fork_pid(p), (unsigned)status);
    ae_fork_free(p);
    ae_cv_end(done);
}

int main(int argc, char **argv)
{
    ae_loop *loop = ae_loop_new(argc > 1 ? argv[1] : NULL);
    if (!loop) {
        fprintf(stderr, "prefork-server: %s\n", ae_last_error());
        return 1;
    }
    /* the listening socket, non-blocking so that workers racing for one
     * connection do not block */
    int lsock = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof addr;
    if (lsock < 0 || bind(lsock, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(lsock, 64) < 0 ||
        getsockname(lsock, (struct sockaddr *)&addr, &alen) < 0) {
        perror("prefork-server: listen");
        return 1;
    }
    printf("listening on 127.0.0.1:%d\n", ntohs(addr.sin_port));

    /* a template with the server code and the listener, then the workers */
    ae_fork *tmpl = ae_fork_exec(loop);
    ae_fork_require(tmpl, PREFORK_WORKER);
    ae_fork_send_fd(tmpl, lsock);
    close(lsock); /* the template has its own copy now */
    ae_cv *ready = ae_cv_new(loop), *done = ae_cv_new(loop);
    struct { ae_cv *cv; int id; } w[WORKERS];
    for (int i = 0; i < WORKERS; i++) {
        char id[8];
        snprintf(id, sizeof id, "%d", i);
        w[i].cv = ready;
        w[i].id = i;
        ae_fork *p = ae_fork_fork(tmpl);
        ae_fork_send_arg(p, id, strlen(id));
        ae_cv_begin(ready);
        ae_cv_begin(done);
        ae_fork_on_exit(p, ended, done);
        ae_fork_run(p, "prefork_serve", started, &w[i]);
    }
    ae_fork_free(tmpl); /* the workers go on; the template exits */
    ae_cv_recv(ready, NULL);

    /* some clients */
    for (int c = 0; c < 12; c++) {
        int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        char line[64] = "";
        if (connect(s, (struct sockaddr *)&addr, sizeof addr) == 0) {
            ssize_t n = read(s, line, sizeof line - 1);
            line[n > 0 ? n : 0] = 0;
        }
        printf("client %2d: %s", c, line);
        close(s);
    }

    for (int i = 0; i < WORKERS; i++) /* done: each worker exits with its count */
        if (worker_sock[i] >= 0)
            close(worker_sock[i]);
    ae_cv_recv(done, NULL);
    ae_cv_free(ready);
    ae_cv_free(done);
    ae_loop_free(loop);
    return 0;
}
