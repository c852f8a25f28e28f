/* ae_pool: not built yet. */
#include "parent.h"

void ae__pool_destroy(ae_pool *pool) { (void)pool; }

ae_pool *ae_pool_new(ae_fork *tmpl, const char *handler_symbol, const ae_pool_opts *o)
{
    (void)tmpl;
    (void)handler_symbol;
    (void)o;
    ae__set_error(AE_ENOTSUP, "ae_pool_new: not implemented yet");
    return NULL;
}

int ae_pool_call(ae_pool *pool, const void *req, size_t len, ae_rpc_cb cb, void *arg)
{
    (void)pool;
    (void)req;
    (void)len;
    (void)cb;
    (void)arg;
    return ae__set_error(AE_ENOTSUP, "ae_pool_call: not implemented yet");
}

void ae_pool_free(ae_pool *pool) { (void)pool; }
