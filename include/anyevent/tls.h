/*
 * anyevent-tls: TLS on anyevent streams (libanyevent-tls, pkg-config
 * anyevent-tls), over OpenSSL 3 with an in-memory BIO pair. The loop never
 * sees TLS: the stream's io watcher carries the cipher text, so TLS runs on
 * every backend and inside adopted host loops. docs/tls.md is the long form.
 *
 * Built without OpenSSL (meson -Dopenssl=disabled, or libssl-dev missing),
 * the library is still there and every call fails with AE_ENOTSUP.
 *
 * Errors of a call: a negative AE_E* code or NULL, the message in
 * ae_last_error(). Errors of a session: the stream's fatal AE_STREAM_ERROR
 * with err EPROTO (the TLS protocol: a bad certificate, a host name that does
 * not match, garbage, an alert from the peer; the certificate's or OpenSSL's
 * reason in ae_stream_error()), ECONNRESET (the peer closed the connection
 * during the handshake) or the errno of a failed system call.
 */
#ifndef ANYEVENT_TLS_H
#define ANYEVENT_TLS_H

#include "stream.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A TLS configuration (OpenSSL's SSL_CTX): certificates, trusted CAs,
 * verification. One serves any number of streams. */
typedef struct ae_tls_ctx ae_tls_ctx;

/* ae_tls_opts.flags */
enum {
    AE_TLS_NO_VERIFY = 1,    /* a client does not verify the server (verification is on by default) */
    AE_TLS_VERIFY_CLIENT = 2, /* a server asks for a client certificate and verifies it */
    AE_TLS_RELEASE_BUFFERS = 4 /* idle sessions give OpenSSL's record buffers back (less memory
                                * per idle stream, two allocations per record) */
};

/* What ae_tls_ctx_new() loads; NULL or {0}: a client context trusting the
 * system's CAs. Files are PEM. With a certificate and without
 * AE_TLS_VERIFY_CLIENT (a server's context) the system's CAs are looked up in
 * its hashed CA folder only, and only if something is verified. */
typedef struct ae_tls_opts {
    const char *cert_file; /* the certificate chain shown to the peer (a server needs one) */
    const char *key_file;  /* its private key; NULL: in cert_file */
    const char *ca_file;   /* the CAs trusted to sign the peer's certificate; NULL and */
    const char *ca_path;   /* ca_path NULL: the system's default CAs */
    unsigned flags;        /* AE_TLS_NO_VERIFY, AE_TLS_VERIFY_CLIENT, AE_TLS_RELEASE_BUFFERS */
} ae_tls_opts;

/* Which side of the handshake ae_stream_starttls() takes. */
enum { AE_TLS_CONNECT = 1, AE_TLS_ACCEPT = 2 };

/* 1 when anyevent-tls was built with OpenSSL, else 0. */
AE_EXPORT int ae_tls_available(void);

/* Make a context: TLS 1.2 or 1.3, renegotiation off. Fails with AE_EINVAL
 * (unknown flags, a file that cannot be loaded, a key that does not match
 * the certificate: OpenSSL's reason in the message), AE_ENOMEM or
 * AE_ENOTSUP (built without OpenSSL). */
AE_EXPORT ae_tls_ctx *ae_tls_ctx_new(const ae_tls_opts *o);

/* Free the context; streams still using it keep what they need. NULL is
 * ignored. */
AE_EXPORT void ae_tls_ctx_free(ae_tls_ctx *ctx);

/* Run TLS on the stream from now on (ae_stream_set_transport()): the
 * handshake starts at once (or when a connecting stream connects), read
 * requests and writes queued meanwhile wait for it, then everything read or
 * written is plain text on the stream's side and TLS records on the fd.
 * mode AE_TLS_CONNECT: the client; peername is the server's host name (or
 * IP address) to verify its certificate against and to send as SNI;
 * required unless the context has AE_TLS_NO_VERIFY. AE_TLS_ACCEPT: the
 * server (the context needs a certificate); peername, if given, is checked
 * against the client's certificate (AE_TLS_VERIFY_CLIENT).
 * ae_stream_shutdown() and ae_stream_close() with a linger send
 * close_notify, then FIN; a peer's close_notify is AE_STREAM_EOF, an end
 * without it a fatal EPROTO (the data may be truncated). Bytes decrypted
 * but not yet consumed stay inside the stream and are served without the
 * fd becoming readable again.
 * Fails with AE_EINVAL (NULL stream or context, bad mode, no peername to
 * verify, a server context without a certificate), AE_ESTATE (as
 * ae_stream_set_transport(): TLS already, bytes queued or buffered), AE_ENOMEM
 * or AE_ENOTSUP (built without OpenSSL). */
AE_EXPORT int ae_stream_starttls(ae_stream *s, ae_tls_ctx *ctx, int mode, const char *peername);

/* The protocol of the stream's TLS session once its handshake completed
 * ("TLSv1.3", "TLSv1.2"), else NULL (also for a stream without TLS). */
AE_EXPORT const char *ae_tls_version(const ae_stream *s);

#ifdef __cplusplus
}
#endif

#endif /* ANYEVENT_TLS_H */
