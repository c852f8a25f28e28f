/*
 * anyevent/backend.h: the backend plugin ABI.
 *
 * A backend makes anyevent run on one event loop implementation (epoll, libev,
 * GLib, a game engine's reactor). It is a shared module named
 * anyevent-NAME.so that exports one function, anyevent_backend_entry(), which
 * returns a table of operations (ae_backend_ops). The core keeps every watcher,
 * the timer heap, the ordering rules and the emulation of signal, child and
 * idle watchers; a backend only has to
 *   - watch file descriptors (fd_update),
 *   - wait, with a timeout, for one of them to become ready (wait), which is
 *     also how the core's timers are served,
 * and, to run inside a loop the host program owns (ae_loop_adopt), arm one
 * native timer (timer_update). Everything else is optional. The user API is
 * in <anyevent.h>; docs/plugin-guide.md walks through a whole backend.
 *
 * Versioning (after sqlite3_vfs.iVersion): both tables start with a version
 * and their size. Fields are only ever appended; a field added in version N
 * is read only when the other side's version is at least N and its size
 * covers the field. A backend built for version 1 keeps working with every
 * later core.
 *
 * Threads: a loop belongs to one thread at a time; every operation on a loop
 * is called on that thread, never from a signal handler. A backend's global
 * state (if any) is the backend's to guard; per-loop state needs no lock.
 *
 * Memory: the core allocates and frees the per-loop state (state_size bytes)
 * and each fd's private bytes (fd_data_size); both are zeroed, suitably
 * aligned for any type (fd_data: for what fd_data_align asks, if set), and
 * never move, so a native watcher may live in them.
 * Whatever else a backend allocates, it frees in fd_fini or destroy.
 *
 * Errors: an operation that can fail returns 0 or a negative AE_E* code from
 * <anyevent.h>, after recording a message with the set_error or set_errno
 * service; the core passes both on to the user.
 *
 * Reentrancy: no operation may call a user callback, nor the io_ready,
 * expire, signal_ready or child_ready services, except wait() and run() (and
 * the native loop's own callbacks when the host runs it).
 */
#ifndef ANYEVENT_BACKEND_H
#define ANYEVENT_BACKEND_H

#include <stddef.h>
#include <sys/types.h>

#include "../anyevent.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The ABI version this header describes. Version 2 added run and
 * run_break (ops) and iteration (services); version 3 host_symbol and rank
 * (ops) and expire_checked (services); version 4 hooks_update (ops) and
 * hooks_run (services); version 5 iterations and iteration_hook (ops)
 * and fd_ready (services); version 6 idle_update (ops) and idle_run
 * (services); version 7 fd_data_align (ops); version 8 fd_event
 * (services); version 9 adopted_fork (ops). */
#define AE_BACKEND_ABI_VERSION 9

/* ae_backend_ops.features */
#define AE_BACKEND_F_REENTRANT 1u /* wait() (and run()) may be called again from a callback it dispatched */

/* The kinds of loop hooks (hooks_update, hooks_run) */
#define AE_BACKEND_HOOK_PREPARE 1 /* before the native loop waits (ae_prepare) */
#define AE_BACKEND_HOOK_CHECK 2   /* after an iteration's callbacks (ae_check) */

/* ae_backend_ops.run flags */
#define AE_BACKEND_RUN_ONCE 1   /* one iteration, blocking until something happens */
#define AE_BACKEND_RUN_NOWAIT 2 /* one iteration, without blocking */

