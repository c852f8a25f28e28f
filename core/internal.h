/* The core's private structures, shared by the files of core/. */
#ifndef AE_CORE_INTERNAL_H
#define AE_CORE_INTERNAL_H

#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#include "anyevent.h"
#include "backend.h"

#ifndef NSIG
#define NSIG 65
#endif

/* ae_loop.native_frame */
enum { AE_NATIVE_RUN = 1, AE_NATIVE_ONCE };

enum ae_kind {
    AE_KIND_IO = 1,
    AE_KIND_TIMER,
    AE_KIND_SIGNAL,
    AE_KIND_CHILD,
    AE_KIND_IDLE,
    AE_KIND_ASYNC,
    AE_KIND_PREPARE,
    AE_KIND_CHECK
};

#define AE_WATCHER_MAGIC 0x61657774u /* "aewt": tells a live watcher from garbage */
#define AE_CV_MAGIC 0x61656376u

typedef struct ae_child_record {
    pid_t pid;
    int status;
} ae_child_record;

/* An exit seen while its watcher was stopped, kept by the loop until the
 * watcher is started (core/child.c). */
typedef struct ae_child_held {
    struct ae_watcher *w;
    ae_child_record rec;
} ae_child_held;

/* A doubly linked list of watchers with a tail, so that watchers are called
 * in creation order. */
typedef struct ae_list {
    ae_watcher *head, *tail;
} ae_list;

/* A watcher's slot in its loop's slab holds the common part and only its
 * kind's member of u (ae__watcher_size): code reads and writes u.timer of
 * a timer only, never the whole struct. */
struct ae_watcher {
    uint32_t magic; /* AE_WATCHER_MAGIC while live, 0 once freed (core/slab.c) */
    uint8_t kind;
    bool active;   /* counts in loop->active */
    bool internal; /* the core's own (wake-up fd): never counts */
    bool unref;    /* active, but does not keep the loop alive (ae_watcher_unref) */
    bool stopped;  /* paused by ae_watcher_stop(), until ae_watcher_start() */
    struct {       /* an io watcher's events, in what would be padding: io needs no u */
        uint8_t events;         /* AE_READ | AE_WRITE */
        uint8_t stopped_events; /* what ae_watcher_start() restores */
    } io;
    union { /* the kind's 32-bit field, here in what would be padding, not in u */
        int fd;              /* io */
        uint32_t heap_index; /* an armed timer: 1-based heap slot of the ring it leads; 0: it leads none */
        int signum;          /* signal */
        pid_t pid;           /* child: 0 for any */
    } k;
    ae_loop *loop;
    void *arg;
    union {
        ae_io_cb io;
        ae_timer_cb timer;
        ae_signal_cb signal;
        ae_child_cb child;
        ae_idle_cb idle; /* also prepare and check */
        ae_async_cb async;
    } cb;
    /* In its fd's, signal's, child or idle list; an armed timer: in its
     * deadline's ring (core/timer.c); a freed slot: in the free list. An
     * io watcher's slot ends before prev: an fd's list is linked through
     * next only (core/io.c). */
    ae_watcher *next, *prev;
    union {
        struct {
            double interval;
            double after;      /* as last armed: ae_watcher_start() arms it so again */
            uint64_t seq;      /* arming order: tells timers of equal deadlines apart */
        } timer;              /* armed: in a ring (next is not NULL) */
        struct {
            bool native;      /* the backend watches the pid (child_start) */
            bool listed;      /* its exit is looked for (written under child_lock: reapers read it) */
            bool replay_wake; /* holds the wake-up fd in use until held exits are reported */
            uint32_t held;    /* its exits in loop->child_held, seen while stopped, reported at start */
        } child;
        struct {
            atomic_bool sent; /* ae_async_send() since the callback last ran */
        } async;
    } u;
};

/* A loop's watcher memory of one kind (core/slab.c): pages of slots of
 * ae__watcher_size(kind) bytes. */
typedef struct ae_slab_page {
    struct ae_slab_page *next;
    uint32_t cap, used; /* slots; slots[0..used) have been handed out once */
    _Alignas(ae_watcher) unsigned char slots[];
} ae_slab_page;

