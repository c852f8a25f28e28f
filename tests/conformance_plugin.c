/*
 * The conformance checks of what the plugin guide asks of a backend beyond
 * the user API's contract (tests/conformance.c): adoption of a host's native
 * loop, run by the host through the plugin's test host
 * (anyevent_backend_test_host, <anyevent/backend.h>), with timer_update's
 * arming and re-arming and a loop freed from the host's callbacks; waits
 * that never end before their timeout; nested waits on a backend that says
 * it can nest; fork(); and no allocation per interest change or event. They
 * are part of the one suite ae-conformance runs (docs/conformance.md).
 */
#include <dlfcn.h>
#include <limits.h>
#include <link.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "anyevent.h"
#include "anyevent/backend.h"
#include "conformance.h"

static const char *backend;      /* a name or a plugin file's path */
static const char *backend_name; /* what the backend calls itself */

void conformance_plugin_configure(const char *given, const char *own_name)
{
    backend = given;
    backend_name = own_name;
}

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static ae_loop *new_loop(void)
{
    ae_loop *loop = ae_loop_new(backend);
    if (!loop)
        fail_msg("ae_loop_new(%s): %s", backend, ae_last_error());
    return loop;
}

static void cb_count_timer(ae_watcher *w, void *arg)
{
    (void)w;
    (*(int *)arg)++;
}

/* Reads the byte that made the fd readable, and counts. */
struct reader {
    int fd;
    int calls;
};

static void cb_read_byte(ae_watcher *w, int revents, void *arg)
{
    (void)w;
    (void)revents;
    struct reader *r = arg;
    char c;
    if (read(r->fd, &c, 1) == 1)
        r->calls++;
}

/* ---- allocation counting ---------------------------------------------------
 * The executable's malloc wins over the C library's, in every shared object
 * the process loads (the plugin and its native library included). Not in
 * sanitizer builds, whose allocator must see every block: the check that
 * needs the count then says it cannot count, and checks nothing. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define COUNT_ALLOCS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define COUNT_ALLOCS 0
#endif
#endif
#ifndef COUNT_ALLOCS
#define COUNT_ALLOCS 1
#endif

static atomic_long allocs;

#if COUNT_ALLOCS
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);

void *malloc(size_t n)
{
    atomic_fetch_add_explicit(&allocs, 1, memory_order_relaxed);
    return __libc_malloc(n);
}

void *calloc(size_t n, size_t m)
{
    atomic_fetch_add_explicit(&allocs, 1, memory_order_relaxed);
    return __libc_calloc(n, m);
}

void *realloc(void *p, size_t n)
{
    atomic_fetch_add_explicit(&allocs, 1, memory_order_relaxed);
    return __libc_realloc(p, n);
}
#endif

/* Whether allocations are counted in this process: not in a sanitizer
 * build, nor where a memory checker replaced malloc (valgrind). */
static bool allocs_counted(void)
{
    long before = atomic_load(&allocs);
    void *volatile p = malloc(16);
    free(p);
    return atomic_load(&allocs) != before;
}

/* ---- the test host -------------------------------------------------------- */

/* Finds the loaded object whose file is the plugin under test. */
struct plugin_search {
    const char *want; /* an absolute path, or the file name anyevent-NAME.so */
    char path[PATH_MAX];
};

static int match_plugin(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    struct plugin_search *ps = arg;
    const char *name = info->dlpi_name;
    if (!name || !*name)
        return 0;
    const char *base = strrchr(name, '/');
    base = base ? base + 1 : name;
    if (strcmp(name, ps->want) == 0 || (ps->want[0] != '/' && strcmp(base, ps->want) == 0)) {
        snprintf(ps->path, sizeof ps->path, "%s", name);
        return 1;
    }
    return 0;
}

/* The backend's test host (NULL if its plugin exports none, or it is built
 * in). The plugin is found among the loaded objects (a loop on it exists):
 * by the path given, or by its file name. Not through ae_backends(), which
 * would load every installed plugin. */
static const ae_backend_test_host *find_test_host(void)
{
    struct plugin_search ps = {.path = ""};
    char file[300];
    if (backend[0] == '/') {
        ps.want = backend;
    } else {
        snprintf(file, sizeof file, "anyevent-%s.so", backend);
        ps.want = file;
    }
    if (!dl_iterate_phdr(match_plugin, &ps))
        return NULL;
    const char *path = ps.path;
    void *handle = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
    if (!handle)
        fail_msg("%s is loaded, yet dlopen(RTLD_NOLOAD) does not find it: %s", path, dlerror());
    ae_backend_test_host_fn fn;
    *(void **)&fn = dlsym(handle, AE_BACKEND_TEST_HOST_SYMBOL);
    const ae_backend_test_host *host = fn ? fn() : NULL;
    dlclose(handle); /* the core's reference keeps it loaded */
    if (fn && (!host || host->version < 3 ||
               host->struct_size < offsetof(ae_backend_test_host, loop_free) + sizeof host->loop_free || !host->loop_new ||
               !host->run_once || !host->loop_free))
        fail_msg("%s: %s() returned %s", path, AE_BACKEND_TEST_HOST_SYMBOL,
                 host ? "an incomplete table (version 3 or later, with loop_new, run_once and loop_free)" : "NULL");
    return host;
}

