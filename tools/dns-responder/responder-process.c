#include "responder-process.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define START_TIMEOUT_MS 10000
#define MAX_ARGS 32

static double monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Read one line (without its newline) from fd, waiting at most timeout_ms.
 * Returns its length, or -1 on end of file, error or timeout. */
static int read_line(int fd, char *line, size_t size, int timeout_ms)
{
    size_t len = 0;
    double deadline = monotonic_ms() + timeout_ms;
    while (len + 1 < size) {
        int left = (int)(deadline - monotonic_ms());
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&p, 1, left) <= 0) {
            if (left > 0 && errno == EINTR)
                continue;
            return -1;
        }
        ssize_t n = read(fd, line + len, 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        if (line[len] == '\n')
            break;
        len++;
    }
    line[len] = '\0';
    return (int)len;
}

int responder_start(struct responder_process *r, const char *binary,
                    const char *const *args, char *err, size_t errlen)
{
    *r = (struct responder_process){.pid = 0, .out = -1};
    const char *argv[MAX_ARGS + 2] = {binary};
    int argc = 1;
    for (; args && args[argc - 1]; argc++) {
        if (argc > MAX_ARGS) {
            snprintf(err, errlen, "too many responder options");
            return -1;
        }
        argv[argc] = args[argc - 1];
    }
    argv[argc] = NULL;
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) < 0) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        return -1;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(err, errlen, "fork: %s", strerror(errno));
        close(pipefd[0]);
        close(pipefd[1]);
        return -1;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent) /* the parent died before prctl */
            _exit(1);
        if (dup2(pipefd[1], STDOUT_FILENO) < 0)
            _exit(127);
        execv(binary, (char *const *)argv);
        fprintf(stderr, "exec %s: %s\n", binary, strerror(errno));
        _exit(127);
    }
    close(pipefd[1]);
    r->pid = pid;
    r->out = pipefd[0];
    char line[64];
    char *end;
    if (read_line(r->out, line, sizeof line, START_TIMEOUT_MS) <= 0 ||
        (r->port = (unsigned)strtoul(line, &end, 10)) == 0 || *end) {
        snprintf(err, errlen, "%s did not print its port", binary);
        responder_stop(r);
        return -1;
    }
    return 0;
}

int responder_stop(struct responder_process *r)
{
    int ok = -1;
    if (r->pid > 0) {
        kill(r->pid, SIGTERM);
        if (r->out >= 0 && read_line(r->out, r->stats, sizeof r->stats, START_TIMEOUT_MS) > 0 &&
            strncmp(r->stats, "stats ", 6) == 0) {
            ok = 0;
        } else {
            r->stats[0] = '\0';
            kill(r->pid, SIGKILL); /* hung, or never got going: do not wait for it */
        }
        int status = 0;
        pid_t got;
        while ((got = waitpid(r->pid, &status, 0)) < 0 && errno == EINTR)
            ;
        if (got != r->pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
            ok = -1;
        r->pid = 0;
    }
    if (r->out >= 0) {
        close(r->out);
        r->out = -1;
    }
    return ok;
}

long responder_stat(const struct responder_process *r, const char *name)
{
    size_t len = strlen(name);
    for (const char *p = strchr(r->stats, ' '); p; p = strchr(p + 1, ' ')) {
        if (strncmp(p + 1, name, len) == 0 && p[1 + len] == '=')
            return strtol(p + 2 + len, NULL, 10);
    }
    return -1;
}
