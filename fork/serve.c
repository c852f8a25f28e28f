/* The process side of anyevent/fork.h: read one frame at a time, keep the
 * items, dlopen, call, fork on request (a child of our parent: clone with
 * CLONE_PARENT), run, or serve RPC calls. Errors go back to the parent as
 * ERROR frames; after the first one the process refuses everything.
 *
 * The portable path (every system but Linux; on Linux when
 * ANYEVENT_FORK_PORTABLE is set, so that it is tested): plain fork(), the
 * forks are our children, and we reap them and forward their statuses to
 * the parent (EXIT frames) until the last one has ended. */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "anyevent/fork.h"
#include "serve.h"
#include "wire.h"
#include "wire_io.h"

/* The symbol being run: kept reachable for leak checkers until the exit. */
static char *volatile running; /* volatile: never read, must not be optimised away */

struct server {
    int sock;
    ae_fork_item *items;
    int n, cap;
    char *failed; /* the first error; everything after is refused */
    char *threaded; /* why forks are refused: a require or call left threads running */
    bool quick_exit;
    bool hello_due; /* not said yet: it goes with the first answer, or before we wait or work */
    bool portable;  /* fork() and forward our forks' statuses (no CLONE_PARENT) */
    bool forwarded; /* our status reaches the parent from our template (HELLO flag) */
    int kids;       /* portable: forks of ours not reaped yet */
};

#ifdef MSG_CMSG_CLOEXEC
#define AE_RECV_CLOEXEC MSG_CMSG_CLOEXEC
#else
#define AE_RECV_CLOEXEC 0
#endif

void ae__close_from(int lowfd)
{
#if defined(__linux__)
    close_range((unsigned)lowfd, ~0U, 0);
#elif defined(__FreeBSD__) || defined(__OpenBSD__) || defined(__NetBSD__) || defined(__DragonFly__) || defined(__sun)
    closefrom(lowfd);
#else
    /* the open ones only, never a loop to RLIMIT_NOFILE */
    DIR *d = opendir("/dev/fd");
    if (!d)
        return;
    int self = dirfd(d);
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.' && atoi(e->d_name) >= lowfd && atoi(e->d_name) != self)
            close(atoi(e->d_name));
    closedir(d);
#endif
}

static volatile sig_atomic_t child_exited;

static void on_sigchld(int sig)
{
    (void)sig;
    child_exited = 1;
}

static bool portable_mode(void)
{
#if defined(__linux__)
    const char *e = getenv("ANYEVENT_FORK_PORTABLE");
    return e && *e && strcmp(e, "0") != 0;
#else
    return true;
#endif
}

static _Noreturn void finish(struct server *s, int status)
{
    if (s->quick_exit) {
        /* The raw system call: a sanitizer's _exit() hook would run its
         * leak check over the copy of the program's heap, with the state it
         * cached before our clone(). */
        fflush(NULL);
#ifdef SYS_exit_group
        syscall(SYS_exit_group, status);
#endif
        _exit(status);
    }
    exit(status);
}

/* Send one frame to the parent, with the hello in the same sendmsg() if it
 * is still due (a fork that finds its run command queued answers HELLO and
 * READY in one go: one wake-up of the parent instead of two). */
static int say(struct server *s, int cmd, const void *data, size_t len)
{
    if (!s->hello_due)
        return ae__wire_send(s->sock, cmd, data, len, -1);
    s->hello_due = false;
    uint32_t h[3] = {AE_FORK_PROTOCOL, (uint32_t)getpid(), s->forwarded ? AE_HELLO_FORWARDED : 0};
    return ae__wire_send2(s->sock, AE_W_HELLO, h, sizeof h, cmd, data, len);
}

static void hello(struct server *s)
{
    if (s->hello_due && say(s, -1, NULL, 0) < 0)
        finish(s, 0); /* nobody listens */
}

static void fail(struct server *s, const char *fmt, ...)
{
    if (s->failed)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    s->failed = strdup(msg);
    if (!s->failed)
        s->failed = "out of memory";
    say(s, AE_W_ERROR, s->failed, strlen(s->failed));
}

/* Portable path: reap our forks that ended and forward their statuses. */
static void reap(struct server *s, bool block)
{
    child_exited = 0;
    while (s->kids > 0) {
        int status;
        pid_t pid = waitpid(-1, &status, block ? 0 : WNOHANG);
        if (pid < 0 && errno == EINTR)
            continue;
        if (pid <= 0)
            break;
        s->kids--;
        uint32_t x[2] = {(uint32_t)pid, (uint32_t)status};
        say(s, AE_W_EXIT, x, sizeof x); /* if the parent is gone, nobody asks */
    }
}