typedef struct adopted {
    const ae_backend_test_host *host;
    void *native;
    ae_loop *loop;
} adopted;

/* A native loop made by the plugin's test host, adopted. false: the backend
 * has no native loop, or does not adopt one: nothing to check. */
static bool adopt_setup(adopted *a)
{
    memset(a, 0, sizeof *a);
    ae_loop *own = new_loop();
    bool has_native = ae_loop_native(own) != NULL;
    ae_loop_free(own);
    a->host = find_test_host();
    if (!a->host) {
        if (!has_native) {
            print_message("the %s backend has no native loop: no adoption to check\n", backend_name);
            return false;
        }
        fail_msg("the %s backend has a native loop (ae_loop_native), but its plugin exports no %s(): its "
                 "adoption cannot be checked (docs/plugin-guide.md, \"The test host\")",
                 backend_name, AE_BACKEND_TEST_HOST_SYMBOL);
    }
    a->native = a->host->loop_new();
    if (!a->native)
        fail_msg("the test host's loop_new() returned NULL");
    a->loop = ae_loop_adopt(backend, a->native);
    if (!a->loop) {
        int code = ae_last_error_code();
        if (code == AE_ENOTSUP) {
            print_message("the %s backend does not adopt (%s): no adoption to check\n", backend_name, ae_last_error());
            a->host->loop_free(a->native);
            return false;
        }
        fail_msg("ae_loop_adopt(%s, the test host's loop): %s", backend, ae_last_error());
    }
    assert_string_equal(ae_loop_backend(a->loop), backend_name);
    return true;
}

static void adopt_teardown(adopted *a)
{
    ae_loop_free(a->loop);
    a->host->loop_free(a->native);
}

/* One iteration of the host's own loop: anyevent is not called. */
static void host_iterate(adopted *a, int block)
{
    if (a->host->run_once(a->native, block) < 0)
        fail_msg("the test host's run_once(block %d) failed", block);
}

/* The adopted loop is the host's: ae_loop_native gives the host's native
 * loop, and an io watcher and a timer fire inside the host's own
 * iterations (io through the native loop's callbacks, the timer through
 * timer_update's native timer), the timer not early. */
struct when {
    double at;
    int calls;
};

static void cb_when(ae_watcher *w, void *arg)
{
    (void)w;
    struct when *t = arg;
    t->at = mono();
    t->calls++;
}

void test_adopt_watchers_fire_in_host_loop(void **state)
{
    (void)state;
    adopted a;
    if (!adopt_setup(&a))
        return;
    assert_ptr_equal(ae_loop_native(a.loop), a.native);
    int p[2];
    assert_int_equal(pipe(p), 0);
    struct reader r = {p[0], 0};
    assert_non_null(ae_io(a.loop, p[0], AE_READ, cb_read_byte, &r));
    assert_int_equal(write(p[1], "x", 1), 1);
    struct when t = {0, 0};
    /* The deadline counts from the loop's cached time: read the clock
     * first and refresh the cache after it, so that the deadline is at
     * least start + 0.02 however long ago the loop last read the clock. */
    double start = mono();
    ae_now_update(a.loop);
    assert_non_null(ae_timer(a.loop, 0.02, 0, cb_when, &t));
    /* Blocking iterations: each ends when the native loop had something
     * to do; a watcher the native loop never reports hangs here. */
    while (r.calls == 0 || t.calls == 0)
        host_iterate(&a, 1);
    assert_int_equal(r.calls, 1);
    assert_int_equal(t.calls, 1);
    assert_true(t.at - start >= 0.02);
    adopt_teardown(&a);
    close(p[0]);
    close(p[1]);
}

/* timer_update(0) arms the native timer for the native loop's next
 * iteration: a 0 s timer fires in the host's non-blocking iterations (a
 * plugin that takes 0 for "disarm" never runs it). */
void test_adopt_timer_zero_next_host_iteration(void **state)
{
    (void)state;
    adopted a;
    if (!adopt_setup(&a))
        return;
    int fired = 0;
    assert_non_null(ae_timer(a.loop, 0, 0, cb_count_timer, &fired));
    for (int i = 0; i < 3 && !fired; i++)
        host_iterate(&a, 0);
    assert_int_equal(fired, 1);
    adopt_teardown(&a);
}

/* timer_update replaces the earlier arming (a 1 h timer, then a 5 ms
 * repeating one: the native timer must move earlier), and the arming made
 * from inside the expire service (the repeating timer's next tick) takes
 * effect. A plugin that keeps the first arming, or drops the one made in
 * expire, hangs here. */
