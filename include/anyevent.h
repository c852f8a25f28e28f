/*
 * anyevent: one event-loop API over many event libraries.
 *
 * A program or library writes its event code once against this header; at run
 * time anyevent drives whichever loop is chosen (the built-in "poll" and
 * "select" loops, and backend plugins). docs/api.md is the long form of what
 * follows.
 *
 * Conventions:
 *  - A call that can fail returns NULL or a negative AE_E* code. The message of
 *    the calling thread's last failure is ae_last_error(); ae_strerror() names
 *    a code.
 *  - Creating a watcher starts it; ae_watcher_free() stops and frees it.
 *    Freeing any watcher (the running one included) from inside any callback
 *    is safe, and a freed watcher's callback never runs again.
 *  - A loop and everything on it belong to one thread at a time. Different
 *    loops may run in different threads. The exceptions, callable from any
 *    thread: ae_async_send() (also from a signal handler), ae_loop_default(),
 *    ae_loop_new(), ae_loop_adopt(), ae_backends(), ae_backend_names(), the
 *    error calls (per thread) and ae_time(). docs/api.md, "Threads".
 *  - Times are seconds as doubles. ae_now()/ae_time() are seconds since the
 *    epoch; timer deadlines run on a monotonic clock.
 */
#ifndef ANYEVENT_H
#define ANYEVENT_H

#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define AE_VERSION_MAJOR 0
#define AE_VERSION_MINOR 1
#define AE_VERSION_PATCH 0

#if defined(__GNUC__) && __GNUC__ >= 4
#define AE_EXPORT __attribute__((visibility("default")))
#else
#define AE_EXPORT
#endif

typedef struct ae_loop ae_loop;
typedef struct ae_watcher ae_watcher;
typedef struct ae_cv ae_cv;

/* io interest and readiness bits. AE_ERROR is only ever reported, never
 * requested: the fd became invalid (closed while watched); the watcher has been
 * paused (as by ae_io_set(w, 0)) and will not fire again until re-armed. */
enum { AE_READ = 1, AE_WRITE = 2, AE_ERROR = 4 };

/* ae_run_once() flags. */
enum { AE_NOWAIT = 1 };

/* Error codes: always negative; 0 is success. */
enum {
    AE_OK = 0,
    AE_EINVAL = -1,   /* a bad argument: NULL, negative or NaN time, bad events */
    AE_ENOMEM = -2,   /* out of memory */
    AE_EBADF = -3,    /* not an open file descriptor */
    AE_ENOENT = -4,   /* no such backend */
    AE_ENOTSUP = -5,  /* the backend or the platform cannot do this */
    AE_ESYS = -6,     /* a system call failed; the message names it and errno */
    AE_ECROAKED = -7, /* the condvar was croaked; ae_cv_error() has why */
    AE_EDEADLK = -8,  /* waiting would block forever: nothing could wake it */
    AE_ELIMIT = -9,   /* a limit of the backend, e.g. select()'s FD_SETSIZE */
    AE_ESTATE = -10,  /* not allowed in the current state */
    AE_ESIGNAL = -11, /* a signal that cannot be watched (SIGKILL, SIGSTOP, out of range) */
    AE_EPROC = -12    /* another process failed (anyevent/fork.h): died, or refused the request */
};

/* ---- errors ------------------------------------------------------------ */

/* A short constant description of an AE_E* code ("invalid argument", ...);
 * never NULL, also for unknown codes. */
AE_EXPORT const char *ae_strerror(int err);

/* The message of the calling thread's most recent failed anyevent call, with
 * details ("ae_io: fd 7 is not open"), or "" if none failed yet. The
 * string stays valid until the thread's next anyevent call. */
AE_EXPORT const char *ae_last_error(void);

/* The code that went with ae_last_error(), or 0. */
AE_EXPORT int ae_last_error_code(void);

/* Record the calling thread's error, as a failed anyevent call does: for
 * libraries built on anyevent (anyevent-tls) whose calls report through
 * ae_last_error() too. fmt is printf's. Returns code. */
