/* ae-fork-server: the helper process of anyevent/fork.h. libanyevent starts
 * it with posix_spawn, its socket on fd 3; it is not meant to be run by hand. */
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include "serve.h"

int main(void)
{
    if (fcntl(3, F_SETFD, FD_CLOEXEC) < 0) {
        fputs("ae-fork-server: fd 3 is not open: this helper is started by libanyevent "
              "(anyevent/fork.h), not by hand\n",
              stderr);
        return 2;
    }
    ae__close_from(4); /* posix_spawn closed them already; in case another starter did not */
    ae__fork_serve(3, false);
}