typedef struct ae_backend_ops {
    /* ---- version 1 ---- */
    unsigned abi_version; /* AE_BACKEND_ABI_VERSION the backend was built against */
    unsigned struct_size; /* sizeof(ae_backend_ops) the backend was built with */
    const char *name;     /* what ae_loop_backend() says: "epoll", "libev"; static storage */
    size_t state_size;    /* bytes of per-loop state the core allocates for the backend */
    size_t fd_data_size;  /* bytes of per-fd state the core allocates (may be 0) */
    unsigned features;    /* AE_BACKEND_F_* */

    /* Required. Set up state for a loop the backend creates and owns
     * (ae_loop_new). May allocate and open fds (close-on-exec). Returns 0,
     * or a negative code: the core then frees state without calling destroy. */
    int (*init)(ae_loop *loop, void *state);

    /* Required. Release everything init or adopt, fd_init and the native
     * hooks acquired. Before it, every fd has had fd_update to 0 and fd_fini,
     * every native signal and child watch has been stopped. For an adopted
     * loop the native loop itself stays alive and usable by the host. */
    void (*destroy)(ae_loop *loop, void *state);

    /* Optional (NULL: nothing to do). The core meets fd for the first time in
     * this loop, before any fd_update for it. Reserve here whatever fd_update
     * will need, so that fd_update (and with it ae_io_set) never allocates.
     * Returns 0 or a negative code (the user's ae_io then fails with it). */
    int (*fd_init)(ae_loop *loop, void *state, int fd, void *fd_data);

    /* Optional. The core forgets fd (the loop is being freed): release what
     * fd_init reserved. The interest is already 0. */
    void (*fd_fini)(ae_loop *loop, void *state, int fd, void *fd_data);

    /* Required. The combined interest of all the loop's io watchers on fd
     * changes from old_events to new_events (AE_READ|AE_WRITE bits, 0: none).
     * The core combines the watchers of one fd, so a backend sees one
     * registration per fd. Use the native in-place change between two
     * non-zero masks (an epoll_ctl MOD, not DEL and ADD), and no system call
     * the native library would not make.
     * The core checked that fd was open when its first watcher was created.
     * If it was closed since (the user's error), do not crash: fail with
     * AE_EBADF, or report AE_ERROR through io_ready once it is noticed.
     * Removing interest (new_events 0) must not fail, even for a closed fd.
     * Returns 0, or a negative code with the old interest left in place. */
    int (*fd_update)(ae_loop *loop, void *state, int fd, void *fd_data, int old_events, int new_events);

    /* Required. Wait at most timeout seconds (< 0: without limit; 0: poll
     * without blocking) and report every ready fd with the io_ready service
     * (and native signals and children, if the backend has them). The core
     * computes timeout from its timer heap, so this is also how a backend
     * serves timers; round it up, never down, to the clock's resolution.
     * Return early on EINTR (returning 0). Returns the number of fds reported
     * (0 if unknown), or a negative code on failure. Without
     * AE_BACKEND_F_REENTRANT the core never calls it from inside a callback
     * it dispatched. */
    int (*wait)(ae_loop *loop, void *state, double timeout);

    /* Optional. The native loop underneath (struct ev_loop *, uv_loop_t *),
     * for ae_loop_native(); NULL if there is none. */
    void *(*native)(void *state);

    /* Optional. Set up state around a native loop the host program owns and
     * runs itself (ae_loop_adopt): readiness is reported from the native
     * loop's own callbacks, and timers through timer_update. The core also
     * runs an adopted loop itself (ae_run, ae_run_once, ae_cv_recv, nested
     * waits): through run() if set, else wait(). In such a wait the
     * timer_update arming stays in force (the core's timers are served by
     * it, not after the wait), and expire may be called from inside wait.
     * Requires timer_update. Returns 0 or a negative code. */
    int (*adopt)(ae_loop *loop, void *state, void *native);

    /* Adopted loops, and every loop of a backend with run (required with
     * adopt or run). Arm the backend's one native
     * timer to call the expire service after timeout seconds (0: at the next
     * iteration of the native loop; < 0: disarm). Replaces any earlier
     * arming. Must not allocate. */
    void (*timer_update)(ae_loop *loop, void *state, double timeout);

    /* Optional native signals (NULL: the core emulates them). Called when
     * the loop's first watcher of signum starts. Return 0 if the backend will
     * from now on call signal_ready(loop, signum), from wait() or the native
     * loop's callbacks, each time signum arrives; or AE_ENOTSUP to let the
     * core emulate this one (any other negative code fails the user's call).
     * The backend may install its own process-wide handler: the core keeps
     * its own handler working beside it for other loops (see
     * docs/plugin-guide.md, "Who owns a signal"). */
    int (*signal_start)(ae_loop *loop, void *state, int signum);

    /* With signal_start: the loop's last watcher of signum stops. */
    void (*signal_stop)(ae_loop *loop, void *state, int signum);

    /* Optional native child watching (NULL: the core emulates it with
     * SIGCHLD). Called when the loop starts watching child pid (> 0; a watcher
     * of any child always uses the core's emulation). Return 0 if the backend
     * will call child_ready(loop, pid) once pid may have exited (a pidfd
     * became readable, say), or AE_ENOTSUP to let the core emulate it. The
     * backend must not reap pid itself: the core reaps it and reports its
     * status to every watcher of pid in every loop. */
    int (*child_start)(ae_loop *loop, void *state, pid_t pid);

    /* With child_start: the loop stops watching pid (it reported, or its
     * watchers were freed). */
    void (*child_stop)(ae_loop *loop, void *state, pid_t pid);

    /* Optional: the child side of fork(). Called in the child process for
     * each loop (ae_loop_fork(), or automatically at the loop's next
     * iteration after a fork() through the C library), before any other
     * operation. Replace every kernel object the child shares with the
     * parent (an epoll fd: changing it would change the parent's
     * registrations) without touching the shared one beyond closing the
     * child's descriptor. Return 1 to have the core announce every fd with
     * interest again (fd_update from 0 to its events, with fd_data as it
     * was: reset in fork what must not survive), 0 if the registrations are
     * already in place, or a negative code. NULL: the backend shares nothing
     * with the parent (poll, select). */
    int (*fork)(ae_loop *loop, void *state);

    /* Optional: the native library's process-wide default loop
     * (ev_default_loop(0), uv_default_loop()), for ae_loop_default() in a
     * program that already uses this library; NULL when it has none. The
     * core adopts it (adopt must be set). */
    void *(*default_native)(void);

    /* ---- version 2 ---- */

    /* Optional: the native loop owns the iteration (ev_run, uv_run). When
     * set, the core never calls wait(): ae_run(), ae_run_once() and
     * ae_cv_recv() call run(), and the core's timers (and idle watchers) are
     * served as in an adopted loop, through timer_update and the expire
     * service, the native timer re-armed only when the first deadline
     * changes. flags 0: run native iterations until the iteration service
     * says stop (or nothing native is left to wait for);
     * AE_BACKEND_RUN_ONCE: one iteration; AE_BACKEND_RUN_NOWAIT: one
     * iteration without blocking. Once in every iteration, after its
     * callbacks and before the native loop blocks again (libev's invoke
     * callback, a prepare or check watcher, or between two one-iteration
     * runs), call the iteration service; if it returns 0, return as soon as
     * possible without blocking. With AE_BACKEND_F_REENTRANT, run() may be called again from
     * a callback it dispatched. Requires timer_update. Returns 0 or a
     * negative code. */
    int (*run)(ae_loop *loop, void *state, int flags);

    /* Optional, with run: make the innermost run() return at the end of the
     * current iteration without blocking again (ev_break, uv_stop). Called
     * from a callback (ae_break, ae_loop_free). NULL: the next call of the
     * iteration service stops it, early enough. */
    void (*run_break)(ae_loop *loop, void *state);

    /* ---- version 3 ---- */

    /* Optional: the name of a function of the native library that only a
     * program using the library has (ev_default_loop, uv_default_loop,
     * g_main_context_default). The core looks it up in the program's
     * global scope (plugins are loaded RTLD_LOCAL: a plugin's own library
     * never shows there); found, the program uses this library itself, and
     * with default_native set ae_loop_default() adopts the library's
     * default loop and ae_loop_new(NULL) chooses this backend first. The
     * core asks every installed plugin, in rank order. NULL: no detection.
     * Static storage. */
    const char *host_symbol;

    /* Optional: this backend's place in ae_loop_new(NULL)'s choice when no
     * name, ANYEVENT_BACKEND or host library decides: lower ranks are tried
     * first (the built-in poll is 40, select 50; libev 10, libuv 20,
     * libevent 30). 0: never chosen that way, only by name or by host
     * detection (plugins before version 3 are all 0). */
    unsigned rank;

    /* ---- version 4 ---- */

    /* Optional, adopted loops only: the loop hooks (ae_prepare, ae_check)
     * in the iterations the host runs. kind is AE_BACKEND_HOOK_PREPARE or
     * AE_BACKEND_HOOK_CHECK; on 1: the loop's first started hook of that
     * kind appeared, so from now on have the native loop call the
     * hooks_run service with kind once per iteration: PREPARE just before
     * it waits for events (ev_prepare, uv_prepare_t, a GSource's prepare),
     * CHECK after the iteration's callbacks, the core's timers (expire)
     * included (ev_check, uv_check_t, or the next iteration's prepare). The
     * native watchers must not keep the native loop alive. on 0: its last
     * one stopped; stop calling. Called on the loop's thread, never from
     * inside hooks_run. In iterations the core runs itself (ae_run on the
     * adopted loop) the service returns at once: the core runs the hooks
     * there. Returns 0 or a negative code (starting fails with it). NULL:
     * ae_prepare and ae_check fail with AE_ENOTSUP on adopted loops. */
    int (*hooks_update)(ae_loop *loop, void *state, int kind, int on);

    /* ---- version 5 ---- */
    /* Optional, with run, both or neither: the iteration service only when
     * the core asks for it. iterations returns the native loop's count of
     * iterations (ev_iteration): it must change between the wait of one
     * iteration and the callbacks of the next; the core reads it when it
     * needs the time or arms a timer, instead of being called once per
     * iteration. iteration_hook(on 0) tells run() that it may skip the
     * iteration service from now on; on 1, that it calls it again in every
     * iteration, this one included when called from a callback of run()
     * (at the end of this iteration's callbacks). The core starts every
     * loop it made itself with the hook off; a backend starts with it on,
     * as a core before version 5 expects. Not called for adopted loops. */
    unsigned (*iterations)(void *state);
    void (*iteration_hook)(ae_loop *loop, void *state, int on);

    /* ---- version 6 ---- */
    /* Optional, with run: the loop's idle watchers without the native
     * timer, for loops the core makes itself (not called for adopted
     * loops). on 1: the loop's first started idle watcher; from now on the
     * native loop must not block (libuv: an idle handle started). A backend
     * that calls the iteration service in every iteration needs no more:
     * the core runs the idle watchers from there. One with iteration_hook
     * must also call the idle_run service once in each iteration in which
     * none of its native watchers that call the core (io, the native
     * timer) had an event, after the iteration's other callbacks and
     * before the iteration service (libev: an ev_idle of a priority below
     * the io watchers, which libev invokes only when nothing of its
     * priority or above is pending). on 0: the last one stopped; stop.
     * Must not fail or allocate. NULL: the core serves idle watchers with
     * timer_update(0) and the expire service. */
    void (*idle_update)(ae_loop *loop, void *state, int on);

    /* ---- version 7 ---- */
    /* Optional (0: aligned for any type, as before version 7): the
     * alignment fd_data needs, a power of two no larger than
     * _Alignof(max_align_t), usually _Alignof the backend's per-fd struct.
     * The core then spaces the fds' entries in its table by that much
     * alignment only (on x86-64, 8 rather than 16 bytes: up to 8 bytes less
     * per fd). Any other value fails the plugin's loading. */
    size_t fd_data_align;

    /* ---- version 9 ---- */
    /* Optional: the child side of fork() for an adopted loop, called where
     * fork is for a loop of the core's own (ae_loop_fork(), or the loop's
     * next use after a fork() through the C library). The host renews its
     * native loop itself (ev_loop_fork, event_reinit, uv_loop_fork): renew
     * only what the plugin keeps of its own that the child shares with the
     * parent or learned from the parent's native loop (a kernel object it
     * made, the number of the native loop's epoll fd), without touching
     * the native loop. Returns 0 or a negative code (the loop is then
     * unusable in the child, as after a failed fork). NULL: the plugin
     * keeps nothing of the kind (before version 9, no plugin was told). */
    int (*adopted_fork)(ae_loop *loop, void *state);
} ae_backend_ops;

