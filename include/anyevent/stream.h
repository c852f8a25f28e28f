/*
 * anyevent streams: buffered non-blocking byte streams over a file
 * descriptor, after Perl's AnyEvent::Handle. Built on the public watchers of
 * <anyevent.h> only, so a stream runs on every backend and inside adopted
 * host loops. docs/streams.md is the long form of what follows.
 *
 * Rules common to every call here:
 *  - No user callback ever runs from inside an ae_stream_* call: callbacks
 *    run only from the loop.
 *  - Freeing a stream from any of its callbacks is safe.
 *  - A call that fails returns NULL or a negative AE_E* code with the
 *    message in ae_last_error().
 *  - ae_loop_free() frees what is left of the loop's streams, connects,
 *    servers and commands, without running a callback.
 */
#ifndef ANYEVENT_STREAM_H
#define ANYEVENT_STREAM_H

#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "../anyevent.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ae_stream ae_stream;

/* ae_stream_opts.flags */
enum {
    AE_STREAM_CLOSE_FD = 1,  /* ae_stream_free() closes the fd */
    AE_STREAM_NODELAY = 2,   /* TCP_NODELAY on a TCP socket */
    AE_STREAM_KEEPALIVE = 4  /* SO_KEEPALIVE on a socket */
};

/* A stream's settings; NULL or {0} gives the defaults. */
typedef struct ae_stream_opts {
    size_t rbuf_max;  /* 0: 1 MiB of unconsumed input; beyond it: fatal ENOSPC */
    size_t wbuf_high; /* 0: 64 KiB; a write returns 1 when the queue reaches it (back off) */
    size_t wbuf_low;  /* AE_STREAM_DRAIN when the queue falls to it (0) */
    size_t wbuf_max;  /* 0: no limit; beyond it: fatal ENOSPC (a slow reader) */
    double timeout, rtimeout, wtimeout; /* inactivity, any / read / write; 0: off */
    unsigned flags;   /* AE_STREAM_CLOSE_FD, AE_STREAM_NODELAY, AE_STREAM_KEEPALIVE */
} ae_stream_opts;

/* What an event callback reports: exactly one of these per call. */
enum {
    AE_STREAM_EOF = 1,        /* the peer closed its side; no read request was pending */
    AE_STREAM_ERROR = 2,      /* fatal: the stream is stopped; this is its last callback */
    AE_STREAM_DRAIN = 4,      /* the write queue fell to wbuf_low */
    AE_STREAM_TIMEOUT = 8,    /* no activity at all for opts.timeout (not fatal) */
    AE_STREAM_CONNECTED = 16, /* ae_stream_connect() reached its peer */
    AE_STREAM_RTIMEOUT = 32,  /* nothing read for opts.rtimeout while reading (not fatal) */
    AE_STREAM_WTIMEOUT = 64   /* nothing written for opts.wtimeout while data waits (not fatal) */
};

/* One callback for what is not data. err is an errno value: ECONNRESET, EPIPE
 * (EOF while a read request cannot be satisfied), ENOSPC (a limit), EBADMSG (a
 * framing function refused), ETIMEDOUT (the three timeouts)...; 0 for
 * AE_STREAM_EOF, AE_STREAM_DRAIN and AE_STREAM_CONNECTED. AE_STREAM_ERROR is
 * fatal: the stream stops and the callback is its last; the caller still
 * frees it. A timeout is not: returning from it re-arms the timeout. */
typedef void (*ae_stream_event_cb)(ae_stream *s, int what, int err, void *arg);

/* A complete read: data points into the stream's buffer, valid until the
 * callback returns. */
typedef void (*ae_stream_data_cb)(ae_stream *s, const char *data, size_t len, void *arg);

/* Measures a frame: returns the length of a complete frame at the start of
 * data, 0 for "need more", or AE_STREAM_BAD (fatal EBADMSG). eof is 1 when no
 * more bytes will come. Also the type of ae_stream_on_read()'s consumer,
 * which returns how many bytes it used. */
typedef size_t (*ae_stream_frame_cb)(ae_stream *s, const char *data, size_t len, int eof, void *arg);

#define AE_STREAM_BAD ((size_t)-1) /* a frame function's "refused" */

