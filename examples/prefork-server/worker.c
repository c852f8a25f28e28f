/* The server process of examples/prefork-server: accept on the listening
 * socket every worker shares, answer each connection, count them; exit when
 * the parent closes our socket, with the count as the exit status. */
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "anyevent/fork.h"

AE_EXPORT int prefork_serve(int sock, int n, const ae_fork_item *items)
{
    if (n < 2 || items[0].fd < 0)
        return 255;
    int listener = items[0].fd, count = 0;
    char id[32];
    snprintf(id, sizeof id, "%.*s", (int)items[1].len, (const char *)items[1].data);
    for (;;) {
        struct pollfd pfd[2] = {{listener, POLLIN, 0}, {sock, POLLIN, 0}};
        if (poll(pfd, 2, -1) < 0)
            continue;
        if (pfd[1].revents) /* the parent is done with us */
            return count;
        int conn = accept(listener, NULL, NULL); /* another worker may have taken it: then EAGAIN */
        if (conn < 0)
            continue;
        char line[64];
        int len = snprintf(line, sizeof line, "worker %s, connection %d\n", id, ++count);
        if (write(conn, line, (size_t)len) < 0)
            perror("prefork-server worker: write");
        close(conn);
    }
}