/* Portable path, with forks alive: wait until the socket is readable or a
 * fork ends (SIGCHLD, blocked but for the wait: no ending is missed between
 * the reap and the wait). true if readable. */
static bool wait_readable(struct server *s)
{
    reap(s, false);
    if (s->kids == 0)
        return true;
    fd_set rd;
    FD_ZERO(&rd);
    FD_SET(s->sock, &rd);
    sigset_t mask;
    sigprocmask(SIG_SETMASK, NULL, &mask);
    sigdelset(&mask, SIGCHLD);
    return pselect(s->sock + 1, &rd, NULL, NULL, NULL, &mask) > 0;
}

/* Read exactly len bytes. The first fd passed with them goes to *fd (others
 * are closed); *dropped is set if the kernel dropped fds (MSG_CTRUNC: this
 * process is at its fd limit). While the hello is due, nothing is waited
 * for before it is sent. 0, or -1 at EOF or error. */
static int read_exact(struct server *s, void *buf, size_t len, int *fd, bool *dropped)
{
    size_t got = 0;
    while (got < len) {
        if (s->kids > 0 && !wait_readable(s))
            continue; /* a fork ended: forwarded; read on */
        union {
            struct cmsghdr align;
            char buf[CMSG_SPACE(8 * sizeof(int))];
        } u;
        struct iovec iov = {(char *)buf + got, len - got};
        struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
                             .msg_controllen = sizeof u.buf};
        ssize_t r = recvmsg(s->sock, &msg, AE_RECV_CLOEXEC | (s->hello_due ? MSG_DONTWAIT : 0));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && s->hello_due && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            hello(s);
            continue;
        }
        if (r <= 0) {
            hello(s); /* the parent reads on to EOF for our pid, to reap us */
            return -1;
        }
        if (msg.msg_flags & MSG_CTRUNC)
            *dropped = true;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
            if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                continue;
            size_t nfd = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t i = 0; i < nfd; i++) {
                int f;
                memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof f);
#if !AE_RECV_CLOEXEC
                fcntl(f, F_SETFD, FD_CLOEXEC); /* no MSG_CMSG_CLOEXEC here: single-threaded, nobody execs meanwhile */
#endif
                if (fd && *fd < 0)
                    *fd = f;
                else
                    close(f);
            }
        }
        got += (size_t)r;
    }
    return 0;
}

static int add_item(struct server *s, int fd, void *data, size_t len)
{
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 8;
        ae_fork_item *items = realloc(s->items, (size_t)cap * sizeof *items);
        if (!items)
            return -1;
        s->items = items;
        s->cap = cap;
    }
    s->items[s->n++] = (ae_fork_item){fd, data, len};
    return 0;
}

/* A child of our parent (Linux: CLONE_PARENT), so that the program that
 * drives us reaps it and sees its status. Raw clone skips the C library's
 * atfork handlers: this process is single-threaded and holds no locks. */
static pid_t fork_sibling(struct server *s)
{
    if (s->portable) {
        /* _Fork (POSIX.1-2024) runs no atfork handlers: those of a library
         * in an ae_fork_self template would act on fds that are not
         * theirs any more (libuv's recreated its pipe on our socket's
         * number). Where it is missing, fork(). */
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
        return _Fork();
#else
        return fork();
#endif
    }
#if defined(__linux__) && defined(SYS_clone3)
    struct {
        uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
    } args = {.flags = 0x00008000 /* CLONE_PARENT: the exit signal is our own's (SIGCHLD) */};
    long r = syscall(SYS_clone3, &args, sizeof args);
    if (r >= 0 || errno != ENOSYS)
        return (pid_t)r;
#endif
#if defined(__linux__)
    return (pid_t)syscall(SYS_clone, 0x00008000 | SIGCHLD, 0, 0, 0, 0);
#else
    errno = ENOSYS;
    return -1;
#endif
}

int ae__thread_count(void)
{
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

/* After a require or call, the only code of others that runs here: a
 * process with more than one thread must not fork (only the forking thread
 * goes on in the child; locks held by the others stay held there). It can
 * still be run; its forks fail with this message. Counted here, not per
 * fork: forks stay cheap. Where /proc is missing the count is unknown and
 * forks are not refused. */
static void check_threads(struct server *s, const char *what, const char *name)
{
    if (s->threaded)
        return;
    int n = ae__thread_count();
    if (n <= 1)
        return;
    char msg[512];
    snprintf(msg, sizeof msg, "fork refused: process %d has %d threads since %s %s (forking a threaded process is not safe: start threads in the forked process, not in the template)", (int)getpid(), n, what, name);
    s->threaded = strdup(msg);
    if (!s->threaded)
        s->threaded = "fork refused: this process has threads";
}

/* SIGCHLD as we found it: for the run function, and in a fork. */
static void signal_default(struct server *s)
{
    if (!s->portable)
        return;
    signal(SIGCHLD, SIG_DFL);
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_UNBLOCK, &chld, NULL);
}

