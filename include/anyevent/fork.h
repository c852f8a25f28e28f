/*
 * anyevent/fork.h: process templates (after Perl's AnyEvent::Fork, ::RPC and
 * ::Pool). New processes are made without forking the program that asks for
 * them: a small helper process (ae-fork-server) is started with posix_spawn
 * and forks on request; what a process should do is sent over a socket
 * (shared objects to dlopen, functions to call by name, file descriptors and
 * byte arguments), and errors come back over the same socket. docs/fork.md is
 * the long form, with the protocol and the figures.
 *
 * Conventions (as in anyevent.h): every call returns 0, a negative AE_E*
 * code, or NULL, with ae_last_error() set. The commands (require, call,
 * send_*, run) only queue; what fails in the other process is reported later,
 * on the loop: to the run callback (sock -1), to an RPC callback (err < 0,
 * AE_EPROC), or by ae_fork_error(). No callback runs from inside a call of
 * this header. On Linux a template forks with clone(CLONE_PARENT); elsewhere
 * (and on Linux with ANYEVENT_FORK_PORTABLE=1 in the environment) it forks
 * and forwards its forks' wait statuses (docs/fork.md, "The portable path").
 */
#ifndef ANYEVENT_FORK_H
#define ANYEVENT_FORK_H

#include <stddef.h>
#include <sys/types.h>

#include "anyevent.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A process being prepared, or run. */
typedef struct ae_fork ae_fork;

/* One item sent to a process: fd >= 0 is a passed file descriptor (data
 * NULL, len 0), else data/len are bytes sent with ae_fork_send_arg(). */
typedef struct ae_fork_item {
    int fd;
    const void *data;
    size_t len;
} ae_fork_item;

/* The function a process runs, found by name: sock is its end of the socket
 * (blocking, close-on-exec), items what was sent, in the order sent; its
 * return value is the process's exit status. ae_fork_call() calls the same
 * signature with sock -1 and the items sent so far (0: success). */
typedef int ae_fork_main(int sock, int n, const ae_fork_item *items);

/* A process forked from the loop's default template: a helper process
 * (ae-fork-server) started on first use and kept until the loop is freed.
 * Returns NULL only for a NULL loop or no memory; a template that cannot be
 * started gives a process that fails (its run callback gets sock -1). */
AE_EXPORT ae_fork *ae_fork_new(ae_loop *loop);

/* A fresh helper process of its own, started with posix_spawn: it shares
 * nothing with anyone. The helper is ANYEVENT_FORK_SERVER if set, else
 * $libexecdir/anyevent/ae-fork-server, else the build tree's when this library
 * runs from its build tree; if none can be run, the process fails with a
 * message that lists where it looked. */
AE_EXPORT ae_fork *ae_fork_exec(ae_loop *loop);

/* A process forked from tmpl, a process prepared but not run (a template): it
 * inherits what tmpl required and was sent; tmpl stays usable. On Linux the
 * new process is a child of this program (clone(CLONE_PARENT)); on the
 * portable path a child of tmpl, whose status tmpl forwards. A template with
 * more than one thread (a require or call started one) refuses: the fork
 * fails on the loop with "fork refused". NULL with AE_EINVAL for NULL,
 * AE_ESTATE if tmpl was run. */
AE_EXPORT ae_fork *ae_fork_fork(ae_fork *tmpl);

/* This program, forked now, as a template (AnyEvent::Fork::Template): its
 * children see the program's memory as it was at this call. The template keeps
 * only fds 0-2 and its socket. Refused with AE_ESTATE while the process has
 * more than one thread (AE_ENOTSUP where threads cannot be counted). Functions of the program are found by name only when
 * the program exports them (linked with -rdynamic). */
AE_EXPORT ae_fork *ae_fork_self(ae_loop *loop);

/* Queue commands for p (any process not yet run). Each returns 0, or
 * AE_EINVAL (NULL), AE_EBADF (fd negative or not open), AE_ENOMEM, AE_ESTATE
 * (p was run). */
AE_EXPORT int ae_fork_require(ae_fork *p, const char *shared_object); /* dlopen(RTLD_NOW|RTLD_GLOBAL) there */
AE_EXPORT int ae_fork_call(ae_fork *p, const char *symbol);  /* run symbol there now; non-zero = failure */
AE_EXPORT int ae_fork_send_fd(ae_fork *p, int fd);           /* duplicated now: fd stays the caller's */
AE_EXPORT int ae_fork_send_arg(ae_fork *p, const void *data, size_t len); /* copied; len 0 allowed */