struct ticker {
    int ticks;
};

static void cb_tick_three(ae_watcher *w, void *arg)
{
    struct ticker *k = arg;
    if (++k->ticks == 3)
        ae_watcher_free(w);
}

void test_adopt_timer_update_rearms(void **state)
{
    (void)state;
    adopted a;
    if (!adopt_setup(&a))
        return;
    int late = 0;
    ae_watcher *hour = ae_timer(a.loop, 3600, 0, cb_count_timer, &late);
    assert_non_null(hour);
    /* Let the host's loop arm for the hour first. */
    host_iterate(&a, 0);
    struct ticker k = {0};
    assert_non_null(ae_timer(a.loop, 0.005, 0.005, cb_tick_three, &k));
    while (k.ticks < 3)
        host_iterate(&a, 1);
    assert_int_equal(late, 0);
    /* Stopping the first timer moves the arming later: nothing fires. */
    int soon = 0;
    ae_watcher *t = ae_timer(a.loop, 0.005, 0, cb_count_timer, &soon);
    ae_watcher_free(t);
    for (int i = 0; i < 3; i++)
        host_iterate(&a, 0);
    assert_int_equal(soon, 0);
    ae_watcher_free(hour);
    adopt_teardown(&a);
}

/* A callback run from the host's loop frees the adopted loop: from a timer
 * (inside the expire service), then from an io callback. The plugin must
 * touch nothing of its state afterwards (expire_checked and io_ready say
 * so); the host's loop goes on (a memory checker or sanitizer sees a plugin
 * that reads freed memory). */
static void cb_free_loop_timer(ae_watcher *w, void *arg)
{
    (*(int *)arg)++;
    ae_loop_free(ae_watcher_loop(w));
}

static void cb_free_loop_io(ae_watcher *w, int revents, void *arg)
{
    (void)revents;
    (*(int *)arg)++;
    ae_loop_free(ae_watcher_loop(w));
}

void test_adopt_free_from_host_callbacks(void **state)
{
    (void)state;
    adopted a;
    if (!adopt_setup(&a))
        return;
    int freed = 0, other = 0;
    assert_non_null(ae_timer(a.loop, 0, 0, cb_free_loop_timer, &freed));
    assert_non_null(ae_timer(a.loop, 0, 0, cb_count_timer, &other));
    assert_non_null(ae_timer(a.loop, 0.001, 0, cb_count_timer, &other));
    while (!freed)
        host_iterate(&a, 1);
    for (int i = 0; i < 3; i++)
        host_iterate(&a, 0);
    assert_int_equal(freed, 1);
    assert_int_equal(other, 0); /* the free ended the dispatch: no callback after it */

    a.loop = ae_loop_adopt(backend, a.native);
    assert_non_null(a.loop);
    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_int_equal(write(p[1], "x", 1), 1);
    freed = 0;
    assert_non_null(ae_io(a.loop, p[0], AE_READ, cb_free_loop_io, &freed));
    assert_non_null(ae_timer(a.loop, 0, 0, cb_count_timer, &other));
    while (!freed && !other)
        host_iterate(&a, 1);
    if (!freed) { /* the timer came first: the io callback still frees */
        while (!freed)
            host_iterate(&a, 1);
    }
    for (int i = 0; i < 3; i++)
        host_iterate(&a, 0);
    a.host->loop_free(a.native);
    close(p[0]);
    close(p[1]);
}

/* The core runs an adopted loop itself too (ae_cv_recv, ae_run_once): the
 * timer_update arming stays in force there, and serves the core's timers. */
static void cb_send_cv(ae_watcher *w, void *arg)
{
    assert_int_equal(ae_cv_send(arg, NULL), 0);
    ae_watcher_free(w);
}

void test_adopt_core_runs_adopted_loop(void **state)
{
    (void)state;
    adopted a;
    if (!adopt_setup(&a))
        return;
    ae_cv *cv = ae_cv_new(a.loop);
    assert_non_null(cv);
    assert_non_null(ae_timer(a.loop, 0.01, 0, cb_send_cv, cv));
    assert_int_equal(ae_cv_recv(cv, NULL), 0);
    ae_cv_free(cv);
    int fired = 0;
    assert_non_null(ae_timer(a.loop, 0.005, 0, cb_count_timer, &fired));
    while (!fired)
        assert_true(ae_run_once(a.loop, 0) >= 0);
    /* And the host's loop still serves it afterwards. */
    fired = 0;
    assert_non_null(ae_timer(a.loop, 0.005, 0, cb_count_timer, &fired));
    while (!fired)
        host_iterate(&a, 1);
    adopt_teardown(&a);
}

/* Hooks on an adopted loop (hooks_update, hooks_run): in the host's own
 * iterations each prepare hook runs before the iteration's io and each
 * check hook after it, before the next iteration's prepare (GLib runs an
 * iteration's check hooks as the next begins); an iteration the core runs
 * runs each once, not once more through the native watchers. A plugin
 * without hooks_update refuses them with AE_ENOTSUP. */
