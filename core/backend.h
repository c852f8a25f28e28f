/*
 * The backend interface: what a loop implementation provides to the core.
 *
 * Small on purpose (after libevent's struct eventop and Redis's aeApi*): the
 * core keeps the watchers, the timer heap, signals, children and idle; a
 * backend only watches file descriptors, one per registration, and waits.
 *  - The core combines every io watcher on one fd into one registration and
 *    fans readiness out to them, so a backend never sees two registrations for
 *    one fd (libuv allows one uv_poll per fd, epoll one registration).
 *  - Per-fd backend memory (fd_data_size bytes) lives in the core's fd table,
 *    allocated once per fd and never moved, so a native watcher (ev_io,
 *    struct event, uv_poll_t) can live there.
 *  - Readiness is reported with the io_ready service from inside wait(), or
 *    from the native loop's own callbacks when the host program runs it.
 *  - Timers stay in the core (one heap, one ordering rule for every backend);
 *    an adopted loop needs just one native timer, armed by timer_update.
 *
 * The struct is versioned like sqlite3_vfs: abi_version first, struct_size
 * second, fields only ever appended. The core reads a field only if
 * struct_size covers it and abi_version is at least the one that added it.
 */
#ifndef AE_CORE_BACKEND_H
#define AE_CORE_BACKEND_H

#include <stddef.h>

#include "anyevent.h"

#define AE_BACKEND_ABI_VERSION 1

/* features */
#define AE_BACKEND_F_REENTRANT 1u /* wait() may be called from inside a callback it runs */

typedef struct ae_backend_ops {
    /* ---- version 1 ---- */
    unsigned abi_version;   /* AE_BACKEND_ABI_VERSION the backend was built for */
    unsigned struct_size;   /* sizeof(ae_backend_ops) the backend was built with */
    const char *name;       /* "poll", "libev", ...: what ae_loop_backend() says */
    size_t state_size;      /* per-loop state the core allocates (zeroed) */
    size_t fd_data_size;    /* per-fd state the core allocates (zeroed), never moved */
    unsigned features;      /* AE_BACKEND_F_* */

    /* Set up the state for a loop of the backend's own. Returns 0 or a
     * negative AE_E* code after setting the error message. */
    int (*init)(ae_loop *loop, void *state);

    /* Release everything init/adopt and the fd calls acquired. Every fd has
     * been updated to events 0 and finished (fd_fini) before. For an adopted
     * loop the native loop stays alive and usable. */
    void (*destroy)(ae_loop *loop, void *state);

    /* Optional (NULL: nothing to do). Called once when the core first sees
     * fd, before any fd_update for it, also for a watcher created paused:
     * reserve here whatever fd_update will need, so that fd_update (and with
     * it ae_io_set) never allocates. Returns 0 or a negative AE_E* code. */
    int (*fd_init)(ae_loop *loop, void *state, int fd, void *fd_data);

    /* Optional. The core forgets fd (the loop is being freed): release what
     * fd_init reserved. Interest is already 0. */
    void (*fd_fini)(ae_loop *loop, void *state, int fd, void *fd_data);

    /* The combined interest in fd changes from old_events to new_events
     * (AE_READ|AE_WRITE bits; 0 means remove). fd_data is that fd's private
     * memory. Must not call back into the core's dispatch. The core checked
     * that the fd was open when its watcher was created; an fd closed since
     * (the caller's error) must not crash the backend: fail here with
     * AE_EBADF, or report it with AE_ERROR through io_ready when noticed. No
     * system call the native library would not make for the same change.
     * Returns 0 or a negative AE_E* code (with a message); on failure the old
     * interest stays. Removing interest (new_events 0) must not fail for a
     * closed fd. A change between two non-zero masks should use the native
     * in-place operation (an epoll_ctl MOD, not a DEL and an ADD). */
    int (*fd_update)(ae_loop *loop, void *state, int fd, void *fd_data, int old_events, int new_events);

    /* Wait at most timeout seconds (< 0: without limit, 0: do not block) for
     * fd readiness and report each ready fd with io_ready. With
     * AE_BACKEND_F_REENTRANT it may be re-entered from inside a callback it
     * dispatched. Returns the number of fds reported (0 if unknown), or a
     * negative AE_E* code (EINTR is not an error: return 0). */
    int (*wait)(ae_loop *loop, void *state, double timeout);

    /* Optional: the native loop underneath (struct ev_loop *, ...). */
    void *(*native)(void *state);

    /* Optional: set up the state around a native loop the host program owns
     * and runs itself (ae_loop_adopt). Requires timer_update. */
    int (*adopt)(ae_loop *loop, void *state, void *native);

    /* Adopted loops only: arm the backend's one native timer to call the
     * core's expire service after timeout seconds (0: as soon as possible,
     * < 0: disarm). Replaces any earlier arming. Must not allocate. */
    void (*timer_update)(ae_loop *loop, void *state, double timeout);
} ae_backend_ops;

/* What the core offers a backend. Built-in backends may call the functions
 * below directly; a plugin gets this table from its entry function, because
 * a program may link the core statically, leaving no symbols to bind to. */
typedef struct ae_backend_services {
    /* ---- version 1 ---- */
    unsigned version;     /* AE_BACKEND_ABI_VERSION of the core */
    unsigned struct_size; /* sizeof(ae_backend_services) of the core */

    /* Report that fd is ready with revents (AE_READ, AE_WRITE, or AE_ERROR if
     * the fd is no longer valid): runs the callbacks of its io watchers.
     * Returns 0 if a callback freed the loop (possible only when the host
     * runs the native loop): the backend's state is gone, touch nothing. */
    int (*io_ready)(ae_loop *loop, int fd, int revents);

    /* The native timer armed by timer_update fired: run due timers (and idle
     * watchers), then re-arm through timer_update. */
    void (*expire)(ae_loop *loop);

    /* Record the calling thread's error message; returns code. */
    int (*set_error)(int code, const char *fmt, ...)
#if defined(__GNUC__)
        __attribute__((format(printf, 2, 3)))
#endif
        ;

    /* The same for a failed system call, from errno: AE_ENOMEM, AE_EBADF or
     * AE_ESYS. */
    int (*set_errno)(const char *what);
} ae_backend_services;

/* A plugin (a shared module named anyevent-NAME.so) exports this function:
 * it keeps the services table and returns its operations table, or NULL
 * (after services->set_error) if it cannot run here. */
#define AE_BACKEND_ENTRY_SYMBOL "anyevent_backend_entry"
typedef const ae_backend_ops *(*ae_backend_entry_fn)(const ae_backend_services *services);

/* The services, for built-in backends. */
int ae_backend_io_ready(ae_loop *loop, int fd, int revents);
void ae_backend_expire(ae_loop *loop);
int ae__set_error(int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
int ae__set_errno(const char *what);

/* Built-in backends (pureselect/). */
extern const ae_backend_ops ae__backend_poll;
extern const ae_backend_ops ae__backend_select;

#endif /* AE_CORE_BACKEND_H */