typedef struct ae_slab {
    ae_slab_page *pages; /* newest first */
    ae_watcher *free_head, *free_tail;
} ae_slab;

/* The bytes a watcher of this kind takes: the common part and its member of
 * u, rounded to the struct's alignment. Constant where kind is. */
#define AE__WATCHER_SIZE_OF(member)                                                                        \
    ((offsetof(ae_watcher, u) + sizeof(((ae_watcher *)0)->u.member) + _Alignof(ae_watcher) - 1) /          \
     _Alignof(ae_watcher) * _Alignof(ae_watcher))
static inline size_t ae__watcher_size(enum ae_kind kind)
{
    switch (kind) {
    case AE_KIND_TIMER: return AE__WATCHER_SIZE_OF(timer);
    case AE_KIND_CHILD: return AE__WATCHER_SIZE_OF(child);
    case AE_KIND_ASYNC: return AE__WATCHER_SIZE_OF(async);
    case AE_KIND_IO: return offsetof(ae_watcher, prev); /* its fd in k, its events in io, no prev */
    case AE_KIND_SIGNAL: /* its signum is in k */
    case AE_KIND_IDLE:
    case AE_KIND_PREPARE:
    case AE_KIND_CHECK: break;
    }
    return offsetof(ae_watcher, u); /* no member of u */
}
enum { AE__KINDS = AE_KIND_CHECK + 1 };

/* One fd's io watchers and the backend's private bytes for it, inline in a
 * page of the fd table (core/io.c), made on first use of the fd and kept
 * until the loop is freed, so that the backend memory never moves. */
typedef struct ae_fd {
    /* The fd's watchers in creation order, through next (core/io.c
     * fd_append): one pointer, so that the entry's own part is 16 bytes and
     * the backend's starts right after it. */
    ae_watcher *head;
    int events; /* the combined interest registered with the backend */
    bool used;  /* fd_init has run */
    /* Aligned as the backend asks (fd_data_align), at least as ae_fd: the
     * entries are that far apart (core/io.c fd_stride). */
    _Alignas(ae_watcher *) unsigned char backend_data[];
} ae_fd;

/* A timer heap entry: one per distinct deadline armed, leading a ring of the
 * timers due then, in arming order (core/timer.c). The deadline is copied in
 * so that comparisons stay in the array. */
typedef struct ae_heap_entry {
    double deadline; /* monotonic seconds */
    ae_watcher *w;   /* the ring's first timer */
} ae_heap_entry;

/* Keeps a list walk valid while callbacks unlink watchers: unlinking the
 * watcher a cursor points at advances the cursor. */
typedef struct ae_cursor {
    ae_watcher *next;
    ae_watcher *last; /* the list's tail when the walk began: watchers created later wait for the next walk */
    struct ae_cursor *up;
} ae_cursor;

/* This loop's part of the process-wide signal state, read by the signal
 * handler (any thread) through atomics only. */
typedef struct ae_sig_node {
    struct ae_sig_node *_Atomic next;
    atomic_int wake_fd;
    atomic_uint watching[NSIG]; /* 1 while the loop has signal watchers of it, +1 for child watching (SIGCHLD) */
    atomic_bool pending[NSIG];
    atomic_bool any_pending;
    bool linked;
} ae_sig_node;