/* Whether a backend's operations table has the field named member (one
 * added after version 1: check before reading it). */
#define AE_BACKEND_OPS_HAS(ops, member)                                                                       \
    ((ops)->abi_version >= 2 && (ops)->struct_size >= offsetof(ae_backend_ops, member) + sizeof((ops)->member))

/* What the core offers a backend. A plugin gets this table from its entry
 * function and calls only through it (a program may link the core
 * statically, leaving no symbols for the plugin to bind to). */
typedef struct ae_backend_services {
    /* ---- version 1 ---- */
    unsigned version;     /* AE_BACKEND_ABI_VERSION of the core */
    unsigned struct_size; /* sizeof(ae_backend_services) of the core */

    /* Dispatch: fd is ready with revents (AE_READ, AE_WRITE, or AE_ERROR if
     * the fd turned out to be invalid). Runs the callbacks of fd's io
     * watchers, which may change any registration, this fd's included, or
     * free the loop. Returns 1, or 0 if a callback freed the loop (possible
     * only when the host runs the native loop): the backend's state is gone,
     * touch nothing of it and return. */
    int (*io_ready)(ae_loop *loop, int fd, int revents);

    /* Adopted loops: the native timer armed by timer_update fired. Runs the
     * due timers (and idle watchers) and re-arms through timer_update. From
     * the host's loop a timer callback may free the loop, and the backend's
     * state with it: touch nothing after expire (or use expire_checked). */
    void (*expire)(ae_loop *loop);

    /* Record the calling thread's error message; returns code. */
    int (*set_error)(int code, const char *fmt, ...)
#if defined(__GNUC__)
        __attribute__((format(printf, 2, 3)))
#endif
        ;

    /* The same for a failed system call, from errno (AE_ENOMEM, AE_EBADF or
     * AE_ESYS); what names the call. Returns the code. */
    int (*set_errno)(const char *what);

    /* The loop's time (ae_now()): seconds since the epoch as of the last
     * iteration. */
    double (*now)(ae_loop *loop);

    /* A natively watched signal arrived (see signal_start). Marks it for
     * every loop that watches signum; the callbacks run after wait() returns. */
    void (*signal_ready)(ae_loop *loop, int signum);

    /* A natively watched child may have exited (see child_start): the core
     * reaps pid if it has, and reports it to every watcher of pid. */
    void (*child_ready)(ae_loop *loop, pid_t pid);

    /* ---- version 2 ---- */

    /* From run(), once per native iteration, after its callbacks and
     * before it blocks again: the core's per-iteration work (the fork
     * check; the loop time goes stale, to be read again when next needed).
     * Returns 1 to go on, 0 when run() must return (ae_break, no active
     * watcher left, the loop freed, a failed fork renewal). */
    int (*iteration)(ae_loop *loop);

    /* ---- version 3 ---- */

    /* expire, telling whether the loop outlived it: a timer callback run
     * from the host's own loop may free the loop (and the backend's state
     * with it). Returns 1, or 0 if the loop was freed: touch nothing of
     * the state and return. */
    int (*expire_checked)(ae_loop *loop);

    /* ---- version 4 ---- */

    /* Adopted loops, with hooks_update: the native loop reached the point
     * of kind (AE_BACKEND_HOOK_PREPARE or _CHECK): runs the loop's started
     * hooks of that kind, unless the core runs this iteration itself. A
     * hook may free the loop: returns 1, or 0 if the loop was freed (touch
     * nothing of the state and return). */
    int (*hooks_run)(ae_loop *loop, int kind);

    /* ---- version 5 ---- */

    /* io_ready for an fd the core gave fd_data to (fd_data_size > 0), with
     * that pointer, which spares the core looking fd up in its table. */
    int (*fd_ready)(ae_loop *loop, int fd, void *fd_data, int revents);

    /* ---- version 6 ---- */

    /* With idle_update on: nothing else happened in this iteration; runs
     * the loop's started idle watchers. Returns 1, or 0 if the loop was
     * freed (touch nothing of the state and return). */
    int (*idle_run)(ae_loop *loop);

    /* ---- version 8 ---- */

    /* fd_ready (an fd the core gave fd_data to) for readiness alone, the
     * common case cut short: AE_READ and AE_WRITE of revents count, any
     * other bit is ignored, AE_ERROR too (report that with fd_ready or
     * io_ready), so native bits that line up may be passed as they are.
     * The core finds the loop and the fd from fd_data, and there is no
     * result. As with fd_ready, a callback run from the host's own loop
     * may free the loop: touch nothing of the backend's state after
     * fd_event returns. */
    void (*fd_event)(void *fd_data, int revents);
} ae_backend_services;

