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
 *  - Readiness is reported with ae_backend_io_ready() from inside wait().
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
    const char *name;       /* "poll", "select", ...: what ae_loop_backend() says */
    size_t state_size;      /* per-loop state the core allocates (zeroed) */
    size_t fd_data_size;    /* per-fd state the core allocates (zeroed), never moved */
    unsigned features;      /* AE_BACKEND_F_* */

    /* Set up the state. Returns 0 or a negative AE_E* code after setting the
     * error message with ae__set_error(). */
    int (*init)(ae_loop *loop, void *state);

    /* Release everything init and fd_update acquired. Every fd has been
     * updated to events 0 before this is called. */
    void (*destroy)(ae_loop *loop, void *state);

    /* Optional (NULL: nothing to do). Called once when the core first sees
     * fd, before any fd_update for it, also for a watcher created paused:
     * reserve here whatever fd_update will need, so that fd_update (and with
     * it ae_io_set) never allocates. Returns 0 or a negative AE_E* code. */
    int (*fd_init)(ae_loop *loop, void *state, int fd, void *fd_data);

    /* The combined interest in fd changes from old_events to new_events
     * (AE_READ|AE_WRITE bits; 0 means remove). fd_data is that fd's private
     * memory. Must not call back into the core's dispatch. Going from 0 to
     * any interest it must fail with AE_EBADF for an fd that is not open.
     * Returns 0 or a negative AE_E* code (with a message); on failure the old
     * interest stays. Removing interest (new_events 0) must not fail for a
     * closed fd. */
    int (*fd_update)(ae_loop *loop, void *state, int fd, void *fd_data, int old_events, int new_events);

    /* Wait at most timeout seconds (< 0: without limit, 0: do not block) for
     * fd readiness and report each ready fd with ae_backend_io_ready(). May be
     * re-entered from inside a callback it dispatched. Returns the number of
     * fds reported, or a negative AE_E* code (EINTR is not an error: return 0). */
    int (*wait)(ae_loop *loop, void *state, double timeout);
} ae_backend_ops;

/* Core services for backends. */

/* Report that fd is ready with revents (AE_READ, AE_WRITE, or AE_ERROR if the
 * fd is no longer valid). Runs the callbacks of the fd's io watchers. */
AE_EXPORT void ae_backend_io_ready(ae_loop *loop, int fd, int revents);

/* Record the calling thread's error message; returns code for convenience. */
AE_EXPORT int ae__set_error(int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* The same for the failed system call `what`, from errno (kept); returns
 * AE_ENOMEM, AE_EBADF or AE_ESYS. */
AE_EXPORT int ae__set_errno(const char *what);

/* Built-in backends (pureselect/). */
extern const ae_backend_ops ae__backend_poll;
extern const ae_backend_ops ae__backend_select;

#endif /* AE_CORE_BACKEND_H */