struct ae_loop {
    const ae_backend_ops *ops;
    void *backend_state;
    bool adopted;          /* the host program runs the native loop */
    bool native_iter;      /* the backend has run(): the native loop owns the iteration */
    bool iter_lazy;        /* native_iter, our own loop, and the backend calls the iteration
                            * service only while iter_hook is on (iteration_hook) */
    bool iter_hook;        /* iter_lazy: the service was asked for */
    bool iter_hook_once;   /* iter_lazy: asked for until the end of this iteration */
    bool native_idle;      /* native_iter, our own loop, and the backend has idle_update */
    bool idle_ran;         /* native_idle: the idle_run service ran in this iteration */
    bool iter_marked;      /* native_iter: iteration_begin marked this iteration's start */
    unsigned iter_count;   /* iter_lazy: the backend's iterations() when last looked at */
    ae_loop *native_up;    /* the next loop in run() on this thread (for fork()) */
    uint8_t native_frame;  /* the innermost run() under way: 0 none, AE_NATIVE_RUN, AE_NATIVE_ONCE */
    bool expiring;         /* inside the expire service: it re-arms the native timer at its end */
    int native_error;      /* a failure found by the iteration service, for run()'s caller */
    unsigned fork_gen;     /* the fork generation the loop's kernel state belongs to */
    int fork_error;        /* a failed renewal after fork(): the loop refuses to run */
    char fork_message[320];
    double armed_deadline; /* adopted or native_iter: what timer_update was last asked for */

    double now_wall, now_mono;
    double wall_offset; /* epoch minus monotonic time, as last measured */
    double wall_synced; /* monotonic time of that measurement */
    size_t active; /* watchers that keep ae_run() going */

    unsigned char **fd_pages; /* of AE_FD_PAGE entries each, or NULL (core/io.c) */
    size_t fd_pages_len;
    size_t fd_stride; /* bytes per entry: ae_fd and the backend's fd_data, aligned */

    ae_slab slabs[AE__KINDS]; /* every watcher's memory, by kind */

    size_t timer_count;  /* heap_cap is at least this: arming never allocates */
    ae_heap_entry *heap; /* 4-ary, 0-based */
    size_t heap_len, heap_cap;
    ae_watcher *timer_last; /* leads the ring armed into last, or NULL */
    uint64_t timer_seq;

    ae_list idle;
    size_t idle_count; /* started idle watchers */
    ae_list asyncs, prepares, checks;
    size_t prepare_count, check_count; /* of the hooks, started ones */
    bool native_prepare_on, native_check_on; /* adopted: the backend's native hooks are on (hooks_update) */
    atomic_bool async_pending;         /* some async watcher of the loop was sent to */
    bool child_replay;                 /* a started child watcher holds exits seen while stopped */
    ae_list signals[NSIG];
    bool sig_native[NSIG]; /* the backend catches this signal for the loop */
    /* Every child watcher of the loop. A reaper on any thread walks it, so
     * its links, child_count and each watcher's u.child.listed change only
     * under the process-wide child lock (core/child.c). */
    ae_list children;
    size_t child_count;   /* listed child watchers: the loop is in the reapers' list of loops */
    ae_loop *child_loop_next, *child_loop_prev; /* that list */
    size_t child_sigchld; /* of the listed ones, those the core watches through SIGCHLD */
    ae_child_held *child_held; /* exits held for stopped watchers, oldest first */
    size_t child_held_len, child_held_cap;

    ae_cursor *cursors;
    int run_depth;   /* nested ae_run() */
    int busy;        /* entries into ae_run/ae_run_once/ae_cv_recv under way */
    bool break_requested;
    bool free_requested;
    bool dispatch_inline; /* busy and not free_requested: io events take the short way (core/io.c) */
    bool time_stale; /* a new iteration began: the time is read again at its first use */
    bool time_used;  /* native_iter: the last iteration read the time */
    uint64_t dispatched; /* callbacks run; tells whether idle may run */
    uint64_t expire_mark; /* adopted: dispatched at the end of the last expiry */
    uint64_t iter_mark;   /* native_iter: dispatched when the native iteration began */
    uint64_t expiries;    /* calls of the expire service that ran (timers or idle) */
    uint64_t iter_seq;    /* native_iter: timer_seq then; later timers wait for the next iteration */

    /* Wake-up fd: signals, reaped children, other threads. */
    int wake_rfd, wake_wfd; /* one eventfd, or a pipe's two ends */
    ae_watcher *wake_watcher;
    unsigned wake_users; /* signal watches (children included) that need it */
    ae_sig_node sig;

