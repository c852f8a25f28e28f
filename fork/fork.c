/* ae_fork, the parent side: commands become frames queued on the process's
 * socket and written when it takes them; the process's answers are read one
 * frame at a time and never past READY (what follows belongs to the run
 * function); every process is reaped through ae_child. User callbacks run
 * only from the loop: READY from the io watcher, failures and exits from a
 * zero-delay timer, so an API call never calls back. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "parent.h"
#include "wire_io.h"

#define MAX_ANSWER 65536 /* a process's frames to us are short */

static void ctx_free(void *arg);
static void on_io(ae_watcher *w, int revents, void *arg);
static void child_keeps_loop(ae_fork *p);
static void interest(ae_fork *p);

/* ---- the loop's objects ------------------------------------------------ */

ae_fork_ctx *ae__fork_ctx(ae_loop *loop)
{
    ae_fork_ctx *ctx = ae__loop_layer(loop, ctx_free);
    if (ctx)
        return ctx;
    ctx = calloc(1, sizeof *ctx);
    if (!ctx) {
        ae__set_error(AE_ENOMEM, "out of memory");
        return NULL;
    }
    ctx->loop = loop;
    if (ae__loop_on_free(loop, ctx_free, ctx) < 0) {
        free(ctx);
        return NULL;
    }
    return ctx;
}

bool ae__fork_ok(const ae_fork *p, const char *fn)
{
    if (!p || p->magic != AE_FORK_MAGIC || p->freed) {
        ae__set_error(AE_EINVAL, "%s: not a live ae_fork", fn);
        return false;
    }
    return true;
}

ae_fork *ae__fork_alloc(ae_fork_ctx *ctx, int sock, pid_t pid)
{
    ae_fork *p = calloc(1, sizeof *p);
    if (!p) {
        ae__set_error(AE_ENOMEM, "out of memory");
        return NULL;
    }
    p->magic = AE_FORK_MAGIC;
    p->ctx = ctx;
    p->sock = sock;
    p->pid = pid;
    p->next = ctx->forks;
    if (ctx->forks)
        ctx->forks->prev = p;
    ctx->forks = p;
    return p;
}

static void drop_out(ae_fork *p)
{
    while (p->out) {
        struct ae_chunk *c = p->out;
        p->out = c->next;
        if (c->fd >= 0)
            close(c->fd);
        free(c);
    }
    p->out_tail = NULL;
}

static void kids_orphaned(ae_fork *t);

/* Also the end of its forks' forwarded statuses (portable path). */
static void close_sock(ae_fork *p)
{
    kids_orphaned(p);
    ae_watcher_free(p->io);
    p->io = NULL;
    if (p->sock >= 0)
        close(p->sock);
    p->sock = -1;
    drop_out(p);
}

/* The reason kept when the message itself cannot be copied: a failed
 * process must never look healthy through ae_fork_error() returning NULL. */
static char out_of_memory[] = "out of memory";

static void destroy(ae_fork *p)
{
    ae_fork_ctx *ctx = p->ctx;
    kids_orphaned(p);
    if (p->remote_watch && p->tmpl && --p->tmpl->kids_watched == 0)
        interest(p->tmpl);
    for (ae_fork *f = ctx->forks; f; f = f->next)
        if (f->tmpl == p)
            f->tmpl = NULL;
    if (p->prev)
        p->prev->next = p->next;
    else
        ctx->forks = p->next;
    if (p->next)
        p->next->prev = p->prev;
    if (ctx->default_tmpl == p)
        ctx->default_tmpl = NULL;
    close_sock(p);
    ae_watcher_free(p->child);
    ae_watcher_free(p->defer);
    free(p->pay);
    free(p->unclaimed);
    if (p->error != out_of_memory)
        free(p->error);
    p->magic = 0;
    free(p);
}

/* The pid of a fork whose hello we have not read: its template is dead by
 * now, so the hello is on its way, or EOF is (no process). 0 if none. */
