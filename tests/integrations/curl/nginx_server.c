#include "nginx_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

unsigned char nginx_body_byte(unsigned file, size_t offset)
{
    uint64_t block = splitmix64(((uint64_t)file << 40) ^ (uint64_t)(offset >> 3));
    return (unsigned char)(block >> ((offset & 7) * 8));
}

static void say(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

int nginx_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
        port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

static int write_file(const char *path, unsigned file, size_t size, char *err, size_t errlen)
{
    FILE *f = fopen(path, "wb");
    if (!f) {
        say(err, errlen, "fopen(%s): %s", path, strerror(errno));
        return -1;
    }
    for (size_t i = 0; i < size; i++)
        putc(nginx_body_byte(file, i), f);
    if (fclose(f) != 0) {
        say(err, errlen, "writing %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

static int write_config(const struct nginx_server *srv, int access_log, char *err, size_t errlen)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/nginx.conf", srv->dir);
    FILE *f = fopen(path, "w");
    if (!f) {
        say(err, errlen, "fopen(%s): %s", path, strerror(errno));
        return -1;
    }
    const char *d = srv->dir;
    fprintf(f, "daemon off;\nmaster_process on;\nworker_processes 1;\n");
    fprintf(f, "pid %s/nginx.pid;\nerror_log %s/error.log warn;\n", d, d);
    /* As root nginx would switch its worker to "nobody", which may not be
     * able to enter the folder: keep the worker as the user we are. */
    if (geteuid() == 0) {
        struct passwd *pw = getpwuid(geteuid());
        struct group *gr = getgrgid(getegid());
        if (pw && gr)
            fprintf(f, "user %s %s;\n", pw->pw_name, gr->gr_name);
    }
    fprintf(f, "events { worker_connections 4096; }\n");
    fprintf(f, "http {\n");
    if (access_log)
        fprintf(f, "    access_log %s/access.log;\n", d);
    else
        fprintf(f, "    access_log off;\n");
    fprintf(f,
            "    client_body_temp_path %s/client_body;\n"
            "    proxy_temp_path %s/proxy;\n"
            "    fastcgi_temp_path %s/fastcgi;\n"
            "    uwsgi_temp_path %s/uwsgi;\n"
            "    scgi_temp_path %s/scgi;\n",
            d, d, d, d, d);
    fprintf(f,
            "    default_type application/octet-stream;\n"
            "    keepalive_requests 1000000;\n"
            "    keepalive_timeout 60s;\n"
            "    server {\n"
            "        listen 127.0.0.1:%d;\n"
            "        root %s/html;\n"
            "    }\n"
            "}\n",
            srv->port, d);
    if (fclose(f) != 0) {
        say(err, errlen, "writing %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

static pid_t spawn(const struct nginx_server *srv, const char *nginx_path)
{
    char prefix[PATH_MAX + 8], conf[PATH_MAX + 16], errlog[PATH_MAX + 16], out[PATH_MAX + 16];
    snprintf(prefix, sizeof prefix, "%s/", srv->dir);
    snprintf(conf, sizeof conf, "%s/nginx.conf", srv->dir);
    snprintf(errlog, sizeof errlog, "%s/error.log", srv->dir);
    snprintf(out, sizeof out, "%s/nginx.out", srv->dir);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    /* Never outlive the test, whatever kills it. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent)
        _exit(127);
    int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
    }
    execl(nginx_path, "nginx", "-p", prefix, "-c", conf, "-e", errlog, (char *)NULL);
    _exit(127);
}

/* 1 once the port accepts, 0 if nginx died, -1 after the time limit. */
static int wait_accepting(struct nginx_server *srv)
{
    for (int tries = 0; tries < 1000; tries++) {
        int status;
        if (waitpid(srv->pid, &status, WNOHANG) == srv->pid) {
            srv->pid = 0;
            return 0;
        }
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0)
            return -1;
        struct sockaddr_in sa = {.sin_family = AF_INET,
                                 .sin_port = htons((uint16_t)srv->port),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
        close(fd);
        if (ok)
            return 1;
        sleep_ms(10);
    }
    return -1;
}

static void append_log(const struct nginx_server *srv, char *err, size_t errlen)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/error.log", srv->dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    size_t used = strlen(err);
    if (used + 16 < errlen) {
        memcpy(err + used, "; error.log: ", 14);
        used += 13;
        size_t n = fread(err + used, 1, errlen - used - 1, f);
        err[used + n] = '\0';
    }
    fclose(f);
}

int nginx_start(struct nginx_server *srv, const char *nginx_path, const size_t *sizes,
                unsigned nfiles, int access_log, char *err, size_t errlen)
{
    memset(srv, 0, sizeof *srv);
    const char *tmp = getenv("TMPDIR");
    snprintf(srv->dir, sizeof srv->dir, "%s/ae-curl-nginx-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(srv->dir)) {
        say(err, errlen, "mkdtemp(%s): %s", srv->dir, strerror(errno));
        srv->dir[0] = '\0';
        return -1;
    }
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/html", srv->dir);
    if (mkdir(path, 0755) != 0) {
        say(err, errlen, "mkdir(%s): %s", path, strerror(errno));
        goto fail;
    }
    for (unsigned i = 0; i < nfiles; i++) {
        snprintf(path, sizeof path, "%s/html/f%u", srv->dir, i);
        if (write_file(path, i, sizes[i], err, errlen) != 0)
            goto fail;
    }
    /* A port found free may be taken before nginx binds it: try again. */
    for (int attempt = 0; attempt < 5; attempt++) {
        srv->port = nginx_free_port();
        if (srv->port < 0) {
            say(err, errlen, "no free port: %s", strerror(errno));
            goto fail;
        }
        if (write_config(srv, access_log, err, errlen) != 0)
            goto fail;
        srv->pid = spawn(srv, nginx_path);
        if (srv->pid < 0) {
            srv->pid = 0;
            say(err, errlen, "fork: %s", strerror(errno));
            goto fail;
        }
        int up = wait_accepting(srv);
        if (up == 1)
            return 0;
        if (up < 0) {
            say(err, errlen, "%s did not accept on 127.0.0.1:%d within 10 s", nginx_path, srv->port);
            append_log(srv, err, errlen);
            goto fail;
        }
        say(err, errlen, "%s exited at start-up", nginx_path);
        append_log(srv, err, errlen);
    }
fail:
    nginx_stop(srv);
    return -1;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

void nginx_stop(struct nginx_server *srv)
{
    if (srv->pid > 0) {
        kill(srv->pid, SIGTERM);
        int status;
        pid_t got = 0;
        for (int i = 0; i < 500 && got == 0; i++) {
            got = waitpid(srv->pid, &status, WNOHANG);
            if (got == 0)
                sleep_ms(10);
        }
        if (got == 0) {
            kill(srv->pid, SIGKILL);
            waitpid(srv->pid, &status, 0);
        }
        srv->pid = 0;
    }
    if (srv->dir[0]) {
        nftw(srv->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
        srv->dir[0] = '\0';
    }
}
