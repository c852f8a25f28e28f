/* anyevent-tls over OpenSSL 3: a stream transport (ae_stream_set_transport)
 * whose TLS session talks to an in-memory BIO pair. Cipher text is read from
 * the fd straight into the pair and written to the fd straight from it
 * (BIO_nwrite0/BIO_nread0): no copy and no allocation per read or write
 * beyond OpenSSL's own; the pair's fixed buffers bound what a session holds. */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "anyevent/tls.h"

#define CTX_MAGIC 0x61657463u /* "aetc" */
#define RECORD 16384          /* the largest TLS record's plain text */
/* Each direction of the pair holds one whole record (16 KiB and its
 * header, padding and tag) plus room, so a record is never written in part. */
#define PAIR_SIZE (RECORD + 2048)

struct ae_tls_ctx {
    uint32_t magic;
    SSL_CTX *ssl_ctx;
    unsigned flags;
    bool has_cert;
};

typedef struct tls_session {
    SSL *ssl;
    BIO *inner;   /* the session's half of the pair */
    BIO *net;     /* ours: cipher text from the fd in, to the fd out */
    char *gather; /* RECORD bytes, made on first need: small pieces of a writev joined into one record */
    int mode;
    bool started;     /* a client's handshake began (ClientHello) */
    bool established; /* the handshake completed */
    bool fd_eof;      /* read(2) returned 0 */
    bool not_socket;  /* send(2) said ENOTSOCK: write(2) */
    bool shut_wanted, notify_sent, fin_sent;
    bool peer_closed; /* the peer's close_notify */
    int err;          /* the session failed: the errno reported */
    char *peername;
    char msg[384];
} tls_session;

int ae_tls_available(void) { return 1; }

/* ---- errors ---------------------------------------------------------------- */

static int fail(tls_session *t, int err, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static int fail(tls_session *t, int err, const char *fmt, ...)
{
    if (!t->err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(t->msg, sizeof t->msg, fmt, ap);
        va_end(ap);
        t->err = err;
    }
    ERR_clear_error();
    errno = t->err;
    return -1;
}

/* OpenSSL said e: the session failed; the reason in words. */
static int fail_ssl(tls_session *t, int e)
{
    unsigned long code = ERR_peek_error();
    int reason = ERR_GET_REASON(code);
    const char *stage = t->established ? "TLS" : "TLS handshake";
    if (t->fd_eof && (e == SSL_ERROR_SYSCALL || reason == SSL_R_UNEXPECTED_EOF_WHILE_READING)) {
        if (!t->established)
            return fail(t, ECONNRESET, "TLS handshake: the peer closed the connection");
        return fail(t, EPROTO, "TLS: the peer closed the connection without close_notify (the data may be truncated)");
    }
    if (reason == SSL_R_CERTIFICATE_VERIFY_FAILED) {
        long v = SSL_get_verify_result(t->ssl);
        return fail(t, EPROTO, "%s%s%s%s: certificate verify failed: %s", stage, t->peername ? " with \"" : "",
                    t->peername ? t->peername : "", t->peername ? "\"" : "", X509_verify_cert_error_string(v));
    }
    if (code) {
        const char *why = ERR_reason_error_string(code);
        char buf[256];
        if (!why) {
            ERR_error_string_n(code, buf, sizeof buf);
            why = buf;
        }
        /* Reasons from SSL_AD_REASON_OFFSET on are alerts the peer sent. */
        return fail(t, EPROTO, "%s: %s%s", stage, reason >= SSL_AD_REASON_OFFSET ? "alert from the peer: " : "", why);
    }
    return fail(t, EPROTO, "%s: failed (OpenSSL error %d)", stage, e);
}

/* ---- cipher text between the fd and the pair --------------------------------- */

/* Write out what the session produced; 0 (maybe some left: the kernel is
 * full) or -1. */
static int out_flush(tls_session *t, int fd)
{
    for (;;) {
        char *p;
        int n = BIO_nread0(t->net, &p);
        if (n <= 0)
            return 0;
        ssize_t w;
        do {
            if (t->not_socket)
                w = write(fd, p, (size_t)n);
            else if ((w = send(fd, p, (size_t)n, MSG_NOSIGNAL)) < 0 && errno == ENOTSOCK) {
                t->not_socket = true;
                w = write(fd, p, (size_t)n);
            }
        } while (w < 0 && errno == EINTR);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            return fail(t, errno, "write: %s", strerror(errno));
        }
        BIO_nread(t->net, &p, (int)w);
    }
}