struct hook_log {
    char log[64]; /* P prepare, C check, W io */
    size_t n;
};

static void hook_log_add(struct hook_log *h, char c)
{
    if (h->n < sizeof h->log - 1)
        h->log[h->n++] = c;
    h->log[h->n] = '\0';
}

static void cb_hook_prepare(ae_watcher *w, void *arg)
{
    (void)w;
    hook_log_add(arg, 'P');
}

static void cb_hook_check(ae_watcher *w, void *arg)
{
    (void)w;
    hook_log_add(arg, 'C');
}

static void cb_hook_io(ae_watcher *w, int revents, void *arg)
{
    (void)w;
    (void)revents;
    hook_log_add(arg, 'W');
}

static size_t hook_count(const struct hook_log *h, char c)
{
    size_t n = 0;
    for (size_t i = 0; i < h->n; i++)
        n += h->log[i] == c;
    return n;
}

void test_adopt_hooks_in_host_iterations(void **state)
{
    (void)state;
    adopted a;
    if (!adopt_setup(&a))
        return;
    struct hook_log h = {{0}, 0};
    ae_watcher *prepare = ae_prepare(a.loop, cb_hook_prepare, &h);
    if (!prepare) {
        if (ae_last_error_code() != AE_ENOTSUP)
            fail_msg("ae_prepare on an adopted loop: %s", ae_last_error());
        print_message("the %s backend runs no hooks in the host's iterations (%s)\n", backend_name, ae_last_error());
        adopt_teardown(&a);
        return;
    }
    assert_non_null(ae_check(a.loop, cb_hook_check, &h));
    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_non_null(ae_io(a.loop, p[1], AE_WRITE, cb_hook_io, &h)); /* ready in every iteration */
    for (int i = 0; i < 3; i++)
        host_iterate(&a, 0);
    /* P before the first W; between two Ws, one C then one P. */
    const char *w = strchr(h.log, 'W');
    if (hook_count(&h, 'W') != 3 || !w || !memchr(h.log, 'P', (size_t)(w - h.log)))
        fail_msg("three host iterations with io ready gave \"%s\" (P prepare, W io, C check)", h.log);
    for (const char *next; (next = strchr(w + 1, 'W')); w = next)
        if (next - w != 3 || w[1] != 'C' || w[2] != 'P')
            fail_msg("host iterations gave \"%s\": want a check hook, then a prepare hook, between two "
                     "iterations' io",
                     h.log);
    size_t prepares = hook_count(&h, 'P'), checks = hook_count(&h, 'C');
    assert_true(ae_run_once(a.loop, AE_NOWAIT) >= 0);
    if (hook_count(&h, 'P') != prepares + 1 || hook_count(&h, 'C') != checks + 1)
        fail_msg("an ae_run_once on the adopted loop ran the hooks other than once each: \"%s\"", h.log);
    adopt_teardown(&a);
    close(p[0]);
    close(p[1]);
}

/* ---- waits ---------------------------------------------------------------- */

/* A wait never ends before its timeout: a loop with one timer runs it in
 * one blocking iteration. A backend that rounds the timeout down (to the
 * millisecond of poll(2) or epoll_wait, say) wakes before the deadline,
 * finds nothing due and ends the iteration without it. The timeouts have
 * fractions of a millisecond. */
void test_wait_never_ends_before_timeout(void **state)
{
    (void)state;
    static const double afters[] = {0.0105, 0.0021, 0.0159, 0.0037};
    ae_loop *loop = new_loop();
    for (size_t i = 0; i < sizeof afters / sizeof afters[0]; i++) {
        int fired = 0;
        ae_watcher *t = ae_timer(loop, afters[i], 0, cb_count_timer, &fired);
        assert_non_null(t);
        int rc = ae_run_once(loop, 0);
        if (fired != 1)
            fail_msg("a %g s timer, alone in the loop, did not run in one blocking ae_run_once() (returned %d): the "
                     "wait ended before its timeout",
                     afters[i], rc);
        ae_watcher_free(t);
    }
    ae_loop_free(loop);
}

/* A backend that says it can nest (AE_BACKEND_F_REENTRANT) waits again
 * from inside a callback, and that nested wait reports what is ready and
 * serves timers, without hanging; one that cannot says AE_ENOTSUP. */
struct nesting {
    int outer_fd, inner_write;
    struct reader inner;
    int timer;
    int rc_io, rc_timer;
    int done;
};