AE_EXPORT int ae_set_error(int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* ---- loops ------------------------------------------------------------- */

/* Create a loop. backend: a name ("libev", "libuv", "libevent", "poll",
 * "select", or another plugin's) or NULL to choose: then the environment
 * variable ANYEVENT_BACKEND if set, else the first backend that starts in the
 * preference order libev, libuv, libevent, poll, select. Plugins are found as
 * anyevent-NAME.so in the folders of ANYEVENT_PLUGIN_PATH, then the installed
 * plugin folder, then the build tree's when this library runs from it. An
 * unknown or unavailable name fails with AE_ENOENT and a message that says
 * why (not found where, the dlopen message, an ABI mismatch) and lists the
 * available ones. An absolute path to a plugin file ("/x/anyevent-NAME.so")
 * loads that file. Without a name and without ANYEVENT_BACKEND, a program
 * that already uses libev, libuv or GLib (a symbol each plugin names is in
 * its global scope: it links the library) gets that library's backend first,
 * in rank order (libev before libuv); else the installed backends are tried
 * by rank: libev, libuv, libevent, poll, select.
 * With ANYEVENT_DEBUG=1 the choice and the rule that made it, and every
 * backend skipped, are printed on stderr. Returns NULL on failure. */
AE_EXPORT ae_loop *ae_loop_new(const char *backend);

/* Create a loop around a native loop the host program owns and runs itself:
 * native is a struct ev_loop * ("libev"), a struct event_base * ("libevent"),
 * a uv_loop_t * ("libuv") or a GMainContext * ("glib"). Every anyevent
 * watcher of the loop then fires inside the host's ev_run /
 * event_base_dispatch / uv_run / g_main_loop_run. ae_loop_free()
 * leaves the native loop alive and intact. Fails with AE_EINVAL (no name or
 * NULL native), AE_ENOENT (unknown backend) or AE_ENOTSUP (a backend without
 * a native loop, such as poll). */
AE_EXPORT ae_loop *ae_loop_adopt(const char *backend, void *native);

/* The native loop underneath (struct ev_loop *, struct event_base *,
 * uv_loop_t *, GMainContext *), or NULL with AE_ENOTSUP for the built-in backends. */
AE_EXPORT void *ae_loop_native(ae_loop *loop);

/* The process-wide default loop, created on first use (as by
 * ae_loop_new(NULL)); thread-safe. Returns NULL if it cannot be created.
 * ae_loop_free() on it is allowed; the next call creates a new one.
 * In a program that already uses libev, libuv or GLib (see ae_loop_new), the
 * default loop adopts that library's own default loop (ev_default_loop(0),
 * uv_default_loop(), g_main_context_default()) unless ANYEVENT_BACKEND names
 * another backend: a library that only calls ae_loop_default() then runs
 * inside the host's ev_run, uv_run or g_main_loop_run without the host calling anyevent at all. libevent has no default
 * loop: there the host calls ae_loop_adopt(). */
AE_EXPORT ae_loop *ae_loop_default(void);

/* Make the loop usable in the child process after fork(). Every loop does
 * this by itself at its next ae_run(), ae_run_once() or ae_cv_recv() after a
 * fork() made through the C library, so the call is needed only after a raw
 * clone(), or for an adopted loop, whose host re-initializes its native loop
 * itself (ev_loop_fork(), event_reinit(), uv_loop_fork()) and then calls
 * this, which renews only anyevent's own fds. The parent's loops are not
 * affected by anything the child does. Child watchers of the parent's
 * children never fire in the child (they are not its children). Returns 0,
 * or a negative code if the backend could not re-create its state (the loop
 * is then unusable in the child; free it). */
AE_EXPORT int ae_loop_fork(ae_loop *loop);

/* Stop and free every watcher and condvar still on the loop, then the loop.
 * No callback runs; pointers to those watchers and condvars are invalid
 * afterwards. NULL is ignored. Called from inside a callback of this loop, the
 * free is deferred until the outermost ae_run(), ae_run_once() or
 * ae_cv_recv() returns, and no further callback of the loop runs. */
AE_EXPORT void ae_loop_free(ae_loop *loop);

/* The name of the loop's backend ("poll", ...). */
AE_EXPORT const char *ae_loop_backend(const ae_loop *loop);

/* The names of the backends that can be used here, comma-separated, in order
 * of preference ("libev,libuv,libevent,poll,select"). Loads every plugin of
 * the preference order that is not loaded yet. */
AE_EXPORT const char *ae_backend_names(void);

/* One backend known to this process. */
typedef struct ae_backend_info {
    const char *name;
    int available;      /* 1 if loops can be made with it */
    const char *detail; /* "built in", the plugin's path, or why it cannot be used */
} ae_backend_info;

/* Every backend known to this process (the preference order, then others
 * that were asked for by name): stores a pointer to the array in *list and
 * returns its length. The array is valid until the next call. */
AE_EXPORT int ae_backends(const ae_backend_info **list);

/* Run the loop until no active watcher is left or ae_break() is called.
 * Active: io watchers with a non-zero event mask, armed timers, signal and idle
 * watchers, child watchers that have not reported. Returns 0, or a negative
 * code if the backend failed, or AE_ENOTSUP from inside a callback on a
 * backend that cannot run recursively. */
AE_EXPORT int ae_run(ae_loop *loop);

/* One iteration: wait for events (not at all with AE_NOWAIT, nor when idle
 * watchers exist), refresh the loop time, run the callbacks of what is ready
 * (io, signals, children, due timers), then, if nothing else ran, the idle
 * callbacks. Returns 1 if active watchers remain, 0 if none, or a negative
 * code on failure. Waiting with no active watcher at all returns 0 at once. */
AE_EXPORT int ae_run_once(ae_loop *loop, int flags);

/* Make the innermost running ae_run() return at the end of its current
 * iteration. Without a running ae_run() on the loop it does nothing. */
AE_EXPORT void ae_break(ae_loop *loop);

/* The loop's cached time, seconds since the epoch. It is refreshed when the
 * wait returns (before any callback of that iteration) and by ae_now_update(). */
AE_EXPORT double ae_now(ae_loop *loop);

/* Refresh the loop's cached time now. */
AE_EXPORT void ae_now_update(ae_loop *loop);

/* The current time, seconds since the epoch, not cached. */
AE_EXPORT double ae_time(void);

/* ---- watchers ---------------------------------------------------------- */

typedef void (*ae_io_cb)(ae_watcher *w, int revents, void *arg);
typedef void (*ae_timer_cb)(ae_watcher *w, void *arg);
typedef void (*ae_signal_cb)(ae_watcher *w, int signum, void *arg);
typedef void (*ae_child_cb)(ae_watcher *w, pid_t pid, int status, void *arg);
typedef void (*ae_idle_cb)(ae_watcher *w, void *arg);

/* Watch fd for events (AE_READ | AE_WRITE, or 0 to create it paused);
 * level-triggered: cb runs every iteration while fd is ready, with the ready
 * subset of the watcher's events. Several watchers may watch one fd; each gets
 * its own events. fd must be open: a negative or closed fd fails with
 * AE_EBADF. A backend limit (select() past FD_SETSIZE) fails with AE_ELIMIT. */
AE_EXPORT ae_watcher *ae_io(ae_loop *loop, int fd, int events, ae_io_cb cb, void *arg);

/* Change an io watcher's events in place (0 pauses it, which makes it
 * inactive). Does not allocate; uses the backend's in-place modify. */
AE_EXPORT int ae_io_set(ae_watcher *w, int events);

/* Call cb once after `after` seconds measured from ae_now(), then, if interval
 * > 0, every interval seconds. after and interval must be finite and >= 0.
 * A timer armed from inside a callback, even with after 0, fires in the next
 * iteration at the earliest.
 * Timers with equal deadlines fire in the order they were armed. A repeating
 * timer does not drift: each deadline is the previous one plus interval; when
 * it falls behind it fires once, then takes the next deadline still ahead.
 * A one-shot timer that has fired is inactive but remains valid until
 * ae_watcher_free(); ae_timer_set() re-arms it. */
AE_EXPORT ae_watcher *ae_timer(ae_loop *loop, double after, double interval, ae_timer_cb cb, void *arg);

/* Re-arm a timer in place from ae_now(): as if freshly created with these
 * times, without allocating (every timer's heap slot is reserved when it is
 * created). */
AE_EXPORT int ae_timer_set(ae_watcher *w, double after, double interval);

/* Disarm a timer in place: it becomes inactive (as a one-shot timer that has
 * fired) and ae_timer_set() re-arms it. Does not allocate; a disarmed timer
 * is still the caller's to free. Stopping a disarmed timer does nothing. */
AE_EXPORT int ae_timer_stop(ae_watcher *w);

/* Seconds from ae_now() to the armed timer's next deadline (as libev's
 * ev_timer_remaining): negative when it is overdue and its callback is about
 * to run. NAN with ae_last_error() set when w is not a timer (AE_EINVAL) or
 * is not armed (AE_ESTATE: a one-shot that fired, stopped or disarmed).
 * Constant time for a timer alone at its deadline; among timers armed for the
 * same deadline, proportional to its place among them. */
AE_EXPORT double ae_timer_remaining(ae_watcher *w);

/* Call cb when signum is delivered to the process. Several watchers, also in
 * several loops, may watch one signal: all are called. Deliveries may
 * coalesce, but one that arrives after this call returns is never lost. The
 * disposition in place before the first watcher is restored when the last one
 * is freed. SIGKILL, SIGSTOP, the signals the C library reserves for itself
 * and numbers out of range fail with AE_ESIGNAL. */
AE_EXPORT ae_watcher *ae_signal(ae_loop *loop, int signum, ae_signal_cb cb, void *arg);

/* Call cb when child process pid (0: any child) exits or is killed, with
 * waitpid()'s status. A child that exited before the watcher was created is
 * still reported. Children that no watcher asks for are not reaped (unless a
 * pid 0 watcher exists), so other code's waitpid() keeps working. Every watcher
 * for the pid, in every loop, is told. A watcher for one pid is inactive once
 * it has reported; a pid 0 watcher stays active. pid < 0 fails with AE_EINVAL,
 * and so does a pid that is not a child of this process (or that other code
 * has reaped already), which could never report. */
AE_EXPORT ae_watcher *ae_child(ae_loop *loop, pid_t pid, ae_child_cb cb, void *arg);

/* Call cb in every iteration in which nothing else is ready, for as long as the
 * watcher exists. While an idle watcher exists the loop never blocks. */
AE_EXPORT ae_watcher *ae_idle(ae_loop *loop, ae_idle_cb cb, void *arg);

/* Stop the watcher and free it. Safe from inside any callback, its own
 * included; the watcher's callback never runs again. NULL is ignored. */
AE_EXPORT void ae_watcher_free(ae_watcher *w);

/* Whether the watcher is active (counts for ae_run() unless unref'd, and
 * prepare and check watchers never do): 1 or 0; 0 also for a stopped
 * watcher, and for NULL or a pointer that is not a live watcher, with the
 * error set. */
AE_EXPORT int ae_watcher_active(const ae_watcher *w);

/* The loop a watcher belongs to. */
AE_EXPORT ae_loop *ae_watcher_loop(const ae_watcher *w);

/* Cross-thread wake-up. Created on the loop's thread; ae_async_send() may be
 * called from any thread, and from a signal handler (async-signal-safe), while
 * the watcher exists. Sends coalesce: after a send, the callback runs at least
 * once on the loop's thread, in a later iteration. An async watcher keeps the
 * loop alive like any active watcher (unless unref'd). A send makes at most
 * one write() to the loop's wake-up fd and never allocates. ae_async_send()
 * returns 0, or AE_EINVAL for NULL or a watcher of another kind, without a
 * message (setting one is not async-signal-safe). */
typedef void (*ae_async_cb)(ae_watcher *w, void *arg);
AE_EXPORT ae_watcher *ae_async(ae_loop *loop, ae_async_cb cb, void *arg);
AE_EXPORT int ae_async_send(ae_watcher *w);

/* Loop hooks: cb runs once per iteration, just before the loop waits for
 * events (prepare; also before an AE_NOWAIT poll), or after the iteration's
 * event callbacks ran (check). They never keep the loop alive by themselves,
 * and do not count as events (idle watchers still run in an iteration in
 * which only hooks ran). On an adopted loop they fail with AE_ENOTSUP for
 * now: the host's native loop runs the iteration. */
AE_EXPORT ae_watcher *ae_prepare(ae_loop *loop, ae_idle_cb cb, void *arg);
AE_EXPORT ae_watcher *ae_check(ae_loop *loop, ae_idle_cb cb, void *arg);

/* An unref'd watcher does not keep ae_run() (or a condvar wait's deadlock
 * check) alive; ref undoes it. New watchers are ref'd. Both are idempotent
 * and change nothing for prepare and check watchers, which never count. */
AE_EXPORT void ae_watcher_unref(ae_watcher *w);
AE_EXPORT void ae_watcher_ref(ae_watcher *w);

/* Uniform pause and resume for every kind: a stopped watcher is inactive and
 * kept; start resumes io with its last events, a timer re-armed from ae_now()
 * with its after and interval, the other kinds as they were. A child that exits
 * while its watcher is stopped is reported when it is started again (from the
 * loop, never from inside ae_watcher_start()). Signals that arrive while a
 * signal watcher is stopped are missed (the disposition stays anyevent's);
 * async sends to a stopped watcher run its callback once it is started.
 * Stopping a stopped watcher, or starting one that is not stopped, does
 * nothing (except that start always re-arms a timer). ae_io_set() and
 * ae_timer_set() on a stopped watcher start it with the new settings.
 * Return 0, or a negative code (AE_EINVAL; io: what ae_io_set() can fail
 * with). */
AE_EXPORT int ae_watcher_stop(ae_watcher *w);
AE_EXPORT int ae_watcher_start(ae_watcher *w);

/* The watcher's user pointer, and replacing it. */
AE_EXPORT void *ae_watcher_arg(const ae_watcher *w);
AE_EXPORT void ae_watcher_set_arg(ae_watcher *w, void *arg);

/* ---- condition variables ----------------------------------------------- */

/* A condition variable on loop: a value that becomes ready once, by
 * ae_cv_send(), ae_cv_croak() or the begin/end count returning to zero.
 * Returns NULL on failure. */
AE_EXPORT ae_cv *ae_cv_new(ae_loop *loop);

/* Make the condvar ready with value. The first send or croak wins; later ones
 * are ignored and return AE_ESTATE. A callback set with ae_cv_cb() runs before
 * this returns. */
AE_EXPORT int ae_cv_send(ae_cv *cv, void *value);

/* Make the condvar ready with an error: ae_cv_recv() returns AE_ECROAKED and
 * ae_cv_error() returns a copy of message. */
AE_EXPORT int ae_cv_croak(ae_cv *cv, const char *message);

/* Run the loop until the condvar is ready, then store the sent value in *value
 * (if value is not NULL) and return 0, or AE_ECROAKED after a croak. Returns
 * at once if it is already ready. Returns AE_EDEADLK instead of blocking
 * forever when nothing is left that could make it ready (no active watcher),
 * and AE_ENOTSUP when called from inside a callback on a backend whose loop
 * cannot be run recursively (poll and select can; see docs/api.md). */
AE_EXPORT int ae_cv_recv(ae_cv *cv, void **value);

/* Count one more outstanding job. */
AE_EXPORT int ae_cv_begin(ae_cv *cv);

/* One job done; when the count returns to zero the condvar is sent (value
 * NULL). end without a matching begin fails with AE_ESTATE. */
AE_EXPORT int ae_cv_end(ae_cv *cv);

/* Set the callback run once the condvar is ready (at once if it already is).
 * cb NULL removes it. */
AE_EXPORT void ae_cv_cb(ae_cv *cv, void (*cb)(ae_cv *cv, void *arg), void *arg);

/* 1 if sent or croaked, else 0 (also for NULL or a pointer that is not a
 * live condvar, with the error set). */
AE_EXPORT int ae_cv_ready(const ae_cv *cv);

/* The croak message, or NULL if not croaked. Valid until ae_cv_free(). */
AE_EXPORT const char *ae_cv_error(const ae_cv *cv);

/* Free the condvar. NULL is ignored. Safe from inside its own callback. */
AE_EXPORT void ae_cv_free(ae_cv *cv);

#ifdef __cplusplus
}
#endif

#endif /* ANYEVENT_H */