/* The entry point every plugin exports under this name: keep services (if
 * its version and size are enough for the backend) and return the backend's
 * operations table, which must stay valid for the life of the process; or
 * return NULL after services->set_error() if it cannot run here (a missing
 * kernel feature, say). Called once, when the plugin is loaded; every
 * installed plugin is loaded by ae_loop_new(NULL) and ae_backends(),
 * whether it is then used or not: leave process-wide setup (fork handlers,
 * threads) to the first init or adopt. */
#define AE_BACKEND_ENTRY_SYMBOL "anyevent_backend_entry"
typedef const ae_backend_ops *(*ae_backend_entry_fn)(const ae_backend_services *services);

/* Declares the entry function with the visibility it needs:
 *   AE_BACKEND_ENTRY(services) { ... return &my_ops; } */
#if defined(__GNUC__) && __GNUC__ >= 4
#define AE_BACKEND_ENTRY(services)                                                                            \
    __attribute__((visibility("default"))) const ae_backend_ops *anyevent_backend_entry(                      \
        const ae_backend_services *services)
#else
#define AE_BACKEND_ENTRY(services) const ae_backend_ops *anyevent_backend_entry(const ae_backend_services *services)
#endif

/* ---- the test host (optional; read by ae-conformance, never by the core) ----
 *
 * A plugin with a native loop (ops.native) exports a second function under
 * this name, which returns how a host program makes and runs that native
 * loop. ae-conformance uses it to check the plugin's adoption: it makes a
 * native loop with loop_new, adopts it (ae_loop_adopt), runs the host's own
 * iterations with run_once, and checks that watchers fire there, that
 * timer_update arms and re-arms the native timer as the contract says, and
 * that a callback may free the adopted loop. Without it those checks fail
 * for a plugin whose ae_loop_native() gives a loop: adoption would go
 * unchecked. The table must stay valid for the life of the process. */