    /* Reaped children for this loop, filled by any loop's reaper; guarded by
     * the process-wide child lock. */
    ae_child_record *inbox;
    size_t inbox_head, inbox_len, inbox_cap;
    atomic_bool inbox_pending;
    atomic_bool reap_requested; /* a new child watcher: look for zombies */

    ae_cv *cvs; /* every condvar of the loop, freed with it */
    struct ae_free_hook *free_hooks; /* layers' cleanups, run first by ae_loop_free */
};

struct ae_cv {
    uint32_t magic;
    ae_loop *loop;
    ae_cv *next, *prev;
    bool ready;
    bool free_requested; /* freed while an ae_cv_recv() on it was waiting */
    int recv_depth;
    int count;
    void *value;
    char *error;
    void (*cb)(ae_cv *, void *);
    void *cb_arg;
};

/* error.c (ae__set_error and ae__set_errno are in backend.h) */
void ae__error_reset(void);

/* plugin.c: load anyevent-NAME.so; where gets its path, reason why not. */
const ae_backend_ops *ae__plugin_load(const char *name, char *where, size_t where_size, char *reason,
                                      size_t reason_size);
bool ae__debug(void);
bool ae__in_build_tree(void); /* this library runs from its build tree (AE_BUILD_ROOT) */

/* registry.c */
int ae__backend_open(ae_loop *loop, const char *name, void *native); /* sets ops and state */
int ae__backend_check(const ae_backend_ops *ops);
const char *ae__host_library(void); /* the backend of the event library the program uses, or NULL */
/* The names of the installed plugins (ANYEVENT_PLUGIN_PATH, the plugin
 * folder, the build tree's), each once; returns how many (at most max). */
#define AE_PLUGIN_NAME_MAX 65
size_t ae__plugin_scan(char (*names)[AE_PLUGIN_NAME_MAX], size_t max);
void *ae__backend_default_native(const char *name);

/* atfork.c: the process-wide locks across fork(). Each module that has one
 * takes it at PREPARE and releases it at PARENT and CHILD. */
enum ae_fork_phase { AE_FORK_PREPARE, AE_FORK_PARENT, AE_FORK_CHILD };
extern atomic_uint ae__fork_generation; /* incremented in the child of each fork() */
void ae__atfork_init(void);                            /* registers the handlers once */
void ae__default_atfork(enum ae_fork_phase phase);     /* loop.c */
void ae__registry_atfork(enum ae_fork_phase phase);    /* registry.c */
void ae__child_atfork(enum ae_fork_phase phase);       /* child.c */
void ae__signal_atfork(enum ae_fork_phase phase);      /* signal.c */

/* loop.c */
int ae__loop_fork_check(ae_loop *loop);
double ae__mono(void);
void ae__time_refresh(ae_loop *loop);
void ae__loop_enter(ae_loop *loop);
void ae__loop_leave(ae_loop *loop);
int ae__loop_reenter_check(ae_loop *loop, const char *fn);
int ae__run_once_entered(ae_loop *loop); /* one iteration; the caller entered the loop */

/* loop->active counts the active watchers that are not unref'd (inline:
 * every create, fire and free). */
static inline void ae__watcher_activate(ae_watcher *w)
{
    if (!w->active && !w->internal) {
        w->active = true;
        if (!w->unref)
            w->loop->active++;
    }
}

void ae__loop_drained(ae_loop *loop);

static inline void ae__watcher_deactivate(ae_watcher *w)
{
    if (w->active) {
        w->active = false;
        if (!w->unref && --w->loop->active == 0 && w->loop->iter_lazy)
            ae__loop_drained(w->loop);
    }
}


/* slab.c */
ae_watcher *ae__slab_take_slow(ae_loop *loop, enum ae_kind kind); /* a freed slot or a new page; NULL, error set */
void ae__watcher_release(ae_watcher *w); /* stopped already; magic becomes 0 */

/* A zeroed watcher of kind with magic set, or NULL with the error set.
 * Inline, so that the size of the slot is a constant at each caller and
 * zeroing it is a few stores. */