enum { FILL_ERROR = -1, FILL_AGAIN = 0, FILL_MORE = 1 };

/* Read cipher text for the session: FILL_MORE when it has something new
 * (bytes, or the end), FILL_AGAIN when the fd has nothing now. */
static int in_fill(tls_session *t, int fd)
{
    if (t->fd_eof)
        return FILL_AGAIN;
    char *p;
    int room = BIO_nwrite0(t->net, &p);
    if (room <= 0)
        return FILL_MORE; /* the pair is full: the session has input to take */
    ssize_t n;
    do
        n = read(fd, p, (size_t)room);
    while (n < 0 && errno == EINTR);
    if (n > 0) {
        BIO_nwrite(t->net, &p, (int)n);
        return FILL_MORE;
    }
    if (n == 0) {
        t->fd_eof = true;
        BIO_shutdown_wr(t->net); /* the session reads its end */
        return FILL_MORE;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK)
        return FILL_AGAIN;
    return fail(t, errno, "read: %s", strerror(errno));
}

/* Drive the handshake: 1 done, 0 waiting for the fd, -1 failed. */
static int handshake(tls_session *t, int fd)
{
    while (!t->established) {
        ERR_clear_error();
        t->started = true;
        int r = SSL_do_handshake(t->ssl);
        if (r == 1) {
            t->established = true;
            break;
        }
        int e = SSL_get_error(t->ssl, r);
        if (e == SSL_ERROR_WANT_READ) {
            if (out_flush(t, fd) < 0)
                return -1;
            int f = in_fill(t, fd);
            if (f == FILL_MORE)
                continue;
            return f;
        }
        if (e == SSL_ERROR_WANT_WRITE) {
            if (out_flush(t, fd) < 0)
                return -1;
            if (BIO_ctrl_pending(t->net) == 0)
                continue;
            return 0;
        }
        fail_ssl(t, e);
        (void)out_flush(t, fd); /* the alert tells the peer why */
        errno = t->err;
        return -1;
    }
    return out_flush(t, fd) < 0 ? -1 : 1;
}

/* ---- the transport --------------------------------------------------------- */

static ssize_t tls_read(void *ctx, int fd, void *buf, size_t len)
{
    tls_session *t = ctx;
    size_t got = 0;
    if (t->err)
        goto out;
    if (!t->established && handshake(t, fd) <= 0)
        goto out;
    while (got < len && !t->peer_closed) {
        ERR_clear_error();
        size_t want = len - got;
        int n = SSL_read(t->ssl, (char *)buf + got, want > INT_MAX ? INT_MAX : (int)want);
        if (n > 0) {
            got += (size_t)n;
            continue;
        }
        int e = SSL_get_error(t->ssl, n);
        if (e == SSL_ERROR_WANT_READ) {
            if (out_flush(t, fd) < 0 || in_fill(t, fd) != FILL_MORE)
                break;
            continue;
        }
        if (e == SSL_ERROR_ZERO_RETURN) {
            t->peer_closed = true;
            break;
        }
        if (e == SSL_ERROR_WANT_WRITE) {
            if (out_flush(t, fd) < 0 || BIO_ctrl_pending(t->net) > 0)
                break; /* events() asks for AE_WRITE */
            continue;
        }
        fail_ssl(t, e);
        (void)out_flush(t, fd);
        break;
    }
    if (!t->err)
        (void)out_flush(t, fd); /* what reading produced (a key update's answer) */
out:
    if (got)
        return (ssize_t)got; /* a failure after input: the next read reports it */
    if (t->err) {
        errno = t->err;
        return -1;
    }
    if (t->peer_closed)
        return 0;
    errno = EAGAIN;
    return -1;
}

/* The next record's plain text from iov after *i, *off: a pointer into iov
 * when one buffer fills it (or is the last), else the pieces joined. */
static const char *next_record(tls_session *t, const struct iovec *iov, int iovcnt, int i, size_t off, size_t *len)
{
    size_t left = iov[i].iov_len - off;
    if (!t->gather && left < RECORD && i < iovcnt - 1)
        t->gather = malloc(RECORD); /* without it: one record per piece */
    if (left >= RECORD || i == iovcnt - 1 || !t->gather) {
        *len = left < RECORD ? left : RECORD;
        return (const char *)iov[i].iov_base + off;
    }
    size_t n = 0;
    while (i < iovcnt && n < RECORD) {
        size_t take = iov[i].iov_len - off;
        if (take > RECORD - n)
            take = RECORD - n;
        memcpy(t->gather + n, (const char *)iov[i].iov_base + off, take);
        n += take;
        i++;
        off = 0;
    }
    *len = n;
    return t->gather;
}