/* Make a stream of fd (made non-blocking). It reads only while a read request
 * is queued or ae_stream_on_read() is set. cb gets the events. Fails with
 * AE_EINVAL (NULL loop or cb, bad options) or AE_EBADF (fd not open). */
AE_EXPORT ae_stream *ae_stream_new(ae_loop *loop, int fd, const ae_stream_opts *o, ae_stream_event_cb cb,
                                   void *arg);

/* Free the stream now, dropping what was not written; safe from every
 * callback. Closes the fd only with AE_STREAM_CLOSE_FD. Every pending
 * ae_stream_write_ref() done callback still runs once, from the loop. NULL is
 * ignored. */
AE_EXPORT void ae_stream_free(ae_stream *s);

/* Stop reading, keep writing the queue for up to linger seconds (0: not at
 * all), then close the fd and free the stream. No callback of the stream
 * runs during the linger. Returns 0 or AE_EINVAL (NULL, linger negative or
 * not finite). */
AE_EXPORT int ae_stream_close(ae_stream *s, double linger);

/* ---- read requests ----------------------------------------------------- */

enum { AE_RSPEC_LINE = 1, AE_RSPEC_EXACTLY, AE_RSPEC_UPTO, AE_RSPEC_PREFIXED, AE_RSPEC_FRAMED };

/* What a read request waits for; made by the AE_LINE ... AE_FRAMED macros
 * and passed by value. */
typedef struct ae_rspec {
    int kind;                 /* AE_RSPEC_* */
    size_t n;                 /* EXACTLY, UPTO: the count; PREFIXED: the width */
    size_t max;               /* PREFIXED: the largest payload (0: rbuf_max) */
    const char *delim;        /* LINE: the delimiter (NUL-terminated), or NULL */
    ae_stream_frame_cb frame; /* FRAMED */
    void *frame_arg;
} ae_rspec;

/* A line; delim NULL: "\n" with a "\r" before it dropped. The callback gets
 * the line without its delimiter. */
#define AE_LINE(delim_) ((ae_rspec){AE_RSPEC_LINE, 0, 0, (delim_), NULL, NULL})
/* Exactly n bytes (n >= 1). */
#define AE_EXACTLY(n_) ((ae_rspec){AE_RSPEC_EXACTLY, (n_), 0, NULL, NULL, NULL})
/* Whatever is there, 1 to n bytes. */
#define AE_UPTO(n_) ((ae_rspec){AE_RSPEC_UPTO, (n_), 0, NULL, NULL, NULL})
/* A 1, 2 or 4 byte big-endian length, then that many bytes; the callback
 * gets the payload without the length. A length above max is a fatal
 * EBADMSG. */
#define AE_PREFIXED(width_, max_) ((ae_rspec){AE_RSPEC_PREFIXED, (width_), (max_), NULL, NULL, NULL})
/* fn measures a frame (HTTP headers, RESP, JSON...). */
#define AE_FRAMED(fn_, arg_) ((ae_rspec){AE_RSPEC_FRAMED, 0, 0, NULL, (fn_), (arg_)})

/* Queue a read request at the end. Requests are served in order; one queued
 * from inside a data callback is served from what is already buffered
 * before more is read. EOF while a request cannot be satisfied is a fatal
 * EPIPE. Fails with AE_EINVAL (bad spec, NULL cb) or AE_ESTATE (the stream
 * failed or is closing). */
AE_EXPORT int ae_stream_read(ae_stream *s, ae_rspec r, ae_stream_data_cb cb, void *arg);

/* Queue a read request at the front: it is served before every other. */
AE_EXPORT int ae_stream_read_first(ae_stream *s, ae_rspec r, ae_stream_data_cb cb, void *arg);

/* Simple mode, used while no request is queued: consume gets everything
 * buffered and returns how many bytes it used (0: wait for more,
 * AE_STREAM_BAD: fatal EBADMSG). At EOF it is called once more with eof 1;
 * bytes it still leaves are a fatal EPIPE. consume NULL unsets it. */
AE_EXPORT int ae_stream_on_read(ae_stream *s, ae_stream_frame_cb consume, void *arg);

/* ---- writing ----------------------------------------------------------- */