/* Called on the loop once the process found symbol and is running it: sock
 * is the parent's end of its socket (non-blocking, close-on-exec, the
 * caller's to close); or sock -1 when anything failed, with ae_fork_error(p).
 * ae_fork_pid(p) is known when it runs. */
typedef void (*ae_fork_cb)(ae_fork *p, int sock, void *arg);

/* Run symbol in p: ae_fork_main(sock, n, items); the process exits with its
 * return value. cb may be NULL (the socket is then closed for the caller).
 * p cannot be used as a template afterwards. */
AE_EXPORT int ae_fork_run(ae_fork *p, const char *symbol, ae_fork_cb cb, void *arg);

/* Call cb with the waitpid() status of p's process when it ends (any process
 * made here, template children too); NULL removes it. A process that was run
 * keeps the loop's ae_run() going until it ends, as a child watcher does. */
AE_EXPORT int ae_fork_on_exit(ae_fork *p, void (*cb)(ae_fork *p, int status, void *arg), void *arg);

/* The process id, 0 until known. */
AE_EXPORT pid_t ae_fork_pid(const ae_fork *p);

/* Why the process failed ("require ./x.so: ...: cannot open shared object
 * file", "process 1234 killed by signal 9"), or NULL. */
AE_EXPORT const char *ae_fork_error(const ae_fork *p);

/* Forget p. Before run the process exits (after the commands queued); after
 * run it goes on, and is still reaped (no zombie), but on_exit is not called.
 * Safe from p's callbacks. NULL is ignored. */
AE_EXPORT void ae_fork_free(ae_fork *p);

/* ---- RPC: byte requests and replies over a process's socket -------------- */

typedef struct ae_rpc ae_rpc;
typedef struct ae_rpc_reply ae_rpc_reply;

/* In the worker: answer one request by appending bytes to reply; return 0,
 * or non-zero to fail the call (what was written is still delivered). */
typedef int ae_rpc_handler(const void *req, size_t len, ae_rpc_reply *reply);

/* In the worker: append len bytes to the reply. 0, or AE_ENOMEM/AE_EINVAL. */
AE_EXPORT int ae_rpc_reply_write(ae_rpc_reply *reply, const void *data, size_t len);

/* The reply of one call, on the loop. err 0, or AE_EPROC: the handler
 * returned non-zero (reply is what it wrote), or the worker failed or died
 * (reply NULL; ae_rpc_error() says why). */
typedef void (*ae_rpc_cb)(ae_rpc *r, const void *reply, size_t len, int err, void *arg);

/* Run p as a worker that serves calls one at a time, in order, with the
 * handler found by name. Takes p (do not use or free it afterwards), also on
 * failure. NULL only for bad arguments or no memory. */
AE_EXPORT ae_rpc *ae_rpc_new(ae_fork *p, const char *handler_symbol);

/* Queue a call (req copied; len 0 allowed); cb runs once with the reply. */
AE_EXPORT int ae_rpc_call(ae_rpc *r, const void *req, size_t len, ae_rpc_cb cb, void *arg);

/* Why the worker failed (not started, died: with its wait status), or NULL. */
AE_EXPORT const char *ae_rpc_error(const ae_rpc *r);

/* The worker finishes what is queued (the callbacks run), then exits. */
AE_EXPORT void ae_rpc_free(ae_rpc *r);

/* ---- A pool of RPC workers forked from one template ---------------------- */

typedef struct ae_pool ae_pool;

/* NULL, or any 0 field, takes that field's default: max = the number of
 * cores, idle 0 (workers kept when idle), load 2 (calls queued per worker), a
 * worker added after `start` s (0.1) of calls waiting, an idle one retired
 * after `stop` s (10). */
typedef struct ae_pool_opts {
    int max, idle, load;
    double start, stop;
} ae_pool_opts;

/* Does not take tmpl, which must outlive the pool. */
AE_EXPORT ae_pool *ae_pool_new(ae_fork *tmpl, const char *handler_symbol, const ae_pool_opts *o);
AE_EXPORT int ae_pool_call(ae_pool *pool, const void *req, size_t len, ae_rpc_cb cb, void *arg);

/* Queued calls still complete and their callbacks run; then the workers exit. */
AE_EXPORT void ae_pool_free(ae_pool *pool);

#ifdef __cplusplus
}
#endif

#endif /* ANYEVENT_FORK_H */
