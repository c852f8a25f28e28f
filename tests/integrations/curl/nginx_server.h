/* A throw-away nginx for the curl integration's test and benchmark: a fresh
 * temporary folder with a configuration, logs, temp paths and a document root
 * of files with checkable contents, nginx listening on a free loopback port,
 * and a stop that always kills it and removes the folder. */
#ifndef AE_TESTS_NGINX_SERVER_H
#define AE_TESTS_NGINX_SERVER_H

#include <limits.h>
#include <stddef.h>
#include <sys/types.h>

struct nginx_server {
    char dir[PATH_MAX]; /* the temporary prefix; "" when not made */
    pid_t pid;          /* nginx's master process, 0 when not running */
    int port;           /* 127.0.0.1:port */
};

/* Byte `offset` of served file number `file` ("/f<file>"): pseudo-random,
 * different for every file, so a body mixed up with another is caught. */
unsigned char nginx_body_byte(unsigned file, size_t offset);

/* Make the folder with nfiles files (file i has sizes[i] bytes), write the
 * configuration (access_log: whether nginx logs each request) and start
 * nginx_path; return once it accepts connections. Returns 0, or -1 with a
 * message in err (the server is then stopped and the folder removed). The
 * nginx process is killed if this process dies first (PR_SET_PDEATHSIG). */
int nginx_start(struct nginx_server *srv, const char *nginx_path, const size_t *sizes,
                unsigned nfiles, int access_log, char *err, size_t errlen);

/* Stop nginx (SIGTERM, then SIGKILL if it lingers), wait for it, remove the
 * folder. Safe on a server that is not (fully) started. */
void nginx_stop(struct nginx_server *srv);

/* A loopback TCP port that nothing listens on right now. Returns the port or
 * -1. */
int nginx_free_port(void);

#endif
