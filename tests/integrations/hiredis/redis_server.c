#include "redis_server.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void remove_dir(struct redis_server *srv)
{
    if (!srv->dir[0])
        return;
    DIR *d = opendir(srv->dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char path[sizeof srv->dir + 256];
            snprintf(path, sizeof path, "%s/%s", srv->dir, e->d_name);
            unlink(path);
        }
        closedir(d);
    }
    rmdir(srv->dir);
    srv->dir[0] = '\0';
}

/* The last lines of the server's log, for a failure message. */
static void log_tail(const struct redis_server *srv, char *out, size_t outlen)
{
    out[0] = '\0';
    FILE *f = fopen(srv->log, "r");
    if (!f)
        return;
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    size_t from = n > outlen - 1 ? n - (outlen - 1) : 0;
    memcpy(out, buf + from, n - from + 1);
}

static int accepts(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path);
    int ok = connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0;
    close(fd);
    return ok;
}

int redis_server_start(struct redis_server *srv, const char *binary, char *err, size_t errlen)
{
    memset(srv, 0, sizeof *srv);
    snprintf(srv->dir, sizeof srv->dir, "/tmp/ae-hiredis-XXXXXX");
    if (!mkdtemp(srv->dir)) {
        snprintf(err, errlen, "mkdtemp: %s", strerror(errno));
        srv->dir[0] = '\0';
        return -1;
    }
    snprintf(srv->socket, sizeof srv->socket, "%s/redis.sock", srv->dir);
    snprintf(srv->log, sizeof srv->log, "%s/redis.log", srv->dir);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(err, errlen, "fork: %s", strerror(errno));
        remove_dir(srv);
        return -1;
    }
    if (pid == 0) {
        /* Die with the test process, whatever way it ends. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        int devnull = open("/dev/null", O_RDWR);
        if (devnull >= 0) {
            dup2(devnull, 0);
            dup2(devnull, 1);
            close(devnull);
        }
        execl(binary, binary, "--port", "0", "--unixsocket", srv->socket,
              "--unixsocketperm", "700", "--save", "", "--appendonly", "no",
              "--dir", srv->dir, "--logfile", srv->log, "--daemonize", "no",
              (char *)NULL);
        fprintf(stderr, "exec %s: %s\n", binary, strerror(errno));
        _exit(127);
    }
    srv->pid = pid;
    for (int tries = 0; tries < 2000; tries++) { /* 5 ms each: 10 s */
        if (accepts(srv->socket))
            return 0;
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            srv->pid = 0;
            char tail[512];
            log_tail(srv, tail, sizeof tail);
            snprintf(err, errlen, "%s exited (status %#x) before accepting: %.400s", binary, status, tail);
            remove_dir(srv);
            return -1;
        }
        nanosleep(&(struct timespec){0, 5000000}, NULL);
    }
    snprintf(err, errlen, "%s did not accept on %s within 10 s", binary, srv->socket);
    redis_server_stop(srv);
    return -1;
}

int redis_server_kill(struct redis_server *srv)
{
    if (srv->pid <= 0)
        return -1;
    kill(srv->pid, SIGKILL);
    int status = -1;
    while (waitpid(srv->pid, &status, 0) < 0 && errno == EINTR)
        ;
    srv->pid = 0;
    return status;
}

void redis_server_stop(struct redis_server *srv)
{
    redis_server_kill(srv);
    remove_dir(srv);
}