static pid_t hello_now(ae_fork *p)
{
    unsigned char buf[AE_FORK_HDR + 8];
    size_t have = 0;
    if (p->hdr_have)
        return 0; /* half read: never at this point in practice */
    while (have < sizeof buf) {
        struct pollfd pfd = {p->sock, POLLIN, 0};
        int n = poll(&pfd, 1, 2000);
        if (n < 0 && errno == EINTR)
            continue; /* SIGCHLD of the templates killed just before: the hello is still due */
        if (n <= 0)
            return 0;
        ssize_t r = recv(p->sock, buf + have, sizeof buf - have, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return 0;
        have += (size_t)r;
    }
    return buf[0] == AE_W_HELLO ? (pid_t)ae__wire_u32(buf + AE_FORK_HDR + 4) : 0;
}

static bool owned_by_loop(const ae_fork *p)
{
    return !p->exited && (p->owned || p->state == AE_F_PREP || p->state == AE_F_FAILED);
}

/* With the loop: no callbacks; templates, workers and processes not run
 * exit (killed and reaped here), processes that were run go on. */
static void ctx_free(void *arg)
{
    ae_fork_ctx *ctx = arg;
    while (ctx->pools)
        ae__pool_destroy(ctx->pools);
    while (ctx->rpcs)
        ae__rpc_destroy(ctx->rpcs);
    for (ae_fork *p = ctx->forks; p; p = p->next)
        if (p->pid > 0 && owned_by_loop(p))
            kill(p->pid, SIGKILL);
    for (ae_fork *p = ctx->forks; p; p = p->next) {
        if (p->pid == 0 && p->sock >= 0 && (p->state == AE_F_PREP || p->owned) && (p->pid = hello_now(p)) > 0)
            kill(p->pid, SIGKILL);
        if (p->pid > 0 && owned_by_loop(p))
            while (waitpid(p->pid, NULL, 0) < 0 && errno == EINTR)
                ;
    }
    while (ctx->forks)
        destroy(ctx->forks);
    free(ctx);
}

/* ---- callbacks: only from the loop ------------------------------------- */

static void release(ae_fork *p);

static void hold(ae_fork *p) { p->calling++; }

static void unhold(ae_fork *p)
{
    if (--p->calling == 0 && p->freed)
        release(p);
}

static void on_defer(ae_watcher *w, void *arg);

static void schedule(ae_fork *p)
{
    if (p->defer)
        ae_timer_set(p->defer, 0, 0);
    else
        p->defer = ae_timer(p->ctx->loop, 0, 0, on_defer, p);
}

/* The run callback, once the outcome is known. */
static void deliver(ae_fork *p)
{
    if (!p->cb_due || ae__loop_freeing(p->ctx->loop))
        return;
    if (p->state != AE_F_RUNNING && p->state != AE_F_FAILED)
        return;
    p->cb_due = false;
    int sock = -1;
    if (p->state == AE_F_RUNNING) {
        sock = p->sock;
        p->sock = -1;
    }
    if (p->freed || !p->run_cb) {
        if (sock >= 0)
            close(sock);
        return;
    }
    hold(p);
    p->run_cb(p, sock, p->run_arg);
    unhold(p);
}

static void on_defer(ae_watcher *w, void *arg)
{
    (void)w;
    ae_fork *p = arg;
    hold(p);
    deliver(p);
    if (p->exit_due && p->exit_cb && !p->freed && !ae__loop_freeing(p->ctx->loop)) {
        p->exit_due = false;
        p->exit_cb(p, p->status, p->exit_arg);
    }
    unhold(p);
}

/* ---- failures ------------------------------------------------------------ */

void ae__fork_status_text(char *buf, size_t size, pid_t pid, int status)
{
    if (WIFEXITED(status))
        snprintf(buf, size, "process %d exited with %d", (int)pid, WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, size, "process %d killed by signal %d", (int)pid, WTERMSIG(status));
    else
        snprintf(buf, size, "process %d ended with status %#x", (int)pid, (unsigned)status);
}

static void on_child(ae_watcher *w, pid_t pid, int status, void *arg);

/* Reap p through the core's child machinery (so a user's ae_child on the
 * pid sees the status too); the loop runs until it is reaped. */
static void watch_forwarded(ae_fork *p);

static void ensure_child(ae_fork *p)
{
    child_keeps_loop(p);
    if (p->child || p->exited || p->pid <= 0)
        return;
    if (p->forwarded) {
        watch_forwarded(p);
        return;
    }
    p->child = ae_child(p->ctx->loop, p->pid, on_child, p);
    if (!p->child) { /* reaped by other code already: nothing to wait for */
        p->exited = true;
        p->status = -1;
    }
}

void ae__fork_fail(ae_fork *p, const char *fmt, ...)
{
    if (p->error)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    p->error = strdup(msg);
    if (!p->error)
        p->error = out_of_memory;
    if (p->kids_waiting) /* forks whose socket closed before their hello: this is why */
        for (ae_fork *f = p->ctx->forks; f; f = f->next)
            if (f->tmpl == p && f->wait_tmpl) {
                f->wait_tmpl = false;
                ae__fork_fail(f, "%s", msg);
            }
    ensure_child(p); /* before the close (see gone()) */
    if (p->state != AE_F_RUNNING) {
        p->state = AE_F_FAILED;
        close_sock(p); /* a failed process refuses everything: let it exit */
    }
    if (p->cb_due)
        schedule(p);
}

/* The socket closed before READY: say why, with a wait status when there is one. */
static void gone(ae_fork *p, int err)
{
    /* The child watcher first: a pidfd must not take the number of the
     * socket closed in the same iteration (a backend that applies its
     * changes lazily would remove the new registration with the old). */
    ensure_child(p);
    close_sock(p);
    if (p->freed) {
        ensure_child(p);
        return;
    }
    if (p->state == AE_F_FAILED || p->state == AE_F_RUNNING)
        return;
    if (p->pid > 0) {
        ensure_child(p);
        if (!p->exited) {
            p->wait_status = true;
            return;
        }
        char st[128];
        ae__fork_status_text(st, sizeof st, p->pid, p->status);
        ae__fork_fail(p, "%s before it ran", st);
        return;
    }
    ae_fork *t = p->tmpl;
    if (t && t->error) {
        ae__fork_fail(p, "%s", t->error);
    } else if (t && t->pid > 0 && !t->exited) {
        ensure_child(t);
        p->wait_tmpl = !t->exited;
        if (p->wait_tmpl) {
            t->kids_waiting = true; /* its error or its death will say why */
            interest(t);
            return;
        }
    }
    if (t && t->exited && t->status != -1) {
        char st[128];
        ae__fork_status_text(st, sizeof st, t->pid, t->status);
        ae__fork_fail(p, "the template died: %s", st);
    }
    ae__fork_fail(p, "the process closed its socket before it started%s%s", err ? ": " : "",
                  err ? strerror(err) : "");
}

/* p ended with status (from the loop: its child watcher, or an EXIT frame
 * of its template). */
static void child_ended(ae_fork *p, int status)
{
    hold(p);
    if (p->remote_watch) {
        p->remote_watch = false;
        if (p->tmpl && --p->tmpl->kids_watched == 0)
            interest(p->tmpl); /* an idle template keeps no ae_run() going */
    }
    p->exited = true;
    p->status = status;
    char st[128];
    ae__fork_status_text(st, sizeof st, p->pid, status);
    if (p->wait_status) {
        p->wait_status = false;
        ae__fork_fail(p, "%s before it ran", st);
    }
    for (ae_fork *f = p->ctx->forks; f; f = f->next)
        if (f->tmpl == p && f->wait_tmpl) {
            f->wait_tmpl = false;
            ae__fork_fail(f, "the template died: %s", st);
        }
    if (p->exit_cb && !p->freed) {
        if (p->cb_due) { /* the run callback (a failure) goes first, on the timer */
            p->exit_due = true;
            schedule(p);
        } else if (!ae__loop_freeing(p->ctx->loop)) {
            p->exit_cb(p, status, p->exit_arg);
        }
    }
    unhold(p);
}

static void on_child(ae_watcher *w, pid_t pid, int status, void *arg)
{
    (void)pid;
    ae_fork *p = arg;
    ae_watcher_free(w);
    p->child = NULL;
    child_ended(p, status);
}

/* ---- the portable path: statuses forwarded by the template ------------- */

/* Wait for p's EXIT frame on its template's socket; it may be there already. */
static void watch_forwarded(ae_fork *p)
{
    if (p->remote_watch)
        return;
    ae_fork *t = p->tmpl;
    if (!t || t->sock < 0 || t->state == AE_F_RUNNING) { /* nobody forwards it any more */
        p->exited = true;
        p->status = -1;
        return;
    }
    for (int i = 0; i < t->n_unclaimed; i++)
        if (t->unclaimed[i].pid == p->pid) {
            p->exited = true; /* from an API call maybe: the callback runs from the loop */
            p->status = t->unclaimed[i].status;
            t->unclaimed[i] = t->unclaimed[--t->n_unclaimed];
            if (p->exit_cb && !p->freed) {
                p->exit_due = true;
                schedule(p);
            }
            return;
        }
    p->remote_watch = true;
    t->kids_watched++;
    interest(t);
}

/* An EXIT frame of template t. */
static void fork_exited(ae_fork *t, pid_t pid, int status)
{
    for (ae_fork *f = t->ctx->forks; f; f = f->next)
        if (f->tmpl == t && f->forwarded && f->pid == pid && !f->exited) {
            child_ended(f, status);
            return;
        }
    /* its HELLO is still on its way (another socket): keep it for then */
    if (t->n_unclaimed == t->cap_unclaimed) {
        int cap = t->cap_unclaimed ? 2 * t->cap_unclaimed : 8;
        struct ae_fork_exit *u = realloc(t->unclaimed, (size_t)cap * sizeof *u);
        if (!u)
            return; /* that fork will see status -1 (unknown) */
        t->unclaimed = u;
        t->cap_unclaimed = cap;
    }
    t->unclaimed[t->n_unclaimed++] = (struct ae_fork_exit){pid, status};
}

/* t forwards no more statuses (it ended, or was run): its forks still
 * waiting for one will never know theirs. */
static void kids_orphaned(ae_fork *t)
{
    if (t->kids_watched == 0)
        return;
    t->kids_watched = 0;
    for (ae_fork *f = t->ctx->forks; f; f = f->next) {
        if (f->tmpl != t || !f->remote_watch)
            continue;
        f->remote_watch = false;
        f->exited = true;
        f->status = -1;
        if (ae__loop_freeing(t->ctx->loop))
            continue;
        if (f->wait_status) {
            f->wait_status = false;
            ae__fork_fail(f, "process %d: its status is unknown: its template %d ended before it", (int)f->pid,
                          (int)t->pid);
        }
        if (f->freed || f->cb_due)
            schedule(f); /* from the loop: reported, or forgotten */
    }
}

/* ---- writing ------------------------------------------------------------- */

static void interest(ae_fork *p)
{
    if (!p->io)
        return;
    int ev = p->out ? AE_WRITE : 0;
    if (p->state == AE_F_RUN || !p->hello || p->freed || p->exit_cb || p->kids_waiting || p->write_closed ||
        p->kids_watched > 0)
        ev |= AE_READ;
    ae_io_set(p->io, ev);
}

static int queue(ae_fork *p, int cmd, const void *data, size_t len, int fd)
{
    if (len > AE_FORK_MAX_FRAME)
        return ae__set_error(AE_EINVAL, "%zu bytes: more than a frame holds (%u)", len, AE_FORK_MAX_FRAME);
    struct ae_chunk *c = malloc(sizeof *c + AE_FORK_HDR + len);
    if (!c)
        return ae__set_error(AE_ENOMEM, "out of memory");
    c->next = NULL;
    c->len = AE_FORK_HDR + len;
    c->off = 0;
    c->fd = fd;
    ae__wire_hdr(c->data, cmd, (uint32_t)len);
    if (len)
        memcpy(c->data + AE_FORK_HDR, data, len);
    if (p->out_tail)
        p->out_tail->next = c;
    else
        p->out = c;
    p->out_tail = c;
    return 0;
}

/* Write what the socket takes: consecutive frames in one sendmsg(), a frame
 * with an fd always first in its own. 0, or -1 with errno (peer gone). */
static int flush(ae_fork *p)
{
    while (p->out) {
        struct iovec iov[64];
        int n = 0, fd = -1;
        for (struct ae_chunk *c = p->out; c && n < 64; c = c->next) {
            if (c->fd >= 0) {
                if (n > 0)
                    break;
                fd = c->fd;
            }
            iov[n++] = (struct iovec){c->data + c->off, c->len - c->off};
        }
        ssize_t r = ae__wire_sendmsg(p->sock, iov, n, fd, MSG_DONTWAIT);
        if (r < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            return -1;
        }
        if (fd >= 0) {
            close(p->out->fd);
            p->out->fd = -1;
        }
        while (r > 0) {
            struct ae_chunk *c = p->out;
            size_t k = (size_t)r < c->len - c->off ? (size_t)r : c->len - c->off;
            c->off += k;
            r -= (ssize_t)k;
            if (c->off == c->len) {
                p->out = c->next;
                free(c);
            }
        }
    }
    if (!p->out) {
        p->out_tail = NULL;
        if (p->freed && p->state == AE_F_PREP)
            shutdown(p->sock, SHUT_WR); /* all said: it exits at EOF */
    }
    interest(p);
    return 0;
}

/* A write failed. The peer may have said why (an ERROR frame) before it
 * closed: stop writing, read to EOF, and let the read side decide. */
static void write_failed(ae_fork *p, int err)
{
    if (err == ETOOMANYREFS) {
        ae__fork_fail(p, "passing an fd to process %d: too many fds in flight (ETOOMANYREFS)", (int)p->pid);
        return;
    }
    drop_out(p);
    p->write_closed = true;
    interest(p);
}

/* Flush from an API call: a failure is reported later, on the loop. */
static void flush_now(ae_fork *p)
{
    if (p->sock >= 0 && !p->write_closed && flush(p) < 0)
        write_failed(p, errno);
}

/* ---- reading ------------------------------------------------------------- */

static void frame(ae_fork *p, int cmd, const unsigned char *pay, uint32_t len)
{
    switch (cmd) {
    case AE_W_HELLO: {
        bool ok = len == 8 || len == 12; /* protocol 1 without and with flags */
        uint32_t proto = ok ? ae__wire_u32(pay) : 0, pid = ok ? ae__wire_u32(pay + 4) : 0;
        uint32_t flags = len == 12 ? ae__wire_u32(pay + 8) : 0;
        if (proto != AE_FORK_PROTOCOL) {
            ae__fork_fail(p, "process %u speaks protocol %u, this library %u: the helper does not match",
                          (unsigned)pid, (unsigned)proto, AE_FORK_PROTOCOL);
            return;
        }
        p->pid = (pid_t)pid;
        p->hello = true;
        p->forwarded = (flags & AE_HELLO_FORWARDED) != 0;
        if (p->exit_cb || p->freed)
            ensure_child(p);
        interest(p);
        return;
    }
    case AE_W_ERROR: ae__fork_fail(p, "%.*s", (int)len, (const char *)pay); return;
    case AE_W_EXIT:
        if (len == 8)
            fork_exited(p, (pid_t)ae__wire_u32(pay), (int)ae__wire_u32(pay + 4));
        return;
    case AE_W_READY:
        if (p->state != AE_F_RUN) {
            ae__fork_fail(p, "process %d: READY without a run", (int)p->pid);
            return;
        }
        p->state = AE_F_RUNNING;
        ae_watcher_free(p->io);
        p->io = NULL;
        kids_orphaned(p); /* its forks are its run function's children now */
        ensure_child(p);
        deliver(p);
        return;
    default: ae__fork_fail(p, "process %d: unknown answer %d", (int)p->pid, cmd);
    }
}

/* The frames already there, taken in one recv(): peeked, then exactly the
 * whole frames up to READY are consumed (what follows READY belongs to the
 * run function), so HELLO and READY cost two system calls instead of four.
 * Returns 1 if frames were handled, 0 if the slow path must read, -1 at
 * EAGAIN. */
static int read_batch(ae_fork *p)
{
    unsigned char buf[256];
    ssize_t r = recv(p->sock, buf, sizeof buf, MSG_PEEK | MSG_DONTWAIT);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return -1;
    if (r < AE_FORK_HDR)
        return 0; /* EOF, an error, a partial header: the exact path says what */
    size_t take = 0;
    while ((size_t)r - take >= AE_FORK_HDR) {
        uint32_t len = ae__wire_u32(buf + take + 1);
        if (len > (size_t)r - take - AE_FORK_HDR)
            break;
        int cmd = buf[take];
        take += AE_FORK_HDR + len;
        if (cmd == AE_W_READY || cmd == AE_W_ERROR)
            break; /* nothing after either is ours to read */
    }
    if (take == 0)
        return 0;
    ssize_t got;
    do
        got = recv(p->sock, buf, take, MSG_DONTWAIT);
    while (got < 0 && errno == EINTR);
    if (got != (ssize_t)take)
        return 0; /* cannot happen: it was there */
    for (size_t off = 0; off < take && p->sock >= 0 && !ae__loop_freeing(p->ctx->loop);) {
        uint32_t len = ae__wire_u32(buf + off + 1);
        frame(p, buf[off], buf + off + AE_FORK_HDR, len);
        off += AE_FORK_HDR + len;
    }
    return 1;
}

/* Read frames, exactly: a header, then its payload, then the next. */
static void read_frames(ae_fork *p)
{
    while (p->sock >= 0 && p->io && !ae__loop_freeing(p->ctx->loop)) {
        if (p->hdr_have == 0) {
            int b = read_batch(p);
            if (b < 0)
                return;
            if (b > 0)
                continue;
        }
        uint32_t len = 0;
        void *dst;
        size_t want;
        if (p->hdr_have < AE_FORK_HDR) {
            dst = p->hdr + p->hdr_have;
            want = AE_FORK_HDR - p->hdr_have;
        } else {
            len = ae__wire_u32(p->hdr + 1);
            dst = p->pay + p->pay_have;
            want = len - p->pay_have;
        }
        ssize_t r = want ? recv(p->sock, dst, want, MSG_DONTWAIT) : 0;
        if (want && r < 0 && errno == EINTR)
            continue;
        if (want && r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (want && r <= 0) {
            gone(p, r < 0 ? errno : 0);
            return;
        }
        if (p->hdr_have < AE_FORK_HDR) {
            p->hdr_have += (size_t)r;
            if (p->hdr_have < AE_FORK_HDR)
                continue;
            len = ae__wire_u32(p->hdr + 1);
            if (len > MAX_ANSWER || !(p->pay = malloc((size_t)len + 1))) {
                ae__fork_fail(p, "process %d: an answer of %u bytes", (int)p->pid, (unsigned)len);
                return;
            }
            p->pay_have = 0;
            continue;
        }
        p->pay_have += (size_t)r;
        if (p->pay_have < len)
            continue;
        unsigned char *pay = p->pay;
        p->pay = NULL;
        p->hdr_have = 0;
        frame(p, p->hdr[0], pay, len);
        free(pay);
    }
}

static void on_io(ae_watcher *w, int revents, void *arg)
{
    (void)w;
    ae_fork *p = arg;
    hold(p);
    if ((revents & AE_WRITE) && p->sock >= 0 && !p->write_closed && flush(p) < 0)
        write_failed(p, errno);
    if (revents & (AE_READ | AE_ERROR))
        read_frames(p);
    unhold(p);
}

/* The watcher of p's pid keeps the loop going only once someone waits for
 * the exit (on_exit, or a free that must reap). */
static void child_keeps_loop(ae_fork *p)
{
    if (p->child && p->child_unref) {
        ae_watcher_ref(p->child);
        p->child_unref = false;
    }
}

int ae__fork_start(ae_fork *p)
{
    p->io = ae_io(p->ctx->loop, p->sock, AE_READ, on_io, p);
    if (!p->io) {
        ae__fork_fail(p, "ae_io on the socket of a process: %s", ae_last_error());
        return -1;
    }
    if (p->pid > 0 && !p->child && !p->ctx->loop->adopted) {
        /* A helper or ae_fork_self template, our child: watched from the
         * start, without keeping the loop going. On backends that learn of
         * children through SIGCHLD this also keeps the core's handler
         * installed, instead of installing and removing it for every
         * process forked from the template. Not in an adopted loop: there
         * the native watch of SIGCHLD would keep the host's own run going
         * (the unref is anyevent's, not the host library's). */
        ensure_child(p);
        if (p->child) {
            ae_watcher_unref(p->child);
            p->child_unref = true;
        }
    }
    interest(p);
    return 0;
}

/* ---- freeing ------------------------------------------------------------- */

static void release(ae_fork *p)
{
    child_keeps_loop(p); /* ae_run() returns once it is reaped */
    p->run_cb = NULL;
    p->exit_cb = NULL;
    p->exit_due = false;
    ae_watcher_free(p->defer);
    p->defer = NULL;
    if (p->state == AE_F_RUNNING || p->state == AE_F_FAILED || p->sock < 0) {
        ensure_child(p); /* before the close (see gone()) */
        close_sock(p);
        if (!p->child && !p->remote_watch)
            destroy(p);
        return;
    }
    /* Not run: it reads what is queued, then exits at EOF; read on for its
     * pid (hello) and the EOF, then reap it. */
    flush_now(p);
    if (p->sock >= 0 && !p->out && p->state == AE_F_PREP)
        shutdown(p->sock, SHUT_WR);
    interest(p);
}

void ae_fork_free(ae_fork *p)
{
    if (!p)
        return;
    if (!ae__fork_ok(p, "ae_fork_free"))
        return;
    p->freed = true;
    if (!p->calling)
        release(p);
}

/* ---- making processes ---------------------------------------------------- */

static ae_fork *fork_from(ae_fork *t)
{
    ae_fork *c = ae__fork_alloc(t->ctx, -1, 0);
    if (!c)
        return NULL;
    c->tmpl = t;
    if (t->error) {
        ae__fork_fail(c, "%s", t->error);
        return c;
    }
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        ae__fork_fail(c, "socketpair: %s", strerror(errno));
        return c;
    }
    if (queue(t, AE_W_FORK, NULL, 0, sv[1]) < 0) {
        close(sv[0]);
        close(sv[1]);
        destroy(c);
        return NULL;
    }
    fcntl(sv[0], F_SETFL, O_NONBLOCK);
    c->sock = sv[0];
    if (ae__fork_start(c) == 0)
        flush_now(t);
    return c;
}

ae_fork *ae_fork_new(ae_loop *loop)
{
    if (!ae__loop_ok(loop, "ae_fork_new"))
        return NULL;
    ae_fork_ctx *ctx = ae__fork_ctx(loop);
    if (!ctx)
        return NULL;
    ae_fork *t = ctx->default_tmpl;
    if (t && t->state == AE_F_FAILED) { /* died, or never started: try a new one */
        ctx->default_tmpl = NULL;
        ae_fork_free(t);
        t = NULL;
    }
    if (!t) {
        t = ae__fork_spawn_helper(ctx);
        if (!t)
            return NULL;
        t->is_default = true;
        ctx->default_tmpl = t;
    }
    return fork_from(t);
}

ae_fork *ae_fork_fork(ae_fork *tmpl)
{
    if (!ae__fork_ok(tmpl, "ae_fork_fork"))
        return NULL;
    if (tmpl->ran) {
        ae__set_error(AE_ESTATE, "ae_fork_fork: the template was run: it cannot fork any more");
        return NULL;
    }
    return fork_from(tmpl);
}

/* ---- commands ------------------------------------------------------------ */

/* 1: queue it; 0: p failed, the command is refused quietly; < 0: error. */
static int command_ok(ae_fork *p, const char *fn)
{
    if (!ae__fork_ok(p, fn))
        return AE_EINVAL;
    if (p->ran)
        return ae__set_error(AE_ESTATE, "%s: the process was run already", fn);
    return p->state == AE_F_FAILED ? 0 : 1;
}

static int send_cmd(ae_fork *p, const char *fn, int cmd, const void *data, size_t len)
{
    int ok = command_ok(p, fn);
    if (ok <= 0)
        return ok;
    int rc = queue(p, cmd, data, len, -1);
    if (rc == 0)
        flush_now(p);
    return rc;
}

int ae_fork_require(ae_fork *p, const char *shared_object)
{
    if (!shared_object)
        return ae__set_error(AE_EINVAL, "ae_fork_require: shared object is NULL");
    return send_cmd(p, "ae_fork_require", AE_W_REQUIRE, shared_object, strlen(shared_object));
}

int ae_fork_call(ae_fork *p, const char *symbol)
{
    if (!symbol)
        return ae__set_error(AE_EINVAL, "ae_fork_call: symbol is NULL");
    return send_cmd(p, "ae_fork_call", AE_W_CALL, symbol, strlen(symbol));
}

int ae_fork_send_arg(ae_fork *p, const void *data, size_t len)
{
    if (!data && len)
        return ae__set_error(AE_EINVAL, "ae_fork_send_arg: data is NULL");
    return send_cmd(p, "ae_fork_send_arg", AE_W_ARG, data, len);
}

int ae_fork_send_fd(ae_fork *p, int fd)
{
    int ok = command_ok(p, "ae_fork_send_fd");
    if (ok < 0)
        return ok;
    if (fd < 0)
        return ae__set_error(AE_EBADF, "ae_fork_send_fd: fd %d is negative", fd);
    int dup = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (dup < 0)
        return errno == EBADF ? ae__set_error(AE_EBADF, "ae_fork_send_fd: fd %d is not open", fd)
                              : ae__set_errno("ae_fork_send_fd: fcntl(F_DUPFD_CLOEXEC)");
    if (ok == 0) {
        close(dup);
        return 0;
    }
    int rc = queue(p, AE_W_FD, NULL, 0, dup);
    if (rc < 0)
        close(dup);
    else
        flush_now(p);
    return rc;
}

int ae__fork_run_cmd(ae_fork *p, int cmd, const char *symbol, ae_fork_cb cb, void *arg)
{
    int ok = command_ok(p, cmd == AE_W_RUN ? "ae_fork_run" : "ae_rpc_new");
    if (ok < 0)
        return ok;
    if (!symbol)
        return ae__set_error(AE_EINVAL, "ae_fork_run: symbol is NULL");
    if (ok > 0) {
        int rc = queue(p, cmd, symbol, strlen(symbol), -1);
        if (rc < 0)
            return rc;
        p->state = AE_F_RUN;
    }
    p->ran = true;
    p->run_cb = cb;
    p->run_arg = arg;
    p->cb_due = true;
    if (p->state == AE_F_FAILED)
        schedule(p);
    else
        flush_now(p);
    interest(p);
    return 0;
}

int ae_fork_run(ae_fork *p, const char *symbol, ae_fork_cb cb, void *arg)
{
    return ae__fork_run_cmd(p, AE_W_RUN, symbol, cb, arg);
}

int ae_fork_on_exit(ae_fork *p, void (*cb)(ae_fork *p, int status, void *arg), void *arg)
{
    if (!ae__fork_ok(p, "ae_fork_on_exit"))
        return AE_EINVAL;
    p->exit_cb = cb;
    p->exit_arg = arg;
    if (cb && p->exited && p->status != -1) {
        p->exit_due = true;
        schedule(p);
    }
    if (cb)
        ensure_child(p);
    interest(p);
    return 0;
}

pid_t ae_fork_pid(const ae_fork *p) { return p && p->magic == AE_FORK_MAGIC ? p->pid : 0; }

const char *ae_fork_error(const ae_fork *p) { return p && p->magic == AE_FORK_MAGIC ? p->error : NULL; }