static void cb_nest(ae_watcher *w, int revents, void *arg)
{
    (void)revents;
    struct nesting *n = arg;
    char c;
    assert_int_equal(read(n->outer_fd, &c, 1), 1); /* this one's byte */
    ae_io_set(w, 0);
    ae_loop *loop = ae_watcher_loop(w);
    /* Readable only now: the outer wait did not see it. */
    assert_int_equal(write(n->inner_write, "y", 1), 1);
    n->rc_io = ae_run_once(loop, 0);
    if (n->rc_io >= 0) {
        ae_watcher *t = ae_timer(loop, 0.005, 0, cb_count_timer, &n->timer);
        n->rc_timer = 0;
        for (int i = 0; i < 1000 && !n->timer && n->rc_timer >= 0; i++)
            n->rc_timer = ae_run_once(loop, 0);
        ae_watcher_free(t);
    }
    n->done = 1;
}

void test_nested_wait_when_reentrant(void **state)
{
    (void)state;
    ae_loop *loop = new_loop();
    int outer[2], inner[2];
    assert_int_equal(pipe(outer), 0);
    assert_int_equal(pipe(inner), 0);
    struct nesting n = {outer[0], inner[1], {inner[0], 0}, 0, 0, 0, 0};
    assert_non_null(ae_io(loop, outer[0], AE_READ, cb_nest, &n));
    assert_non_null(ae_io(loop, inner[0], AE_READ, cb_read_byte, &n.inner));
    assert_int_equal(write(outer[1], "x", 1), 1);
    for (int i = 0; i < 10 && !n.done; i++)
        assert_true(ae_run_once(loop, 0) >= 0);
    assert_int_equal(n.done, 1);
    if (n.rc_io == AE_ENOTSUP) {
        print_message("the %s backend does not nest (AE_ENOTSUP): nothing more to check\n", backend_name);
    } else {
        assert_true(n.rc_io >= 0);
        if (n.inner.calls != 1)
            fail_msg("the nested ae_run_once() did not report the pipe that became readable");
        assert_true(n.rc_timer >= 0);
        assert_int_equal(n.timer, 1);
    }
    ae_loop_free(loop);
    close(outer[0]);
    close(outer[1]);
    close(inner[0]);
    close(inner[1]);
}

/* ---- allocations ---------------------------------------------------------- */

/* fd_update never allocates, nor does an iteration that dispatches io:
 * after a warm-up (libraries grow their arrays once), interest changes
 * between every pair of masks, from and to none, on two fds, with the
 * events they bring, allocate nothing at all. */
static void cb_drain(ae_watcher *w, int revents, void *arg)
{
    (void)w;
    struct reader *r = arg;
    char buf[64];
    if ((revents & AE_READ) && read(r->fd, buf, sizeof buf) > 0)
        r->calls++;
    else if (revents & AE_WRITE)
        r->calls++;
}

void test_fd_update_allocates_nothing(void **state)
{
    (void)state;
    if (!allocs_counted()) {
        print_message("allocations cannot be counted in this process (a sanitizer's or memory checker's "
                      "allocator): nothing checked\n");
        return;
    }
    ae_loop *loop = new_loop();
    int p[2], s[2];
    assert_int_equal(pipe(p), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, s), 0);
    struct reader rp = {p[0], 0}, rs = {s[0], 0};
    ae_watcher *wp = ae_io(loop, p[0], AE_READ, cb_drain, &rp);
    ae_watcher *ws = ae_io(loop, s[0], AE_READ, cb_drain, &rs);
    assert_non_null(wp);
    assert_non_null(ws);
    static const int masks[] = {AE_READ, AE_READ | AE_WRITE, AE_WRITE, 0, AE_READ | AE_WRITE, 0, AE_WRITE, AE_READ};
    const int n_masks = (int)(sizeof masks / sizeof masks[0]);
    long counted = 0;
    const int rounds = 400;
    for (int round = 0; round < 2; round++) {
        long before = atomic_load(&allocs);
        for (int i = 0; i < rounds; i++) {
            assert_int_equal(write(p[1], "x", 1), 1);
            assert_int_equal(write(s[1], "y", 1), 1);
            assert_int_equal(ae_io_set(ws, masks[i % n_masks]), 0);
            assert_int_equal(ae_io_set(wp, i % 3 == 2 ? 0 : AE_READ), 0);
            assert_true(ae_run_once(loop, AE_NOWAIT) >= 0);
        }
        counted = atomic_load(&allocs) - before; /* the second round's */
    }
    assert_true(rp.calls > 0 && rs.calls > 0);
    if (counted != 0)
        fail_msg("%ld allocations in %d rounds of interest changes (fd_update) and the iterations that dispatched "
                 "their events, after as many to warm up: none is allowed",
                 counted, rounds);
    ae_loop_free(loop);
    close(p[0]);
    close(p[1]);
    close(s[0]);
    close(s[1]);
}

/* ---- fork ----------------------------------------------------------------- *
 * A child process goes on using the loops it inherited, by itself (the loop
 * notices the fork at its next iteration) or after ae_loop_fork(), and
 * nothing the child does reaches the parent's loop (the backend's fork op
 * replaces the kernel state the two share). */
typedef struct counts {
    int io, timer, sig, child_status, child_calls;
    int fd; /* the pipe end on_io reads */
} counts;