static ssize_t tls_writev(void *ctx, int fd, const struct iovec *iov, int iovcnt)
{
    tls_session *t = ctx;
    size_t took = 0;
    int i = 0;
    size_t off = 0;
    if (t->err || out_flush(t, fd) < 0)
        goto out;
    if (!t->established) {
        if (handshake(t, fd) <= 0)
            goto out;
    }
    /* One record at a time, each once the kernel took the one before: what
     * waits for the kernel is the stream's queue, not cipher text here. */
    while (BIO_ctrl_pending(t->net) == 0) {
        while (i < iovcnt && off == iov[i].iov_len) {
            i++;
            off = 0;
        }
        if (i == iovcnt)
            break;
        size_t len;
        const char *p = next_record(t, iov, iovcnt, i, off, &len);
        ERR_clear_error();
        int w = SSL_write(t->ssl, p, (int)len);
        if (w <= 0) {
            int e = SSL_get_error(t->ssl, w);
            if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                fail_ssl(t, e);
            break;
        }
        took += (size_t)w;
        for (size_t n = (size_t)w; n;) {
            size_t step = iov[i].iov_len - off < n ? iov[i].iov_len - off : n;
            off += step;
            n -= step;
            if (off == iov[i].iov_len && n) {
                i++;
                off = 0;
            }
        }
        if (out_flush(t, fd) < 0)
            break;
    }
out:
    if (took)
        return (ssize_t)took;
    if (t->err) {
        errno = t->err;
        return -1;
    }
    if (iovcnt == 0)
        return 0;
    errno = EAGAIN;
    return -1;
}

static int tls_shutdown(void *ctx, int fd)
{
    tls_session *t = ctx;
    t->shut_wanted = true;
    if (t->err) {
        errno = t->err;
        return -1;
    }
    if (out_flush(t, fd) < 0)
        return -1;
    if (!t->established) {
        int r = handshake(t, fd);
        if (r < 0)
            return -1;
        if (r == 0) {
            errno = EAGAIN;
            return -1;
        }
    }
    if (!t->notify_sent) {
        ERR_clear_error();
        int r = SSL_shutdown(t->ssl); /* close_notify into the pair */
        if (r < 0) {
            int e = SSL_get_error(t->ssl, r);
            if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                return fail_ssl(t, e);
        }
        t->notify_sent = true;
        if (out_flush(t, fd) < 0)
            return -1;
    }
    if (BIO_ctrl_pending(t->net) > 0) {
        errno = EAGAIN;
        return -1;
    }
    if (!t->fin_sent) {
        t->fin_sent = true;
        if (!t->not_socket && shutdown(fd, SHUT_WR) < 0 && errno != ENOTCONN && errno != ENOTSOCK)
            return fail(t, errno, "shutdown: %s", strerror(errno));
    }
    return 0;
}

static int tls_events(void *ctx, int want)
{
    tls_session *t = ctx;
    if (t->err)
        return AE_WRITE | AE_STREAM_TRANSPORT_PENDING; /* the stream's next call reports it */
    int ev = BIO_ctrl_pending(t->net) > 0 ? AE_WRITE : 0; /* cipher text the kernel refused */
    if (!t->established) {
        /* Plain text waits; the handshake needs the peer, or to begin. */
        if (t->mode == AE_TLS_CONNECT && !t->started)
            return ev | AE_WRITE;
        return ev | AE_READ;
    }
    ev |= want & (AE_READ | AE_WRITE);
    if (t->shut_wanted && !t->fin_sent)
        ev |= AE_WRITE;
    if ((want & AE_READ) && (SSL_pending(t->ssl) > 0 || BIO_ctrl_pending(t->inner) > 0))
        ev |= AE_STREAM_TRANSPORT_PENDING;
    return ev;
}

static const char *tls_error(void *ctx)
{
    tls_session *t = ctx;
    return t->err ? t->msg : NULL;
}

static void session_free(tls_session *t)
{
    SSL_free(t->ssl); /* frees inner too */
    BIO_free(t->net);
    free(t->gather);
    free(t->peername);
    free(t);
}

static void tls_free(void *ctx) { session_free(ctx); }

static const ae_stream_transport tls_transport = {
    .read = tls_read,
    .writev = tls_writev,
    .shutdown = tls_shutdown,
    .events = tls_events,
    .error = tls_error,
    .free = tls_free,
};

