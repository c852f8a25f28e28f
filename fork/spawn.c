/* The first process of a family: the helper (ae-fork-server), started with
 * posix_spawn so that this program never forks for it (safe with threads,
 * and as fast whatever this program's size), or this program itself, forked
 * once as a template (ae_fork_self). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "parent.h"
#include "serve.h"

extern char **environ;

#ifndef AE_FORK_SERVER_PATH
#define AE_FORK_SERVER_PATH "/usr/local/libexec/anyevent/ae-fork-server"
#endif

/* The helper to run, or NULL with where it looked in tried. */
static const char *find_helper(char *buf, size_t size, char *tried, size_t tried_size)
{
#ifdef __GLIBC__
    const char *env = secure_getenv("ANYEVENT_FORK_SERVER");
#else
    const char *env = getenv("ANYEVENT_FORK_SERVER");
#endif
    if (env && *env) {
        if (access(env, X_OK) == 0)
            return env;
        snprintf(tried, tried_size, "ANYEVENT_FORK_SERVER=%s: %s", env, strerror(errno));
        return NULL;
    }
    int n = snprintf(tried, tried_size, "ANYEVENT_FORK_SERVER is not set");
#ifdef AE_BUILD_ROOT
    if (ae__in_build_tree()) {
        snprintf(buf, size, "%s/fork/ae-fork-server", AE_BUILD_ROOT);
        if (access(buf, X_OK) == 0)
            return buf;
        n += snprintf(tried + n, tried_size - (size_t)n, "; %s: %s", buf, strerror(errno));
    }
#endif
    if (access(AE_FORK_SERVER_PATH, X_OK) == 0)
        return AE_FORK_SERVER_PATH;
    snprintf(tried + n, tried_size - (size_t)n, "; %s: %s", AE_FORK_SERVER_PATH, strerror(errno));
    (void)buf;
    (void)size;
    return NULL;
}

/* Our end non-blocking, theirs at fd 4 or above (it is dup2'ed onto 3). */
static int make_pair(int sv[2])
{
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return -1;
    if (sv[1] <= 3) {
        int moved = fcntl(sv[1], F_DUPFD_CLOEXEC, 4);
        if (moved < 0) {
            close(sv[0]);
            close(sv[1]);
            return -1;
        }
        close(sv[1]);
        sv[1] = moved;
    }
    fcntl(sv[0], F_SETFL, O_NONBLOCK);
    return 0;
}

/* posix_spawn the helper, its socket on fd 3, every other fd above 2 closed,
 * signals at their defaults and unblocked. */
static int spawn(const char *path, int sock, pid_t *pid)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&at);
    posix_spawn_file_actions_adddup2(&fa, sock, 3);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
    posix_spawn_file_actions_addclosefrom_np(&fa, 4);
#endif /* else the helper closes them itself (helper.c) */
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &all);
    char *argv[] = {"ae-fork-server", NULL};
    int rc = posix_spawn(pid, path, &fa, &at, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    return rc;
}

ae_fork *ae__fork_spawn_helper(ae_fork_ctx *ctx)
{
    ae_fork *p = ae__fork_alloc(ctx, -1, 0);
    if (!p)
        return NULL;
    char buf[4096], tried[8192];
    const char *path = find_helper(buf, sizeof buf, tried, sizeof tried);
    if (!path) {
        ae__fork_fail(p, "ae-fork-server not found: %s", tried);
        return p;
    }
    int sv[2];
    if (make_pair(sv) < 0) {
        ae__fork_fail(p, "socketpair: %s", strerror(errno));
        return p;
    }
    pid_t pid;
    int rc = spawn(path, sv[1], &pid);
    close(sv[1]);
    p->sock = sv[0];
    if (rc != 0) {
        ae__fork_fail(p, "posix_spawn %s: %s", path, strerror(rc));
        return p;
    }
    p->pid = pid;
    ae__fork_start(p);
    return p;
}

ae_fork *ae_fork_exec(ae_loop *loop)
{
    if (!ae__loop_ok(loop, "ae_fork_exec"))
        return NULL;
    ae_fork_ctx *ctx = ae__fork_ctx(loop);
    return ctx ? ae__fork_spawn_helper(ctx) : NULL;
}

ae_fork *ae_fork_self(ae_loop *loop)
{
    if (!ae__loop_ok(loop, "ae_fork_self"))
        return NULL;
    int threads = ae__thread_count();
    if (threads < 0) {
        ae__set_error(AE_ENOTSUP, "ae_fork_self: the threads of this process cannot be counted (no /proc/self/task): "
                                  "forking it may not be safe, so it is refused");
        return NULL;
    }
    if (threads != 1) {
        ae__set_error(AE_ESTATE, "ae_fork_self: this process has %d threads: forking it is not safe", threads);
        return NULL;
    }
    ae_fork_ctx *ctx = ae__fork_ctx(loop);
    if (!ctx)
        return NULL;
    ae_fork *p = ae__fork_alloc(ctx, -1, 0);
    if (!p)
        return NULL;
    int sv[2];
    if (make_pair(sv) < 0) {
        ae__fork_fail(p, "socketpair: %s", strerror(errno));
        return p;
    }
    fflush(NULL); /* or the child would write what is buffered a second time */
    pid_t pid = fork();
    if (pid == 0) {
        /* The template: only fds 0-2 and its socket, default signals. */
        int sock = 3;
        if (dup2(sv[1], sock) < 0)
            _exit(127);
        ae__close_from(4);
        fcntl(sock, F_SETFD, FD_CLOEXEC);
        struct sigaction dfl = {.sa_handler = SIG_DFL};
        for (int s = 1; s < NSIG; s++)
            sigaction(s, &dfl, NULL);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        ae__fork_serve(sock, true);
    }
    close(sv[1]);
    p->sock = sv[0];
    if (pid < 0) {
        ae__fork_fail(p, "fork: %s", strerror(errno));
        return p;
    }
    p->pid = pid;
    ae__fork_start(p);
    return p;
}