static void on_io(ae_watcher *w, int revents, void *arg)
{
    (void)revents;
    (void)w;
    counts *c = arg;
    char buf[16];
    if (read(c->fd, buf, sizeof buf) > 0)
        c->io++;
}

static void on_timer(ae_watcher *w, void *arg)
{
    (void)w;
    ((counts *)arg)->timer++;
}

static void on_signal(ae_watcher *w, int signum, void *arg)
{
    (void)w;
    (void)signum;
    ((counts *)arg)->sig++;
}

static void on_child(ae_watcher *w, pid_t pid, int status, void *arg)
{
    (void)w;
    (void)pid;
    counts *c = arg;
    c->child_calls++;
    c->child_status = status;
}

static void on_deadline(ae_watcher *w, void *arg)
{
    (void)w;
    (void)arg;
    fprintf(stderr, "fork check: the child's 10 s deadline passed\n");
    _exit(90);
}

/* In a child: runs until cond holds or 10 s pass (a hang is a failure). */
#define CHILD_RUN_UNTIL(loop, cond)                                                                            \
    do {                                                                                                        \
        ae_watcher *deadline_ = ae_timer(loop, 10, 0, on_deadline, NULL);                                       \
        while (!(cond))                                                                                         \
            if (ae_run_once(loop, 0) < 0)                                                                       \
                _exit(91);                                                                                      \
        ae_watcher_free(deadline_);                                                                             \
    } while (0)

/* In the child: every kind of watcher works on the inherited loop, and the
 * child drops the watcher it inherited on the parent's pipe. Returns 0 if
 * all went well, else the number of the step that failed. */
static int child_side(ae_loop *loop, ae_watcher *inherited, bool explicit_fork)
{
    if (explicit_fork && ae_loop_fork(loop) != 0)
        return 1;
    ae_watcher_free(inherited); /* must not touch the parent's registration */
    counts c = {0};
    int p[2];
    if (pipe(p) != 0)
        return 2;
    c.fd = p[0];
    ae_watcher *io = ae_io(loop, p[0], AE_READ, on_io, &c);
    ae_watcher *timer = ae_timer(loop, 0.01, 0, on_timer, &c);
    ae_watcher *sig = ae_signal(loop, SIGUSR2, on_signal, &c);
    if (!io || !timer || !sig)
        return 3;
    if (write(p[1], "x", 1) != 1)
        return 4;
    CHILD_RUN_UNTIL(loop, c.io == 1 && c.timer == 1);
    raise(SIGUSR2);
    CHILD_RUN_UNTIL(loop, c.sig == 1);
    pid_t grandchild = fork();
    if (grandchild == 0)
        _exit(7);
    ae_watcher *child = ae_child(loop, grandchild, on_child, &c);
    if (!child)
        return 5;
    CHILD_RUN_UNTIL(loop, c.child_calls == 1);
    if (!WIFEXITED(c.child_status) || WEXITSTATUS(c.child_status) != 7)
        return 6;
    ae_loop_free(loop);
    close(p[0]);
    close(p[1]);
    return 0;
}

static void wait_child_ok(pid_t pid)
{
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status))
        fail_msg("the child died of signal %d", WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    if (WEXITSTATUS(status) != 0)
        fail_msg("the child failed at step %d", WEXITSTATUS(status));
}

static void check_fork(bool explicit_fork)
{
    ae_loop *loop = new_loop();
    counts c = {0};
    int p[2];
    assert_int_equal(pipe(p), 0);
    c.fd = p[0];
    ae_watcher *io = ae_io(loop, p[0], AE_READ, on_io, &c);
    ae_watcher *sig = ae_signal(loop, SIGUSR2, on_signal, &c);
    assert_non_null(io);
    assert_non_null(sig);
    /* Registered in the kernel before the fork, so that state is shared. */
    assert_true(ae_run_once(loop, AE_NOWAIT) >= 0);

    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(child_side(loop, io, explicit_fork));
    wait_child_ok(pid);

    /* The parent's loop is as it was: its pipe and its signal still fire. */
    assert_int_equal(write(p[1], "y", 1), 1);
    ae_watcher *deadline = ae_timer(loop, 10, 0, on_timer, &c);
    while (c.io == 0 && c.timer == 0)
        assert_true(ae_run_once(loop, 0) >= 0);
    assert_int_equal(c.io, 1);
    raise(SIGUSR2);
    while (c.sig == 0 && c.timer == 0)
        assert_true(ae_run_once(loop, 0) >= 0);
    assert_int_equal(c.sig, 1);
    assert_int_equal(c.timer, 0);
    ae_watcher_free(deadline);
    ae_loop_free(loop);
    close(p[0]);
    close(p[1]);
}

void test_fork_noticed_by_itself(void **state)
{
    (void)state;
    check_fork(false);
}

void test_fork_explicit(void **state)
{
    (void)state;
    check_fork(true);
}

