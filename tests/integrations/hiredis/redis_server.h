/* A throw-away redis-server for the tests and the benchmark of
 * anyevent-hiredis: started on a unix socket in a fresh temporary folder,
 * without persistence, killed with the test process if that dies first. */
#ifndef AE_TESTS_REDIS_SERVER_H
#define AE_TESTS_REDIS_SERVER_H

#include <sys/types.h>

struct redis_server {
    pid_t pid;          /* 0 once stopped */
    char dir[64];       /* the temporary folder, "" once removed */
    char socket[96];    /* dir/redis.sock */
    char log[96];       /* dir/redis.log: the server's output */
};

/* Start binary (the path of redis-server) and wait (at most 10 s) until it
 * accepts connections on srv->socket. Returns 0, or -1 with a message in
 * err; nothing is left behind on failure. */
int redis_server_start(struct redis_server *srv, const char *binary, char *err, size_t errlen);

/* Kill the server with SIGKILL (if not done already) and reap it.
 * Returns its wait status, or -1 if it was not running. */
int redis_server_kill(struct redis_server *srv);

/* Kill and reap the server if still running, remove its folder. Safe to call
 * twice and on a server that failed to start. */
void redis_server_stop(struct redis_server *srv);

#endif