/* ---- the API ---------------------------------------------------------------- */

/* OpenSSL's reason for the failure just seen, for a message. */
static const char *ssl_reason(void)
{
    static _Thread_local char buf[256];
    unsigned long code = ERR_peek_last_error();
    const char *why = code ? ERR_reason_error_string(code) : NULL;
    if (!why && code) {
        ERR_error_string_n(code, buf, sizeof buf);
        why = buf;
    } else if (why) {
        snprintf(buf, sizeof buf, "%s", why);
        why = buf;
    }
    ERR_clear_error();
    return why ? why : "unknown OpenSSL error";
}

ae_tls_ctx *ae_tls_ctx_new(const ae_tls_opts *o)
{
    ae_tls_opts d = {0};
    if (!o)
        o = &d;
    if (o->flags & ~(unsigned)(AE_TLS_NO_VERIFY | AE_TLS_VERIFY_CLIENT | AE_TLS_RELEASE_BUFFERS)) {
        ae_set_error(AE_EINVAL, "ae_tls_ctx_new: unknown flags %#x", o->flags);
        return NULL;
    }
    if (o->key_file && !o->cert_file) {
        ae_set_error(AE_EINVAL, "ae_tls_ctx_new: key_file without cert_file");
        return NULL;
    }
    ae_tls_ctx *c = calloc(1, sizeof *c);
    if (!c) {
        ae_set_error(AE_ENOMEM, "ae_tls_ctx_new: out of memory");
        return NULL;
    }
    ERR_clear_error();
    c->ssl_ctx = SSL_CTX_new(TLS_method());
    if (!c->ssl_ctx) {
        ae_set_error(AE_ENOMEM, "ae_tls_ctx_new: SSL_CTX_new: %s", ssl_reason());
        free(c);
        return NULL;
    }
    SSL_CTX *x = c->ssl_ctx;
    SSL_CTX_set_min_proto_version(x, TLS1_2_VERSION);
    SSL_CTX_set_options(x, SSL_OP_NO_RENEGOTIATION);
    /* The stream may offer a retried write from a moved buffer. Record
     * buffers are kept (no allocation per record) unless asked. */
    SSL_CTX_set_mode(x, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                            (o->flags & AE_TLS_RELEASE_BUFFERS ? SSL_MODE_RELEASE_BUFFERS : 0));
    SSL_CTX_set_num_tickets(x, 0); /* no session resumption is offered: do not send tickets */
    const char *what = NULL, *file = NULL;
    if (o->cert_file) {
        if (SSL_CTX_use_certificate_chain_file(x, o->cert_file) != 1)
            what = "cert_file", file = o->cert_file;
        else if (SSL_CTX_use_PrivateKey_file(x, o->key_file ? o->key_file : o->cert_file, SSL_FILETYPE_PEM) != 1)
            what = "key_file", file = o->key_file ? o->key_file : o->cert_file;
        else if (SSL_CTX_check_private_key(x) != 1)
            what = "key_file (does not match cert_file)", file = o->key_file ? o->key_file : o->cert_file;
        c->has_cert = true;
    }
    if (!what) {
        if (o->ca_file || o->ca_path) {
            if (SSL_CTX_load_verify_locations(x, o->ca_file, o->ca_path) != 1)
                what = o->ca_file ? "ca_file" : "ca_path", file = o->ca_file ? o->ca_file : o->ca_path;
        } else if (c->has_cert && !(o->flags & AE_TLS_VERIFY_CLIENT)) {
            /* A server's: it verifies nobody, so the system's bundle (over a
             * hundred certificates parsed now) is not read; the hashed folder
             * is looked up only if the context is used to verify after all. */
            if (SSL_CTX_set_default_verify_dir(x) != 1)
                what = "the system's CA folder", file = X509_get_default_cert_dir();
        } else if (SSL_CTX_set_default_verify_paths(x) != 1) {
            what = "the system's CAs", file = X509_get_default_cert_file();
        }
    }
    if (what) {
        /* A file that cannot be read is OpenSSL's "system lib": say why. */
        const char *why = file && *file && access(file, R_OK) != 0 ? strerror(errno) : ssl_reason();
        ae_set_error(AE_EINVAL, "ae_tls_ctx_new: %s \"%s\": %s", what, file, why);
        ERR_clear_error();
        SSL_CTX_free(x);
        free(c);
        return NULL;
    }
    c->flags = o->flags;
    c->magic = CTX_MAGIC;
    return c;
}