/* A loop that never ran in the parent, and a child that forks again. */
void test_fork_twice(void **state)
{
    (void)state;
    ae_loop *loop = new_loop();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        pid_t pid2 = fork();
        if (pid2 < 0)
            _exit(20);
        if (pid2 == 0) {
            counts c = {0};
            ae_timer(loop, 0.001, 0, on_timer, &c);
            CHILD_RUN_UNTIL(loop, c.timer == 1);
            ae_loop_free(loop);
            _exit(0);
        }
        int st;
        if (waitpid(pid2, &st, 0) != pid2 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
            _exit(21);
        _exit(child_side(loop, ae_timer(loop, 100, 0, on_timer, NULL), false));
    }
    wait_child_ok(pid);
    ae_loop_free(loop);
}

/* A new pipe whose read end takes fd's number (dup2 closes fd's file);
 * returns its write end, put at 64 or above so that the low numbers free
 * before stay free. -1 on failure. */
static int pipe_reopened_at(int fd)
{
    int fresh[2];
    if (pipe(fresh) != 0)
        return -1;
    int wr = fcntl(fresh[1], F_DUPFD, 64);
    close(fresh[1]);
    if (wr < 0 || dup2(fresh[0], fd) != fd)
        return -1;
    close(fresh[0]);
    return wr;
}

/* cb_read_byte for AE_READ alone; an AE_ERROR is counted apart. */
struct strict_reader {
    struct reader r;
    int errors;
};

static void cb_read_byte_strict(ae_watcher *w, int revents, void *arg)
{
    struct strict_reader *sr = arg;
    if (revents & AE_ERROR)
        sr->errors++;
    else
        cb_read_byte(w, revents, &sr->r);
}

/* In the child: three times, the watcher is paused, its fd closed and the
 * number taken by a new pipe, and resumed with the same events before the
 * loop waits (the first time before the child's loop has run at all); the
 * new pipe's byte must be reported, and again after a pause and resume
 * with the same file. Returns 0, or the step that failed. */
static int child_reuses_fd(ae_loop *loop, ae_watcher *w, struct strict_reader *sr, int *wr, int hole,
                           bool explicit_fork)
{
    struct reader *r = &sr->r;
    if (explicit_fork && ae_loop_fork(loop) != 0)
        return 1;
    for (int round = 0; round < 3; round++) {
        if (ae_io_set(w, 0) != 0)
            return 2;
        close(*wr);
        if ((*wr = pipe_reopened_at(r->fd)) < 0)
            return 3;
        if (ae_io_set(w, AE_READ) != 0)
            return 4;
        if (round == 0)
            close(hole); /* kernel state the child renews now may take this lower number */
        for (int same = 0; same < 2; same++) {
            int before = r->calls;
            if (write(*wr, "x", 1) != 1)
                return 5;
            for (int i = 0; i < 3 && r->calls == before; i++)
                if (ae_run_once(loop, AE_NOWAIT) < 0)
                    return 6;
            if (sr->errors)
                return 8; /* an open fd reported as closed */
            if (r->calls != before + 1)
                return 10 + 2 * round + same; /* the byte of this round's pipe was not reported */
            if (ae_io_set(w, 0) != 0 || ae_io_set(w, AE_READ) != 0)
                return 7;
        }
    }
    ae_watcher_free(w);
    ae_loop_free(loop);
    close(r->fd);
    close(*wr);
    return 0;
}

/* A backend that checks whether a resumed fd still names its file (a pipe
 * chain re-arms each fd per round) by asking its kernel state must ask the
 * child's own after a fork, not the parent's, nor the number the parent's
 * had (the libev plugin asks libev's epoll set, which libev renews only in
 * the child's first iteration; a lower fd number is free by then). The
 * parent's watcher, paused and resumed the same way, is unaffected. */