static void do_fork(struct server *s, int fd)
{
    const char *refused = s->failed ? s->failed : s->threaded;
    if (refused) {
        ae__wire_send(fd, AE_W_ERROR, refused, strlen(refused), -1);
        close(fd);
        return;
    }
    pid_t pid = fork_sibling(s);
    if (pid == 0) {
        close(s->sock);
        s->sock = fd;
        s->hello_due = true;
        if (s->portable) { /* reaped by its template, not by the program; SIGCHLD */
            s->forwarded = true; /* stays caught and blocked for forks of its own */
            s->kids = 0;
        }
        return;
    }
    if (pid > 0 && s->portable)
        s->kids++;
    if (pid < 0) {
        char msg[256];
        snprintf(msg, sizeof msg, "fork failed in template %d: %s", (int)getpid(), strerror(errno));
        ae__wire_send(fd, AE_W_ERROR, msg, strlen(msg), -1);
    }
    close(fd);
}

static void *lookup(struct server *s, const char *what, const char *symbol)
{
    dlerror();
    void *sym = dlsym(RTLD_DEFAULT, symbol);
    if (!sym)
        fail(s, "%s %s: symbol not found in process %d", what, symbol, (int)getpid());
    return sym;
}

/* Read more of the RPC stream into in (buffered: no fds travel after
 * READY); exits at EOF, when the parent freed the worker. */
static void rpc_fill(struct server *s, unsigned char **in, size_t *have, size_t *cap, size_t need)
{
    if (need > *cap) {
        unsigned char *bigger = realloc(*in, need);
        if (!bigger)
            finish(s, 1);
        *in = bigger;
        *cap = need;
    }
    while (*have < need) {
        ssize_t r = read(s->sock, *in + *have, *cap - *have);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            finish(s, 0);
        *have += (size_t)r;
    }
}

static void send_all(struct server *s, const unsigned char *buf, size_t len)
{
    for (size_t off = 0; off < len;) {
        ssize_t r = send(s->sock, buf + off, len - off, MSG_NOSIGNAL);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            finish(s, 0);
        off += (size_t)r;
    }
}

/* Serve calls in order until EOF. Requests are read in batches; each reply
 * is sent before the next handler runs, so that a handler that kills the
 * worker loses no reply written before it. */
static _Noreturn void rpc_serve(struct server *s, ae_rpc_handler *handler)
{
    size_t cap = 65536, have = 0;
    unsigned char *in = malloc(cap);
    struct ae_rpc_reply rep = {AE_RPC_REPLY_MAGIC, malloc(4096), 0, 4096};
    if (!in || !rep.buf)
        finish(s, 1);
    for (;;) {
        size_t pos = 0;
        while (have - pos >= AE_RPC_REQ_HDR && have - pos >= AE_RPC_REQ_HDR + (size_t)ae__wire_u32(in + pos)) {
            size_t len = ae__wire_u32(in + pos);
            rep.len = AE_RPC_REP_HDR;
            int32_t rc = handler(in + pos + AE_RPC_REQ_HDR, len, &rep);
            uint32_t rlen = (uint32_t)(rep.len - AE_RPC_REP_HDR);
            memcpy(rep.buf, &rlen, 4);
            memcpy(rep.buf + 4, &rc, 4);
            send_all(s, rep.buf, rep.len);
            pos += AE_RPC_REQ_HDR + len;
        }
        memmove(in, in + pos, have - pos);
        have -= pos;
        size_t need = have >= AE_RPC_REQ_HDR ? AE_RPC_REQ_HDR + (size_t)ae__wire_u32(in) : AE_RPC_REQ_HDR;
        rpc_fill(s, &in, &have, &cap, need > have ? need : have + 1);
    }
}

/* RUN or RPC: answer READY (with the hello if due), then run symbol. */
static _Noreturn void run(struct server *s, int cmd, char *symbol)
{
    running = symbol;
    void *sym = s->failed ? NULL : lookup(s, cmd == AE_W_RUN ? "run" : "handler", symbol);
    if (!sym || say(s, AE_W_READY, NULL, 0) < 0) {
        for (int i = 0; i < s->n; i++) /* room for the exit path (a leak checker opens files) */
            if (s->items[i].fd >= 0)
                close(s->items[i].fd);
        finish(s, 127);
    }
    signal_default(s); /* forks made before are the run function's children now */
    if (cmd == AE_W_RPC)
        rpc_serve(s, (ae_rpc_handler *)sym);
    finish(s, ((ae_fork_main *)sym)(s->sock, s->n, s->items));
}

