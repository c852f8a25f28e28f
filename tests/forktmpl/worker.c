/* Functions the processes of the forktmpl suite run, required by name. */
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "anyevent/fork.h"

AE_EXPORT int t_initialised;

/* ae_fork_call: remember that it ran, and how many items it saw. */
AE_EXPORT int t_init(int sock, int n, const ae_fork_item *items)
{
    (void)items;
    t_initialised = sock == -1 ? 100 + n : -1;
    return 0;
}

AE_EXPORT int t_fail(int sock, int n, const ae_fork_item *items)
{
    (void)sock, (void)n, (void)items;
    return 3;
}

AE_EXPORT int t_die(int sock, int n, const ae_fork_item *items)
{
    (void)sock, (void)n, (void)items;
    _exit(5);
}

static void *t_sleeper(void *arg)
{
    (void)arg;
    for (;;)
        pause();
    return NULL;
}

/* A library that starts a thread (as some do in their initialisation):
 * the process must refuse to fork from now on. */
AE_EXPORT int t_start_thread(int sock, int n, const ae_fork_item *items)
{
    (void)sock, (void)n, (void)items;
    pthread_t th;
    return pthread_create(&th, NULL, t_sleeper, NULL) == 0 ? pthread_detach(th) : 1;
}

/* Lower the fd limit, so that the next passed fds are dropped. */
AE_EXPORT int t_few_fds(int sock, int n, const ae_fork_item *items)
{
    (void)sock, (void)n, (void)items;
    struct rlimit rl = {5, 5};
    return setrlimit(RLIMIT_NOFILE, &rl);
}

/* Make fork fail here with EAGAIN: no processes allowed, as a user that
 * the limit applies to (root's processes ignore RLIMIT_NPROC). */
AE_EXPORT int t_no_fork(int sock, int n, const ae_fork_item *items)
{
    (void)sock, (void)n, (void)items;
    struct rlimit rl = {0, 0};
    if (setrlimit(RLIMIT_NPROC, &rl) < 0)
        return 1;
    return getuid() == 0 && setuid(65534) < 0 ? 2 : 0;
}

/* Write a report to sock: what was sent, whether init ran, the parent pid,
 * and whether the open fds are exactly 0-2, sock and the passed ones. */
AE_EXPORT int t_report(int sock, int n, const ae_fork_item *items)
{
    char buf[4096];
    int len = snprintf(buf, sizeof buf, "init=%d ppid=%d items=", t_initialised, (int)getppid());
    char expect[1024] = {0};
    expect[0] = expect[1] = expect[2] = 1;
    expect[sock] = 1;
    for (int i = 0; i < n; i++) {
        if (items[i].fd >= 0) {
            len += snprintf(buf + len, sizeof buf - (size_t)len, "fd,");
            expect[items[i].fd] = 1;
        } else {
            len += snprintf(buf + len, sizeof buf - (size_t)len, "%.*s,", (int)items[i].len,
                            (const char *)items[i].data);
        }
    }
    int extra = 0, missing = 0, seen[1024] = {0};
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    while ((e = readdir(d))) {
        int fd = atoi(e->d_name);
        if (e->d_name[0] == '.' || fd == dirfd(d))
            continue;
        if (fd >= 1024 || !expect[fd])
            extra++;
        else
            seen[fd] = 1;
    }
    closedir(d);
    for (int fd = 0; fd < 1024; fd++)
        if (expect[fd] && !seen[fd])
            missing++;
    len += snprintf(buf + len, sizeof buf - (size_t)len, " extra=%d missing=%d", extra, missing);
    if (write(sock, buf, (size_t)len) != len)
        return 1;
    return 0;
}

/* Write "hello" into the first passed fd; the exit status is the number of items. */
AE_EXPORT int t_write_fd(int sock, int n, const ae_fork_item *items)
{
    (void)sock;
    for (int i = 0; i < n; i++)
        if (items[i].fd >= 0)
            return write(items[i].fd, "hello", 5) == 5 ? n : 99;
    return 98;
}

/* Wait for the parent to close the socket. */
AE_EXPORT int t_wait_eof(int sock, int n, const ae_fork_item *items)
{
    (void)n, (void)items;
    char c;
    while (read(sock, &c, 1) > 0)
        ;
    return 7;
}

/* RPC: echo; "fail" fails the call (after writing "no"); "die" kills the worker. */
AE_EXPORT int t_echo(const void *req, size_t len, ae_rpc_reply *reply)
{
    if (len == 4 && memcmp(req, "fail", 4) == 0) {
        ae_rpc_reply_write(reply, "no", 2);
        return 1;
    }
    if (len == 3 && memcmp(req, "die", 3) == 0)
        _exit(9);
    return ae_rpc_reply_write(reply, req, len);
}