static void check_fork_io_reused_fd(bool explicit_fork, bool adopt)
{
    int hole = open("/dev/null", O_RDONLY); /* below the loop's fds */
    assert_true(hole >= 0);
    adopted a;
    ae_loop *loop;
    if (adopt) {
        if (!adopt_setup(&a)) {
            close(hole);
            return;
        }
        loop = a.loop;
    } else {
        loop = new_loop();
    }
    int p[2];
    assert_int_equal(pipe(p), 0);
    struct strict_reader sr = {.r.fd = p[0]};
    struct reader *r = &sr.r;
    ae_watcher *w = ae_io(loop, p[0], AE_READ, cb_read_byte_strict, &sr);
    assert_non_null(w);
    assert_true(ae_run_once(loop, AE_NOWAIT) >= 0); /* registered in the kernel state the child shares */
    for (int i = 0; i < 2; i++) { /* paused and resumed with the same file: checked as such */
        assert_int_equal(ae_io_set(w, 0), 0);
        assert_int_equal(ae_io_set(w, AE_READ), 0);
        assert_true(ae_run_once(loop, AE_NOWAIT) >= 0);
    }
    assert_int_equal(r->calls, 0);

    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* An adopted loop's host renews its native loop first (docs/api.md,
         * ae_loop_fork), as its library asks. */
        if (adopt && AE_BACKEND_TEST_HOST_HAS(a.host, loop_fork) && a.host->loop_fork && a.host->loop_fork(a.native) < 0)
            _exit(100);
        int rc = child_reuses_fd(loop, w, &sr, &p[1], hole, explicit_fork);
        if (rc == 0 && adopt)
            a.host->loop_free(a.native); /* the child's copy: a leak would fail it under valgrind */
        _exit(rc);
    }
    wait_child_ok(pid);
    close(hole);

    for (int i = 0; i < 2; i++) {
        int before = r->calls;
        assert_int_equal(write(p[1], "y", 1), 1);
        for (int j = 0; j < 3 && r->calls == before; j++)
            assert_true(ae_run_once(loop, AE_NOWAIT) >= 0);
        assert_int_equal(r->calls, before + 1);
        assert_int_equal(sr.errors, 0);
        assert_int_equal(ae_io_set(w, 0), 0);
        assert_int_equal(ae_io_set(w, AE_READ), 0);
    }
    ae_watcher_free(w);
    if (adopt)
        adopt_teardown(&a);
    else
        ae_loop_free(loop);
    close(p[0]);
    close(p[1]);
}

void test_fork_io_reused_fd(void **state)
{
    (void)state;
    check_fork_io_reused_fd(false, false);
    check_fork_io_reused_fd(true, false);
}

/* The same in a child of a host whose loop anyevent adopted: the host
 * renews its native loop (the test host's loop_fork), anyevent its own
 * state at the loop's next use or at ae_loop_fork() (the plugin's
 * adopted_fork: what it learned from the parent's native loop, such as
 * the number of libev's epoll set, is stale in the child). */
void test_adopt_fork_io_reused_fd(void **state)
{
    (void)state;
    check_fork_io_reused_fd(false, true);
    check_fork_io_reused_fd(true, true);
}

/* Takes every free fd number (below a lowered limit); returns how many. */
static int fds_exhaust(int *fds, int max)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -1;
    rl.rlim_cur = 256;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -1;
    int n = 0;
    while (n < max && (fds[n] = dup(0)) >= 0)
        n++;
    return n;
}

/* In the child: the renewal fails (no fd left for the loop's new kernel
 * state), and the loop then refuses to run, with that error, even once fds
 * are free again, until it is freed. */
static int child_renewal_fails(ae_loop *loop)
{
    int fds[256];
    int n = fds_exhaust(fds, 256);
    if (n <= 0)
        return 1;
    int rc = ae_run_once(loop, AE_NOWAIT);
    for (int i = 0; i < n; i++)
        close(fds[i]);
    if (rc >= 0)
        return 2;
    if (!strstr(ae_last_error(), "fork"))
        return 3;
    if (ae_run_once(loop, AE_NOWAIT) != rc || ae_run(loop) != rc || ae_loop_fork(loop) != rc)
        return 4;
    if (!strstr(ae_last_error(), "fork"))
        return 5;
    ae_loop_free(loop); /* without touching the parent's registrations */
    return 0;
}

void test_fork_renewal_failure_sticks(void **state)
{
    (void)state;
    ae_loop *loop = new_loop();
    counts c = {0};
    int p[2];
    assert_int_equal(pipe(p), 0);
    c.fd = p[0];
    ae_watcher *io = ae_io(loop, p[0], AE_READ, on_io, &c);
    ae_watcher *sig = ae_signal(loop, SIGUSR2, on_signal, &c);
    assert_non_null(io);
    assert_non_null(sig);
    assert_true(ae_run_once(loop, AE_NOWAIT) >= 0);

    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(child_renewal_fails(loop));
    wait_child_ok(pid);

    /* The parent's loop is as it was. */
    assert_int_equal(write(p[1], "y", 1), 1);
    raise(SIGUSR2);
    ae_watcher *deadline = ae_timer(loop, 10, 0, on_timer, &c);
    while ((c.io == 0 || c.sig == 0) && c.timer == 0)
        assert_true(ae_run_once(loop, 0) >= 0);
    assert_int_equal(c.io, 1);
    assert_int_equal(c.sig, 1);
    ae_watcher_free(deadline);
    ae_loop_free(loop);
    close(p[0]);
    close(p[1]);
}

void test_fork_bad_input(void **state)
{
    (void)state;
    assert_int_equal(ae_loop_fork(NULL), AE_EINVAL);
    assert_non_null(strstr(ae_last_error(), "ae_loop_fork"));
    ae_loop *loop = new_loop();
    /* Not forked: renewing the state is harmless. */
    assert_int_equal(ae_loop_fork(loop), 0);
    counts c = {0};
    ae_timer(loop, 0.001, 0, on_timer, &c);
    assert_int_equal(ae_run(loop), 0);
    assert_int_equal(c.timer, 1);
    ae_loop_free(loop);
}