#define AE_BACKEND_TEST_HOST_SYMBOL "anyevent_backend_test_host"

typedef struct ae_backend_test_host {
    unsigned version;     /* AE_BACKEND_ABI_VERSION the plugin was built against */
    unsigned struct_size; /* sizeof(ae_backend_test_host) */
    /* A new native loop, made as a host program makes one: what
     * ae_loop_adopt() takes. NULL on failure. */
    void *(*loop_new)(void);
    /* One iteration of the native loop, run as the host runs it, without
     * anyevent: block 1 waits until something happens (ev_run EVRUN_ONCE,
     * g_main_context_iteration(ctx, TRUE)), block 0 does not. Returns 0, or
     * a negative number on failure. */
    int (*run_once)(void *native, int block);
    /* Frees a loop made by loop_new (every adopted loop on it is freed
     * first). */
    void (*loop_free)(void *native);
    /* ---- version 9 ---- */
    /* Optional: what a host program does in a child of fork() before it
     * uses its loop again (ev_loop_fork, event_reinit, uv_loop_fork).
     * Returns 0, or a negative number on failure. NULL: the library needs
     * nothing, or finds the fork itself. Check with
     * AE_BACKEND_TEST_HOST_HAS. */
    int (*loop_fork)(void *native);
} ae_backend_test_host;

/* Whether a test host offers the field named member (one added after
 * version 3, the first with a test host). */
#define AE_BACKEND_TEST_HOST_HAS(host, member)                                                               \
    ((host)->version >= 9 && (host)->struct_size >= offsetof(ae_backend_test_host, member) + sizeof((host)->member))

typedef const ae_backend_test_host *(*ae_backend_test_host_fn)(void);

/* Declares the test host function with the visibility it needs:
 *   AE_BACKEND_TEST_HOST() { return &my_host; } */
#if defined(__GNUC__) && __GNUC__ >= 4
#define AE_BACKEND_TEST_HOST()                                                                                \
    __attribute__((visibility("default"))) const ae_backend_test_host *anyevent_backend_test_host(void)
#else
#define AE_BACKEND_TEST_HOST() const ae_backend_test_host *anyevent_backend_test_host(void)
#endif

/* Whether a services table of the core offers the field named member. */
#define AE_BACKEND_SERVICES_HAS(services, member)                                                             \
    ((services)->struct_size >= offsetof(ae_backend_services, member) + sizeof((services)->member))

#ifdef __cplusplus
}
#endif

#endif /* ANYEVENT_BACKEND_H */
