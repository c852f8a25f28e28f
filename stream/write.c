/* Writing: straight to the kernel while nothing is queued, the rest into the
 * write queue, flushed with one writev of up to 64 segments when the fd is
 * writable. The write watcher is armed only when the kernel refuses bytes. */
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "internal.h"

#define FLUSH_IOV 64

/* One system call; on a socket with MSG_NOSIGNAL, so that a vanished peer is
 * EPIPE and not SIGPIPE. */
static ssize_t sys_writev(ae_stream *s, const struct iovec *iov, int n)
{
    ssize_t w;
    do {
        if (s->tr) {
            w = s->tr->writev(ae__tr_ctx(s), s->fd, iov, n);
        } else if (s->is_socket) {
            if (n == 1)
                w = send(s->fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL);
            else
                w = sendmsg(s->fd, &(struct msghdr){.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)n},
                            MSG_NOSIGNAL);
        } else {
            w = n == 1 ? write(s->fd, iov[0].iov_base, iov[0].iov_len) : writev(s->fd, iov, n);
        }
    } while (w < 0 && errno == EINTR);
    if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
        int err = errno;
        const char *why = s->tr && s->tr->error ? s->tr->error(ae__tr_ctx(s)) : NULL;
        if (why)
            ae__stream_fail(s, err, "%s", why);
        else
            ae__stream_fail(s, err, "write: %s", strerror(err));
        return -1;
    }
    if (w > 0)
        ae__stream_active(s, false);
    return w < 0 ? 0 : w;
}

void ae__stream_shutdown_now(ae_stream *s)
{
    if (s->tr) {
        /* A transport ends its own way first (TLS: close_notify, then FIN). */
        if (s->tr->shutdown(ae__tr_ctx(s), s->fd) == 0) {
            s->shut_done = true;
        } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
            int err = errno;
            const char *why = s->tr->error ? s->tr->error(ae__tr_ctx(s)) : NULL;
            if (why)
                ae__stream_fail(s, err, "%s", why);
            else
                ae__stream_fail(s, err, "shutdown: %s", strerror(err));
        }
        return;
    }
    s->shut_done = true;
    if (shutdown(s->fd, SHUT_WR) < 0 && errno != ENOTCONN)
        ae__stream_fail(s, errno, "shutdown: %s", strerror(errno));
}

/* The queue fell: DRAIN when it crossed wbuf_low, FIN when it is empty. */
static void queue_fell(ae_stream *s)
{
    if (s->above_low && ae__wq_bytes(s) <= ae__wbuf_low(s)) {
        s->above_low = false;
        s->drain_due = true;
        ae__stream_wake(s);
    }
    if (ae__wq_bytes(s) == 0 && s->shut_wanted && !s->shut_done && !s->failed)
        ae__stream_shutdown_now(s);
}

void ae__stream_flush(ae_stream *s)
{
    while (ae__wq_bytes(s) && !s->failed) {
        struct iovec iov[FLUSH_IOV];
        int n = ae__wq_iov(&s->cold->wq, iov, FLUSH_IOV);
        size_t want = 0;
        for (int i = 0; i < n; i++)
            want += iov[i].iov_len;
        ssize_t w = sys_writev(s, iov, n);
        if (w <= 0)
            break;
        ae__wq_advance(&s->cold->wq, (size_t)w);
        if ((size_t)w < want)
            break; /* the kernel is full */
    }
    if (s->tr && ae__wq_bytes(s) == 0 && !s->failed && s->fd >= 0)
        (void)sys_writev(s, NULL, 0); /* what the transport holds (fails the stream itself) */
    if (s->cold && ae__wq_done_ready(&s->cold->wq))
        ae__stream_wake(s); /* a written write_ref: its done */
    queue_fell(s);
}

void ae__stream_run_dones(ae_stream *s, bool all)
{
    ae_wseg seg;
    while (s->cold && ae__wq_pop_done(&s->cold->wq, &seg, all))
        if (seg.done)
            seg.done((void *)seg.ref, seg.done_arg);
}

static int write_check(ae_stream *s, const char *fn)
{
    if (!ae__stream_ok(s, fn))
        return AE_EINVAL;
    if (s->failed)
        return ae__set_error(AE_ESTATE, "%s: the stream failed: %s", fn, ae_stream_error(s));
    if (s->closing)
        return ae__set_error(AE_ESTATE, "%s: the stream is closing", fn);
    if (s->shut_wanted)
        return ae__set_error(AE_ESTATE, "%s: the stream was shut down for writing", fn);
    return 0;
}

/* A transport called from a call may hold bytes for the fd now (TLS: a
 * record the kernel took in part): what the io watcher watches follows. */
static void transport_moved(ae_stream *s)
{
    if (s->depth)
        s->again = true;
    else
        ae__stream_interest(s);
}

/* What the kernel takes at once when nothing is queued: bytes written. */
static size_t write_through(ae_stream *s, const struct iovec *iov, int n)
{
    if (ae__wq_count(s) || s->connecting || !s->io)
        return 0;
    ssize_t w = sys_writev(s, iov, n);
    if (s->tr)
        transport_moved(s);
    return w > 0 ? (size_t)w : 0;
}

/* The limit for what is about to be queued, and the queue (in the cold
 * part, made on the first write the kernel does not take at once). */
static int limit_check(ae_stream *s, size_t more, const char *fn)
{
    size_t max = ae__wbuf_max(s);
    if (max && more > max - ae__wq_bytes(s)) {
        ae__stream_fail(s, ENOSPC, "more than wbuf_max (%zu bytes) to write", max);
        return ae__set_error(AE_ELIMIT, "%s: beyond wbuf_max %zu: the stream failed", fn, max);
    }
    return ae__stream_cold(s, fn) ? 0 : AE_ENOMEM;
}

