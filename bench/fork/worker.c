/* What the processes of ae-fork-bench run: exit at once, or answer an RPC
 * call with nothing. */
#include "anyevent/fork.h"

AE_EXPORT int bench_exit(int sock, int n, const ae_fork_item *items)
{
    (void)sock, (void)n, (void)items;
    return 0;
}

AE_EXPORT int bench_noop(const void *req, size_t len, ae_rpc_reply *reply)
{
    (void)req, (void)len, (void)reply;
    return 0;
}