int ae_rpc_reply_write(ae_rpc_reply *reply, const void *data, size_t len)
{
    if (!reply || reply->magic != AE_RPC_REPLY_MAGIC || (len && !data))
        return AE_EINVAL;
    if (len > AE_FORK_MAX_FRAME - reply->len)
        return AE_ENOMEM;
    if (reply->len + len > reply->cap) {
        size_t cap = reply->cap;
        while (cap < reply->len + len)
            cap *= 2;
        unsigned char *buf = realloc(reply->buf, cap);
        if (!buf)
            return AE_ENOMEM;
        reply->buf = buf;
        reply->cap = cap;
    }
    if (len)
        memcpy(reply->buf + reply->len, data, len);
    reply->len += len;
    return 0;
}

_Noreturn void ae__fork_serve(int sock, bool quick_exit)
{
    struct server s = {.sock = sock, .quick_exit = quick_exit, .hello_due = true, .portable = portable_mode()};
    if (s.portable) {
        struct sigaction sa = {.sa_handler = on_sigchld}; /* no SA_RESTART: pselect() returns */
        sigemptyset(&sa.sa_mask);
        sigaction(SIGCHLD, &sa, NULL);
        sigset_t chld;
        sigemptyset(&chld);
        sigaddset(&chld, SIGCHLD);
        sigprocmask(SIG_BLOCK, &chld, NULL);
    }
    /* Bind the C library's lazy calls of dlsym() here, once: a fork that
     * looks up its run function then finds them bound instead of binding
     * them again (and copying the pages they are in). A lookup that
     * succeeds: a failed one also formats dlerror()'s message, which maps
     * the printf machinery into the template (about 300 KiB of resident
     * C library) for a path its forks take only when a symbol is missing. */
    dlsym(RTLD_DEFAULT, "dlsym");
    char small[256]; /* most payloads: no allocation per frame (ARG payloads become items) */
    for (;;) {
        unsigned char h[AE_FORK_HDR];
        int fd = -1;
        bool dropped = false;
        if (read_exact(&s, h, sizeof h, &fd, &dropped) < 0)
        {
            reap(&s, true); /* the parent is gone: a template exits, once its forks ended */
            finish(&s, 0);
        }
        uint32_t len = ae__wire_u32(h + 1);
        int cmd = h[0];
        char *payload = cmd != AE_W_ARG && len < sizeof small ? small
                        : len <= AE_FORK_MAX_FRAME              ? malloc((size_t)len + 1)
                                                                : NULL;
        if (!payload || read_exact(&s, payload, len, NULL, &dropped) < 0) {
            fail(&s, "process %d: cannot read a frame of %u bytes", (int)getpid(), (unsigned)len);
            finish(&s, 1);
        }
        payload[len] = 0;
        if (cmd == AE_W_REQUIRE || cmd == AE_W_CALL || cmd == AE_W_FORK)
            hello(&s); /* before work that may take long: the parent learns the pid now */
        if ((cmd == AE_W_FD || cmd == AE_W_FORK) && fd < 0) {
            fail(&s, dropped ? "process %d hit its fd limit (RLIMIT_NOFILE): a passed fd was dropped"
                             : "process %d: a frame without its fd",
                 (int)getpid());
        } else {
            switch (cmd) {
            case AE_W_REQUIRE:
                if (!s.failed && !dlopen(payload, RTLD_NOW | RTLD_GLOBAL))
                    fail(&s, "require %s: %s", payload, dlerror());
                check_threads(&s, "require", payload);
                break;
            case AE_W_CALL:
                if (!s.failed) {
                    ae_fork_main *fn = (ae_fork_main *)lookup(&s, "call", payload);
                    int rc = fn ? fn(-1, s.n, s.items) : 0;
                    if (rc != 0)
                        fail(&s, "call %s returned %d in process %d", payload, rc, (int)getpid());
                    check_threads(&s, "call", payload);
                }
                break;
            case AE_W_ARG:
                if (add_item(&s, -1, payload, len) < 0)
                    fail(&s, "process %d: out of memory", (int)getpid());
                else
                    payload = NULL; /* the payload is the item now */
                break;
            case AE_W_FD:
                if (add_item(&s, fd, NULL, 0) < 0)
                    fail(&s, "process %d: out of memory", (int)getpid());
                break;
            case AE_W_FORK: do_fork(&s, fd); break;
            case AE_W_RUN:
            case AE_W_RPC: run(&s, cmd, payload); /* never returns */
            default: fail(&s, "process %d: unknown command %d", (int)getpid(), cmd);
            }
        }
        if (payload != small)
            free(payload);
    }
}
