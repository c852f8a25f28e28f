/* The process side of examples/spawn-fast: standard output to the passed
 * file, standard error to our socket, then exec the arguments. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "anyevent/fork.h"

AE_EXPORT int spawn_exec(int sock, int n, const ae_fork_item *items)
{
    if (n < 2 || items[0].fd < 0)
        return 127;
    char *argv[64];
    int argc = 0;
    for (int i = 1; i < n && argc < 63; i++)
        argv[argc++] = strndup(items[i].data, items[i].len);
    argv[argc] = NULL;
    /* dup2 clears close-on-exec on 1 and 2; everything else we hold is close-on-exec */
    if (dup2(items[0].fd, 1) < 0 || dup2(sock, 2) < 0)
        return 127;
    execvp(argv[0], argv);
    perror(argv[0]);
    return 127;
}