/* Write len bytes: straight to the kernel when nothing is queued, the rest
 * copied into the queue and written when the fd is writable. Writes are
 * never reordered. Returns 0, 1 when the queue has reached wbuf_high (back
 * off until AE_STREAM_DRAIN), or a negative code: AE_EINVAL, AE_ESTATE (the
 * stream failed, is closing or was shut down), AE_ELIMIT (beyond wbuf_max:
 * the stream then fails with ENOSPC). A write the kernel refuses (EPIPE,
 * ECONNRESET) becomes a fatal event in a later iteration. */
AE_EXPORT int ae_stream_write(ae_stream *s, const void *data, size_t len);

/* As ae_stream_write(), gathering iovcnt buffers (in one system call when
 * nothing is queued). */
AE_EXPORT int ae_stream_writev(ae_stream *s, const struct iovec *iov, int iovcnt);

/* As ae_stream_write() without copying: the caller's memory is written from
 * where it is and must stay valid until done(data, arg) runs. done runs
 * exactly once, from the loop: when the kernel took the bytes, or after the
 * stream failed or was freed. done may be NULL. */
AE_EXPORT int ae_stream_write_ref(ae_stream *s, const void *data, size_t len, void (*done)(void *data, void *arg),
                                  void *arg);

/* The bytes the kernel has not taken yet (0 for NULL). */
AE_EXPORT size_t ae_stream_queued(const ae_stream *s);

/* Send FIN (shutdown(SHUT_WR)) once the queue is written; writing is over.
 * Reading goes on. AE_ENOTSUP on an fd that is not a socket. */
AE_EXPORT int ae_stream_shutdown(ae_stream *s);

/* The stream's fd (-1 while ae_stream_connect() is connecting, or for NULL). */
AE_EXPORT int ae_stream_fd(const ae_stream *s);

/* The message of the fatal error, or NULL while there is none. */
AE_EXPORT const char *ae_stream_error(const ae_stream *s);

/* ---- transports ---------------------------------------------------------- */

/* A transport moves a stream's bytes in place of read(2), writev(2) and
 * shutdown(2) on its fd: anyevent-tls's TLS session (anyevent/tls.h) is one.
 * The stream calls these only from the loop or from a call on the stream,
 * never while one of them runs; each returns as the system call it replaces
 * does, -1 with errno set on failure (EAGAIN: nothing can be done now). */
typedef struct ae_stream_transport {
    /* Up to len bytes of input into buf: > 0, 0 at the end, or -1. Fewer
     * than len bytes says it has nothing more now. */
    ssize_t (*read)(void *ctx, int fd, void *buf, size_t len);
    /* Take bytes to write: how many it took, or -1. iovcnt 0: write out
     * what it holds (0 or -1). */
    ssize_t (*writev)(void *ctx, int fd, const struct iovec *iov, int iovcnt);
    /* Writing is over and the queue is written: end it (FIN). 0 when done,
     * -1 with EAGAIN to be called again once its events let it go on. */
    int (*shutdown)(void *ctx, int fd);
    /* The io events to watch, given want (AE_READ while the stream reads,
     * AE_WRITE while bytes are queued): it may add or hold back either, and
     * add AE_STREAM_TRANSPORT_PENDING when read() has input the fd will not
     * signal (bytes buffered inside it). */
    int (*events)(void *ctx, int want);
    /* The message for the last -1, or NULL for strerror(errno). */
    const char *(*error)(void *ctx);
    /* The stream is freed; may be NULL. */
    void (*free)(void *ctx);
} ae_stream_transport;

#define AE_STREAM_TRANSPORT_PENDING 0x100 /* ae_stream_transport.events(): read() has buffered input */

/* Have t move the stream's bytes from now on (ctx is passed to each of its
 * functions; t must stay valid while the stream lives). Allowed once per
 * stream, while nothing is queued for writing (write the clear text first:
 * wait for AE_STREAM_DRAIN) and no input is buffered unread (bytes the peer
 * sent before it, which the transport would never see). On a stream still
 * connecting, it starts with the connection. Fails with AE_EINVAL or
 * AE_ESTATE (a transport is set; the stream failed, is closing, reached EOF,
 * or has bytes queued or buffered). */
AE_EXPORT int ae_stream_set_transport(ae_stream *s, const ae_stream_transport *t, void *ctx);

/* The ctx the stream's transport was set with, if that transport is t;
 * else NULL. */
AE_EXPORT void *ae_stream_transport_ctx(const ae_stream *s, const ae_stream_transport *t);

/* ---- connecting ---------------------------------------------------------- */