static inline ae_watcher *ae__watcher_alloc(ae_loop *loop, enum ae_kind kind, void *arg)
{
    ae_slab *s = &loop->slabs[kind];
    ae_slab_page *p = s->pages;
    size_t size = ae__watcher_size(kind);
    ae_watcher *w;
    if (__builtin_expect(p && p->used < p->cap, 1)) {
        w = (ae_watcher *)(void *)(p->slots + (size_t)p->used++ * size);
    } else {
        w = ae__slab_take_slow(loop, kind);
        if (!w)
            return NULL;
    }
    memset(w, 0, size);
    w->magic = AE_WATCHER_MAGIC;
    w->kind = (uint8_t)kind;
    w->loop = loop;
    w->arg = arg;
    return w;
}
void ae__slab_each_live(ae_loop *loop, void (*fn)(ae_watcher *w));
void ae__slab_free(ae_loop *loop);

/* loop.c */

/* The checks at the top of every API call: true, or false with the error
 * set by the out-of-line part. kind 0 accepts any kind. */
bool ae__loop_bad(const char *fn);
bool ae__watcher_bad(const ae_watcher *w, const char *fn);

static inline bool ae__loop_ok(const ae_loop *loop, const char *fn)
{
    return loop ? true : ae__loop_bad(fn);
}

static inline bool ae__watcher_ok(const ae_watcher *w, enum ae_kind kind, const char *fn)
{
    if (w && w->magic == AE_WATCHER_MAGIC && (!kind || w->kind == kind))
        return true;
    return ae__watcher_bad(w, fn);
}

int ae__wake_open(ae_loop *loop);
void ae__wake(ae_loop *loop);
void ae__wake_pending_run(ae_loop *loop); /* after a wait: signals and children it missed */
int ae__wake_use(ae_loop *loop, bool use);
void ae__reschedule_to(ae_loop *loop, double want);
/* Keep the native timer armed for what the core needs next (loop.c): at
 * once (-INFINITY) while idle watchers exist (unless the backend runs them:
 * native_idle), else the first timer deadline (INFINITY: none). Inline, as
 * most calls find it armed for that already (idle watchers re-arm it at
 * every iteration). */
static inline void ae__reschedule(ae_loop *loop)
{
    double want = loop->idle_count && !loop->native_idle ? -(double)INFINITY
                  : loop->heap_len                       ? loop->heap[0].deadline
                                                         : (double)INFINITY;
    if (want != loop->armed_deadline)
        ae__reschedule_to(loop, want);
}

/* Layers built on the watcher API (fork/, stream/) keep per-loop state and
 * free it with the loop: fn(arg) runs once, first thing in the loop's
 * destruction (watchers still valid, no callback may run), newest first.
 * ae__loop_layer() finds the arg registered with fn, or NULL; removal of a
 * pair that is not registered does nothing. */
typedef void ae__loop_free_fn(void *arg);
int ae__loop_on_free(ae_loop *loop, ae__loop_free_fn *fn, void *arg);
void ae__loop_on_free_remove(ae_loop *loop, ae__loop_free_fn *fn, void *arg);
void *ae__loop_layer(const ae_loop *loop, ae__loop_free_fn *fn);
bool ae__loop_freeing(const ae_loop *loop); /* ae_loop_free() was called: run no more callbacks */

/* iter_lazy: a new native iteration began since the core last looked (the
 * time goes stale, timers armed from now on wait for the next one). */
void ae__iter_sync(ae_loop *loop);
/* iter_lazy: the iteration service is needed from this iteration on. */
void ae__iter_hook_update(ae_loop *loop);

/* The loop time, read again if the iteration has not needed it yet. */
static inline double ae__now_mono(ae_loop *loop)
{
    if (loop->iter_lazy && loop->native_frame)
        ae__iter_sync(loop);
    if (loop->time_stale)
        ae__time_refresh(loop);
    return loop->now_mono;
}

/* list.c */

/* Append w (inline: every watcher creation). */
static inline void ae__list_append(ae_list *list, ae_watcher *w)
{
    w->next = NULL;
    w->prev = list->tail;
    if (list->tail)
        list->tail->next = w;
    else
        list->head = w;
    list->tail = w;
}