void ae_tls_ctx_free(ae_tls_ctx *ctx)
{
    if (!ctx || ctx->magic != CTX_MAGIC)
        return;
    ctx->magic = 0;
    SSL_CTX_free(ctx->ssl_ctx); /* sessions hold references of their own */
    free(ctx);
}

static bool is_ip(const char *name)
{
    unsigned char a[16];
    return inet_pton(AF_INET, name, a) == 1 || inet_pton(AF_INET6, name, a) == 1;
}

int ae_stream_starttls(ae_stream *s, ae_tls_ctx *ctx, int mode, const char *peername)
{
    if (!s)
        return ae_set_error(AE_EINVAL, "ae_stream_starttls: stream is NULL");
    if (!ctx || ctx->magic != CTX_MAGIC)
        return ae_set_error(AE_EINVAL, "ae_stream_starttls: not a TLS context");
    if (mode != AE_TLS_CONNECT && mode != AE_TLS_ACCEPT)
        return ae_set_error(AE_EINVAL, "ae_stream_starttls: mode %d: must be AE_TLS_CONNECT or AE_TLS_ACCEPT", mode);
    bool verify = mode == AE_TLS_CONNECT ? !(ctx->flags & AE_TLS_NO_VERIFY) : (ctx->flags & AE_TLS_VERIFY_CLIENT);
    if (mode == AE_TLS_CONNECT && verify && (!peername || !*peername))
        return ae_set_error(AE_EINVAL, "ae_stream_starttls: no peername to verify the server's certificate against "
                                       "(or a context with AE_TLS_NO_VERIFY)");
    if (mode == AE_TLS_ACCEPT && !ctx->has_cert)
        return ae_set_error(AE_EINVAL, "ae_stream_starttls: AE_TLS_ACCEPT with a context without a certificate");
    if (mode == AE_TLS_ACCEPT && peername && !verify)
        return ae_set_error(AE_EINVAL, "ae_stream_starttls: a peername to check on a server context without "
                                       "AE_TLS_VERIFY_CLIENT");
    if (peername && !*peername)
        peername = NULL;

    tls_session *t = calloc(1, sizeof *t);
    if (!t)
        return ae_set_error(AE_ENOMEM, "ae_stream_starttls: out of memory");
    t->mode = mode;
    ERR_clear_error();
    t->ssl = SSL_new(ctx->ssl_ctx);
    if (peername)
        t->peername = strdup(peername);
    if (!t->ssl || (peername && !t->peername) ||
        BIO_new_bio_pair(&t->inner, PAIR_SIZE, &t->net, PAIR_SIZE) != 1) {
        if (t->ssl)
            SSL_free(t->ssl);
        free(t->gather);
        free(t->peername);
        free(t);
        ERR_clear_error();
        return ae_set_error(AE_ENOMEM, "ae_stream_starttls: out of memory");
    }
    SSL_set_bio(t->ssl, t->inner, t->inner);
    int ok = 1;
    if (mode == AE_TLS_CONNECT) {
        SSL_set_connect_state(t->ssl);
        SSL_set_verify(t->ssl, verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    } else {
        SSL_set_accept_state(t->ssl);
        SSL_set_verify(t->ssl, verify ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT : SSL_VERIFY_NONE, NULL);
    }
    if (peername) {
        if (is_ip(peername)) {
            ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), peername);
        } else {
            SSL_set_hostflags(t->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
            ok = SSL_set1_host(t->ssl, peername);
            if (ok && mode == AE_TLS_CONNECT)
                ok = SSL_set_tlsext_host_name(t->ssl, peername) == 1;
        }
    }
    if (!ok) {
        int rc = ae_set_error(AE_EINVAL, "ae_stream_starttls: peername \"%s\": %s", peername, ssl_reason());
        session_free(t);
        return rc;
    }
    int rc = ae_stream_set_transport(s, &tls_transport, t);
    if (rc < 0) {
        session_free(t);
        char msg[512];
        snprintf(msg, sizeof msg, "%s", ae_last_error());
        const char *tail = strncmp(msg, "ae_stream_set_transport: ", 25) == 0 ? msg + 25 : msg;
        return ae_set_error(rc, "ae_stream_starttls: %s", tail);
    }
    return 0;
}

const char *ae_tls_version(const ae_stream *s)
{
    tls_session *t = ae_stream_transport_ctx(s, &tls_transport);
    return t && t->established && !t->err ? SSL_get_version(t->ssl) : NULL;
}
