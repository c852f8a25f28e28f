/* anyevent-tls built without OpenSSL (meson -Dopenssl=disabled, or no
 * libssl-dev): every call says so with AE_ENOTSUP instead of pretending. */
#include <stddef.h>

#include "anyevent/tls.h"

#define WHY "anyevent-tls was built without OpenSSL (install libssl-dev and configure again)"

int ae_tls_available(void) { return 0; }

ae_tls_ctx *ae_tls_ctx_new(const ae_tls_opts *o)
{
    (void)o;
    ae_set_error(AE_ENOTSUP, "ae_tls_ctx_new: " WHY);
    return NULL;
}

void ae_tls_ctx_free(ae_tls_ctx *ctx) { (void)ctx; }

int ae_stream_starttls(ae_stream *s, ae_tls_ctx *ctx, int mode, const char *peername)
{
    (void)s, (void)ctx, (void)mode, (void)peername;
    return ae_set_error(AE_ENOTSUP, "ae_stream_starttls: " WHY);
}

const char *ae_tls_version(const ae_stream *s)
{
    (void)s;
    return NULL;
}