typedef struct ae_connect ae_connect;

/* How ae_tcp_connect() connects; NULL or {0}: the defaults. */
typedef struct ae_connect_opts {
    double timeout;       /* the whole connect, name lookup included; 0: none */
    double attempt_delay; /* start the next address after this (RFC 8305); 0: 0.25 s; < 0: one at a time */
    int family;           /* AF_UNSPEC, AF_INET, AF_INET6 */
} ae_connect_opts;

/* The result, once: fd connected (non-blocking, close-on-exec, now the
 * caller's), err 0; or fd -1 and an errno value: ECONNREFUSED, ETIMEDOUT (the
 * timeout), ENXIO (no such name), EAGAIN (a unix server's backlog is full). */
typedef void (*ae_connect_cb)(int fd, int err, void *arg);

/* Connect to host (a name or a numeric address) and service (a port number
 * or name). A name is looked up on a thread of its own, never in the loop.
 * Every address is tried, IPv6 and IPv4 interleaved, each attempt started
 * attempt_delay after the one before (or when it failed) while earlier ones
 * keep going; the first to connect wins and the others are closed. Fails
 * with AE_EINVAL (NULL argument, bad options, an unknown service) or
 * AE_ENOMEM; the connect is freed once its callback returns. */
AE_EXPORT ae_connect *ae_tcp_connect(ae_loop *loop, const char *host, const char *service, const ae_connect_opts *o,
                                     ae_connect_cb cb, void *arg);

/* Connect to the unix socket at path; timeout 0: none. */
AE_EXPORT ae_connect *ae_unix_connect(ae_loop *loop, const char *path, double timeout, ae_connect_cb cb, void *arg);

/* Stop connecting: closes every attempt and abandons the name lookup (its
 * thread finishes on its own and frees what it holds; a resolver's lookup
 * is cancelled); cb never runs after
 * it. Allowed until the callback returns, inside it too (then it does
 * nothing: the fd is already the caller's). NULL is ignored. */
AE_EXPORT void ae_connect_cancel(ae_connect *c);

/* Where ae_tcp_connect() and ae_stream_connect() look names up. By default
 * getaddrinfo() runs on a thread of its own per lookup; a resolver set with
 * ae_connect_set_resolver() replaces it on one loop (anyevent-cares has one:
 * ae_cares_resolve_connects()). A numeric host is never looked up. */
struct addrinfo;
/* A lookup's end: answer (SOCK_STREAM addresses; the resolver's, released with
 * its free_answer after this returns) or NULL and an EAI_* error. */
typedef void (*ae_resolver_done)(struct addrinfo *answer, int gai_err, void *done_arg);
typedef struct ae_resolver {
    /* Start looking up host and service (family: AF_UNSPEC, AF_INET or
     * AF_INET6). done runs exactly once, from the loop, never inside start,
     * unless the lookup is cancelled. Returns the lookup, or NULL with the
     * error set (then done never runs). */
    void *(*start)(void *ctx, const char *host, const char *service, int family, ae_resolver_done done,
                   void *done_arg);
    /* done never runs after it; must not need ctx to be alive. */
    void (*cancel)(void *ctx, void *lookup);
    /* Release an answer given to done; must not need ctx to be alive. */
    void (*free_answer)(void *ctx, struct addrinfo *answer);
} ae_resolver;

/* Make connects started on loop from now on look names up with r (copied)
 * and ctx; r NULL: the getaddrinfo() thread again. Lookups under way keep
 * the resolver they started with. Fails with AE_EINVAL (loop NULL, a
 * function of r NULL) or AE_ENOMEM. */
AE_EXPORT int ae_connect_set_resolver(ae_loop *loop, const ae_resolver *r, void *ctx);

/* The resolver that connects started on loop now would use, its ctx stored
 * in *ctx (if ctx is not NULL); or NULL: the getaddrinfo() thread (none was
 * set, or loop is NULL, then with AE_EINVAL). Lets an owner of a resolver
 * tell whether it is still the loop's before putting the thread back. */
AE_EXPORT const ae_resolver *ae_connect_get_resolver(ae_loop *loop, void **ctx);

/* A stream that connects as ae_tcp_connect() does and owns its fd. Reads and
 * writes may be queued at once; they start when it is connected. Reports
 * AE_STREAM_CONNECTED, or a fatal AE_STREAM_ERROR with the connect's err. */