/* Bytes joined the queue (it had was bytes). */
static int queue_grew(ae_stream *s, size_t was)
{
    size_t bytes = ae__wq_bytes(s);
    if (bytes > ae__wbuf_low(s))
        s->above_low = true;
    if (was == 0 && bytes && s->tm) {
        s->tm->last_write = ae_now(s->loop);
        if (s->tm->wtimeout > 0)
            ae__stream_timer_rearm(s);
    }
    if (was == 0 && bytes) {
        if (s->depth == 0)
            ae__stream_interest(s);
        else
            s->again = true;
    }
    return bytes >= ae__wbuf_high(s) ? 1 : 0;
}

/* The failure of a write the kernel refused is reported by the event. */
static int status(ae_stream *s) { return s->failed ? 0 : ae__wq_bytes(s) >= ae__wbuf_high(s) ? 1 : 0; }

int ae_stream_write(ae_stream *s, const void *data, size_t len)
{
    int rc = write_check(s, "ae_stream_write");
    if (rc < 0)
        return rc;
    if (!data && len)
        return ae__set_error(AE_EINVAL, "ae_stream_write: data is NULL");
    if (len == 0)
        return status(s);
    size_t done = write_through(s, &(struct iovec){(void *)data, len}, 1);
    if (s->failed)
        return 0;
    if (done == len)
        return status(s);
    if ((rc = limit_check(s, len - done, "ae_stream_write")) < 0)
        return rc;
    size_t was = ae__wq_bytes(s);
    if (ae__wq_copy(&s->cold->wq, (const char *)data + done, len - done) < 0)
        return ae__set_error(AE_ENOMEM, "ae_stream_write: out of memory");
    return queue_grew(s, was);
}

int ae_stream_writev(ae_stream *s, const struct iovec *iov, int iovcnt)
{
    int rc = write_check(s, "ae_stream_writev");
    if (rc < 0)
        return rc;
    if (iovcnt < 0 || (iovcnt > 0 && !iov))
        return ae__set_error(AE_EINVAL, "ae_stream_writev: iov NULL or iovcnt %d negative", iovcnt);
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++) {
        if (!iov[i].iov_base && iov[i].iov_len)
            return ae__set_error(AE_EINVAL, "ae_stream_writev: iov[%d] is NULL", i);
        total += iov[i].iov_len;
    }
    if (total == 0)
        return status(s);
    size_t done = write_through(s, iov, iovcnt > IOV_MAX ? IOV_MAX : iovcnt);
    if (s->failed)
        return 0;
    if (done == total)
        return status(s);
    if ((rc = limit_check(s, total - done, "ae_stream_writev")) < 0)
        return rc;
    size_t was = ae__wq_bytes(s);
    for (int i = 0; i < iovcnt; i++) {
        size_t len = iov[i].iov_len;
        if (done >= len) {
            done -= len;
            continue;
        }
        if (ae__wq_copy(&s->cold->wq, (const char *)iov[i].iov_base + done, len - done) < 0) {
            /* Part of the data is queued: the stream cannot go on. */
            ae__stream_fail(s, ENOMEM, "write queue: out of memory");
            return ae__set_error(AE_ENOMEM, "ae_stream_writev: out of memory");
        }
        done = 0;
    }
    return queue_grew(s, was);
}

int ae_stream_write_ref(ae_stream *s, const void *data, size_t len, void (*done_cb)(void *data, void *arg),
                        void *arg)
{
    int rc = write_check(s, "ae_stream_write_ref");
    if (rc < 0)
        return rc;
    if (!data && len)
        return ae__set_error(AE_EINVAL, "ae_stream_write_ref: data is NULL");
    size_t done = len ? write_through(s, &(struct iovec){(void *)data, len}, 1) : 0;
    if (s->failed)
        done = 0; /* the done callback still runs, after the failure */
    else if ((rc = limit_check(s, len - done, "ae_stream_write_ref")) < 0)
        return rc;
    if (!ae__stream_cold(s, "ae_stream_write_ref"))
        return AE_ENOMEM; /* (failed: the done callback cannot be kept) */
    size_t was = ae__wq_bytes(s);
    if (ae__wq_ref(&s->cold->wq, (const char *)data + done, len - done, done_cb, arg) < 0)
        return ae__set_error(AE_ENOMEM, "ae_stream_write_ref: out of memory");
    if (s->failed || done == len) {
        ae__stream_wake(s); /* written at once: done runs from the loop */
        return s->failed ? 0 : status(s);
    }
    return queue_grew(s, was);
}

size_t ae_stream_queued(const ae_stream *s)
{
    return s && s->magic == AE_STREAM_MAGIC && !s->freed ? ae__wq_bytes(s) : 0;
}

int ae_stream_shutdown(ae_stream *s)
{
    if (!ae__stream_ok(s, "ae_stream_shutdown"))
        return AE_EINVAL;
    if (s->fd >= 0 && !s->is_socket)
        return ae__set_error(AE_ENOTSUP, "ae_stream_shutdown: fd %d is not a socket", s->fd);
    if (s->failed || s->closing)
        return ae__set_error(AE_ESTATE, "ae_stream_shutdown: the stream %s", s->closing ? "is closing" : "failed");
    if (s->shut_wanted)
        return 0;
    s->shut_wanted = true;
    if (ae__wq_bytes(s) == 0 && !s->connecting && s->fd >= 0) {
        ae__stream_shutdown_now(s);
        if (s->tr)
            transport_moved(s);
    }
    return 0;
}