void ae__list_unlink(ae_loop *loop, ae_list *list, ae_watcher *w);
/* Keeps the cursors right as w leaves its list; before: the watcher before
 * it in the list, or NULL. */
void ae__cursors_unlink(ae_loop *loop, ae_watcher *w, ae_watcher *before);

/* Start a walk from first to last; every dispatch of a list holds one
 * (inline: they run for every event). */
static inline void ae__cursor_push_range(ae_loop *loop, ae_cursor *c, ae_watcher *first, ae_watcher *last)
{
    c->next = first;
    c->last = last;
    c->up = loop->cursors;
    loop->cursors = c;
}

static inline void ae__cursor_push(ae_loop *loop, ae_cursor *c, const ae_list *list)
{
    ae__cursor_push_range(loop, c, list->head, list->tail);
}

/* Cursors nest strictly: the one popped is always the innermost. */
static inline void ae__cursor_pop(ae_loop *loop, ae_cursor *c) { loop->cursors = c->up; }

/* The walk's next watcher, or NULL at the end: after the list's last
 * watcher when the walk began (watchers are appended at creation only, so
 * a callback that replaces itself cannot keep one dispatch going for ever),
 * or when the loop is being freed. ae__list_unlink keeps next and last on
 * watchers still linked. */
static inline ae_watcher *ae__cursor_take(ae_loop *loop, ae_cursor *c)
{
    ae_watcher *w = c->next;
    if (!w || loop->free_requested)
        return NULL;
    c->next = w == c->last ? NULL : w->next;
    return w;
}

/* io.c */
void ae__io_stop(ae_watcher *w);
int ae__io_pause(ae_watcher *w, bool stop);
void ae__fds_fini(ae_loop *loop); /* fd_fini for every fd; before ops->destroy */
void ae__fds_free(ae_loop *loop); /* the table's memory; after ops->destroy, which may still read fd_data */
int ae__fds_reannounce(ae_loop *loop); /* fd_update from 0 for every fd with interest */
int ae__io_set_events(ae_watcher *w, int events);
int ae__io_register(ae_loop *loop, int fd, ae_watcher *w, int events);

/* timer.c */
void ae__timer_stop(ae_watcher *w);
int ae__timer_pause(ae_watcher *w, bool stop);
double ae__timer_next(ae_loop *loop); /* seconds to the first deadline, < 0 if none */
void ae__timers_free(ae_loop *loop);
int ae__timers_run(ae_loop *loop, uint64_t seq_limit); /* callbacks run */

/* signal.c */
int ae__signal_watch(ae_loop *loop, int signum, bool native);
void ae__signal_unwatch(ae_loop *loop, int signum, bool native);
void ae__signal_stop(ae_watcher *w);
void ae__signal_pause(ae_watcher *w, bool stop);
void ae__signals_dispatch(ae_loop *loop);
void ae__signal_loop_free(ae_loop *loop);
void ae__signal_handlers_wait(void); /* until no handler runs on any thread */

/* child.c */
void ae__child_stop(ae_watcher *w);
void ae__child_pause(ae_watcher *w, bool stop);
void ae__children_reap(void);
void ae__children_dispatch(ae_loop *loop);
void ae__child_loop_free(ae_loop *loop);
void ae__child_reapers_wait(void); /* until no reaper is delivering */

/* idle.c */
void ae__idle_stop(ae_watcher *w);
int ae__idle_run(ae_loop *loop);
void ae__idle_pause(ae_watcher *w, bool stop); /* ae_watcher_stop/start */

/* async.c */
void ae__async_stop(ae_watcher *w);
void ae__async_pause(ae_watcher *w, bool stop);
void ae__async_dispatch(ae_loop *loop);

/* hooks.c: prepare and check watchers */
void ae__hook_stop(ae_watcher *w);
int ae__hook_pause(ae_watcher *w, bool stop);
void ae__hooks_run(ae_loop *loop, ae_list *hooks);

/* cv.c */
void ae__cvs_free(ae_loop *loop);

#endif /* AE_CORE_INTERNAL_H */