AE_EXPORT ae_stream *ae_stream_connect(ae_loop *loop, const char *host, const char *service,
                                       const ae_connect_opts *co, const ae_stream_opts *so, ae_stream_event_cb cb,
                                       void *arg);

/* ---- servers ------------------------------------------------------------- */

typedef struct ae_server ae_server;

/* A new connection: fd (non-blocking, close-on-exec) is the callback's. */
typedef void (*ae_accept_cb)(ae_server *srv, int fd, const struct sockaddr *peer, socklen_t len, void *arg);

/* Listen on host (NULL: every local address, IPv6 and IPv4; a name: every
 * address of it) and service ("0": any free port, the same on every
 * address). backlog 0: 128. SO_REUSEADDR is set. Fails with AE_EINVAL (NULL
 * argument, unknown host or service) or AE_ESYS (bind: the port is in use). */
AE_EXPORT ae_server *ae_tcp_server(ae_loop *loop, const char *host, const char *service, int backlog,
                                   ae_accept_cb cb, void *arg);

/* Listen on a unix socket at path. A path in use by a listening server is
 * refused (AE_ESTATE); a stale socket file nobody listens on is replaced; a
 * file that is not a socket is refused (AE_EINVAL). */
AE_EXPORT ae_server *ae_unix_server(ae_loop *loop, const char *path, int backlog, ae_accept_cb cb, void *arg);

/* The TCP port listened on (for service "0"); 0 for a unix server. */
AE_EXPORT int ae_server_port(const ae_server *srv);

/* Stop listening and free the server; a unix server removes its own socket
 * file. Safe from its accept callback. NULL is ignored. */
AE_EXPORT void ae_server_free(ae_server *srv);

/* ---- commands ------------------------------------------------------------ */

typedef struct ae_cmd ae_cmd;

/* What a command's stdout and stderr are. */
enum { AE_CMD_INHERIT = 0, AE_CMD_NULL = 1, AE_CMD_CAPTURE = 2, AE_CMD_FD = 3 };

/* How to run a command; {0} except argv: inherit everything, stdin from
 * /dev/null. */
typedef struct ae_cmd_opts {
    const char *const *argv;             /* argv[0] looked up in PATH; NULL-terminated */
    const char *const *envp;             /* NULL: inherit */
    const char *cwd;                     /* NULL: inherit */
    const void *input; size_t input_len; /* written to stdin, then closed; NULL: stdin is /dev/null */
    int out, err;                        /* what stdout and stderr are: AE_CMD_* ({0}: inherited) */
    int out_fd, err_fd;                  /* the fds, for AE_CMD_FD */
    size_t out_max;                      /* captured bytes per stream; 0: 64 MiB; beyond: croaked */
} ae_cmd_opts;

/* Start a command with posix_spawn: every signal at its default disposition
 * and an empty signal mask in the child, only fds 0-2 passed on. Fails with
 * AE_EINVAL (NULL loop, opts or argv, a bad mode), AE_EBADF (an AE_CMD_FD fd
 * not open), AE_ENOENT (the program cannot be executed) or AE_ESYS. */
AE_EXPORT ae_cmd *ae_cmd_run(ae_loop *loop, const ae_cmd_opts *o);

/* The command's condvar: sent, with the wait status as (void *)(intptr_t),
 * once the process exited AND every captured pipe reached EOF (so no output
 * is ever lost); croaked if a captured stream passed out_max. Valid until
 * ae_cmd_free(). */
AE_EXPORT ae_cv *ae_cmd_cv(ae_cmd *c);

/* The process id (-1 for NULL). */
AE_EXPORT pid_t ae_cmd_pid(const ae_cmd *c);

/* What was captured of stdout (which 1) or stderr (which 2) so far,
 * NUL-terminated, its length in *len; NULL if that stream is not captured.
 * Valid until the next iteration of the loop or ae_cmd_free(). */
AE_EXPORT const char *ae_cmd_output(const ae_cmd *c, int which, size_t *len);

/* Free the command and its condvar. A process still running keeps running
 * (its pipes are closed) and is reaped when it exits. NULL is ignored. */
AE_EXPORT void ae_cmd_free(ae_cmd *c);

#ifdef __cplusplus
}
#endif

#endif /* ANYEVENT_STREAM_H */
