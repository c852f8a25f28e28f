/* Which backends exist, and choosing one for a new loop: the name given,
 * else ANYEVENT_BACKEND, else the program's own event library, else the
 * first in rank order that starts.
 * Built-in backends are always there; plugins are loaded on first mention and
 * remembered, with the reason when they cannot be used. */
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* No backend is named here: the automatic order is each backend's rank
 * (ae_backend_ops.rank, lower first; 0: never chosen automatically), and
 * the program's own event library is found by the symbol each plugin names
 * (host_symbol). Every installed plugin is asked. */
#define MAX_BACKENDS 64

typedef struct backend_entry {
    char name[PATH_MAX];
    const ae_backend_ops *ops; /* NULL: cannot be used */
    char detail[1024];         /* where it came from, or why it cannot be used */
} backend_entry;

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static backend_entry entries[MAX_BACKENDS];
static size_t n_entries;
/* What ae_backends() and ae_backend_names() hand out: per thread, so that
 * another thread's call cannot rewrite it under the caller. */
static _Thread_local ae_backend_info infos[MAX_BACKENDS];
static _Thread_local char names[512];

/* The size of the table as version 1 defined it. */
#define V1_SIZE (offsetof(ae_backend_ops, default_native) + sizeof(((ae_backend_ops *)0)->default_native))

void ae__registry_atfork(enum ae_fork_phase phase)
{
    if (phase == AE_FORK_PREPARE)
        pthread_mutex_lock(&registry_lock);
    else
        pthread_mutex_unlock(&registry_lock);
}

int ae__backend_check(const ae_backend_ops *ops)
{
    const char *name = ops->name ? ops->name : "?";
    if (ops->abi_version < 1 || ops->abi_version > AE_BACKEND_ABI_VERSION)
        return ae__set_error(AE_ENOTSUP, "backend '%s': ABI version %u, this anyevent speaks 1 to %u", name,
                             ops->abi_version, AE_BACKEND_ABI_VERSION);
    /* Every version has version 1's table whole; later fields are read only
     * where the table's version and size cover them (AE_BACKEND_OPS_HAS). */
    if (ops->struct_size < V1_SIZE || !ops->name || !ops->init || !ops->destroy || !ops->fd_update || !ops->wait)
        return ae__set_error(AE_ENOTSUP, "backend '%s': incomplete operations table", name);
    if (AE_BACKEND_OPS_HAS(ops, run) && ops->run && !ops->timer_update)
        return ae__set_error(AE_ENOTSUP, "backend '%s': run without timer_update", name);
    if (ops->adopt && !ops->timer_update)
        return ae__set_error(AE_ENOTSUP, "backend '%s': adopt without timer_update", name);
    if (!ops->signal_start != !ops->signal_stop || !ops->child_start != !ops->child_stop)
        return ae__set_error(AE_ENOTSUP, "backend '%s': a native start without its stop, or the reverse", name);
    if (AE_BACKEND_OPS_HAS(ops, hooks_update) && ops->hooks_update && !ops->adopt)
        return ae__set_error(AE_ENOTSUP, "backend '%s': hooks_update without adopt", name);
    if (ops->default_native && !ops->adopt)
        return ae__set_error(AE_ENOTSUP, "backend '%s': default_native without adopt", name);
    if (AE_BACKEND_OPS_HAS(ops, fd_data_align) && ops->fd_data_align &&
        ((ops->fd_data_align & (ops->fd_data_align - 1)) || ops->fd_data_align > _Alignof(max_align_t)))
        return ae__set_error(AE_ENOTSUP, "backend '%s': fd_data_align %zu is not a power of two up to %zu", name,
                             ops->fd_data_align, (size_t)_Alignof(max_align_t));
    return 0;
}

/* The entry for name, loading a plugin on first mention. Under
 * registry_lock. NULL only when the table is full. */
static backend_entry *entry_get(const char *name)
{
    for (size_t i = 0; i < n_entries; i++)
        if (strcmp(entries[i].name, name) == 0)
            return &entries[i];
    if (n_entries == MAX_BACKENDS)
        return NULL;
    backend_entry *e = &entries[n_entries++];
    snprintf(e->name, sizeof e->name, "%s", name);
    if (strcmp(name, "poll") == 0 || strcmp(name, "select") == 0) {
        e->ops = strcmp(name, "poll") == 0 ? &ae__backend_poll : &ae__backend_select;
        snprintf(e->detail, sizeof e->detail, "built in");
        return e;
    }
    char where[512];
    e->ops = ae__plugin_load(name, where, sizeof where, e->detail, sizeof e->detail);
    if (e->ops)
        snprintf(e->detail, sizeof e->detail, "%s", where);
    return e;
}

static unsigned rank_of(const ae_backend_ops *ops)
{
    return ops && AE_BACKEND_OPS_HAS(ops, rank) ? ops->rank : 0;
}

/* The built-in backends and every installed plugin. Under registry_lock. */
static void probe_all(void)
{
    entry_get("poll");
    entry_get("select");
    static char names[MAX_BACKENDS][AE_PLUGIN_NAME_MAX];
    size_t n = ae__plugin_scan(names, MAX_BACKENDS);
    for (size_t i = 0; i < n; i++)
        entry_get(names[i]);
}

/* The ranked entries, lowest rank first, then the others in the order they
 * were first met. Under registry_lock; returns the number of entries, and
 * in *ranked how many come first by rank. */
static size_t ordered(const backend_entry **out, size_t *ranked)
{
    size_t n = 0;
    probe_all();
    for (size_t j = 0; j < n_entries; j++) {
        unsigned r = rank_of(entries[j].ops);
        if (!r)
            continue;
        size_t k = n++;
        while (k > 0 && rank_of(out[k - 1]->ops) > r) /* stable insertion */
            out[k] = out[k - 1], k--;
        out[k] = &entries[j];
    }
    if (ranked)
        *ranked = n;
    for (size_t j = 0; j < n_entries; j++)
        if (!rank_of(entries[j].ops))
            out[n++] = &entries[j];
    return n;
}

int ae_backends(const ae_backend_info **list)
{
    const backend_entry *order[MAX_BACKENDS];
    ae__atfork_init();
    pthread_mutex_lock(&registry_lock);
    size_t n = ordered(order, NULL);
    for (size_t i = 0; i < n; i++)
        infos[i] = (ae_backend_info){order[i]->name, order[i]->ops != NULL, order[i]->detail};
    pthread_mutex_unlock(&registry_lock);
    if (list)
        *list = infos;
    return (int)n;
}

const char *ae_backend_names(void)
{
    const backend_entry *order[MAX_BACKENDS];
    ae__atfork_init();
    pthread_mutex_lock(&registry_lock);
    size_t n = ordered(order, NULL);
    size_t len = 0;
    names[0] = '\0';
    for (size_t i = 0; i < n; i++)
        if (order[i]->ops && len < sizeof names)
            len += (size_t)snprintf(names + len, sizeof names - len, "%s%s", len ? "," : "", order[i]->name);
    pthread_mutex_unlock(&registry_lock);
    return names;
}

static int backend_start(ae_loop *loop, const ae_backend_ops *ops, void *native)
{
    if (native && !ops->adopt)
        return ae__set_error(AE_ENOTSUP, "backend '%s' cannot adopt a native loop", ops->name);
    void *state = NULL;
    if (ops->state_size && !(state = calloc(1, ops->state_size)))
        return ae__set_error(AE_ENOMEM, "backend '%s': out of memory", ops->name);
    loop->ops = ops;
    loop->backend_state = state;
    int rc = native ? ops->adopt(loop, state, native) : ops->init(loop, state);
    if (rc < 0) {
        free(state);
        loop->ops = NULL;
        loop->backend_state = NULL;
    }
    return rc;
}

/* Looks up name; ops NULL with *detail saying why. */
static const ae_backend_ops *lookup(const char *name, char *detail, size_t size)
{
    ae__atfork_init();
    pthread_mutex_lock(&registry_lock);
    backend_entry *e = entry_get(name);
    const ae_backend_ops *ops = e ? e->ops : NULL;
    snprintf(detail, size, "%s", e ? e->detail : "too many backends tried");
    pthread_mutex_unlock(&registry_lock);
    return ops;
}

/* The event library the program itself uses, if any: its symbols are in the
 * global scope because the program links it. Plugins are loaded RTLD_LOCAL,
 * so their own library never shows here. The first plugin in rank order
 * whose host_symbol is found. */
const char *ae__host_library(void)
{
    const backend_entry *order[MAX_BACKENDS];
    const char *host = NULL;
    ae__atfork_init();
    pthread_mutex_lock(&registry_lock);
    size_t n = ordered(order, NULL);
    for (size_t i = 0; i < n && !host; i++) {
        const ae_backend_ops *ops = order[i]->ops;
        if (ops && AE_BACKEND_OPS_HAS(ops, host_symbol) && ops->host_symbol && ops->default_native &&
            dlsym(RTLD_DEFAULT, ops->host_symbol))
            host = order[i]->name; /* entries never move nor go */
    }
    pthread_mutex_unlock(&registry_lock);
    return host;
}

void *ae__backend_default_native(const char *name)
{
    char detail[1024];
    const ae_backend_ops *ops = lookup(name, detail, sizeof detail);
    if (!ops) {
        ae__set_error(AE_ENOENT, "backend '%s': %s", name, detail);
        return NULL;
    }
    if (!ops->default_native) {
        ae__set_error(AE_ENOTSUP, "backend '%s' has no default loop", name);
        return NULL;
    }
    void *native = ops->default_native();
    if (!native)
        ae__set_error(AE_ESYS, "backend '%s': its default loop could not be created", name);
    return native;
}

int ae__backend_open(ae_loop *loop, const char *name, void *native)
{
    const char *why = "named by the caller";
    if (!native && (!name || !*name)) {
        const char *env = secure_getenv("ANYEVENT_BACKEND");
        if (env && *env) {
            name = env;
            why = "named by ANYEVENT_BACKEND";
        }
    }
    char detail[1024];
    if (name && *name) {
        const ae_backend_ops *ops = lookup(name, detail, sizeof detail);
        if (!ops)
            return ae__set_error(AE_ENOENT, "unknown backend '%s' (%s): %s; available: %s", name, why, detail,
                                 ae_backend_names());
        if (backend_start(loop, ops, native) < 0) {
            char reason[512];
            snprintf(reason, sizeof reason, "%s", ae_last_error());
            int code = native ? ae_last_error_code() : AE_ENOENT;
            return ae__set_error(code, "backend '%s' (%s) could not start: %s; available: %s", name, why, reason,
                                 ae_backend_names());
        }
        if (ae__debug())
            fprintf(stderr, "anyevent: backend %s (%s%s)\n", ops->name, why, native ? ", adopting a native loop" : "");
        return 0;
    }
    /* The program's own event library first: then a library on anyevent
     * and the program share one kind of loop. */
    const char *host = ae__host_library();
    if (host) {
        const ae_backend_ops *ops = lookup(host, detail, sizeof detail);
        if (ops && backend_start(loop, ops, NULL) == 0) {
            if (ae__debug())
                fprintf(stderr, "anyevent: backend %s (the program uses %s: found in its global symbols)\n",
                        ops->name, host);
            return 0;
        }
        if (ae__debug())
            fprintf(stderr, "anyevent: backend %s (used by the program) skipped: %s\n", host,
                    ops ? ae_last_error() : detail);
    }
    const backend_entry *order[MAX_BACKENDS];
    size_t ranked;
    ae__atfork_init();
    pthread_mutex_lock(&registry_lock);
    ordered(order, &ranked);
    pthread_mutex_unlock(&registry_lock);
    for (size_t i = 0; i < ranked; i++) {
        const ae_backend_ops *ops = order[i]->ops;
        if (backend_start(loop, ops, NULL) == 0) {
            if (ae__debug()) {
                char list[256];
                size_t len = 0;
                for (size_t j = 0; j < ranked && len < sizeof list; j++)
                    len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", j ? "," : "", order[j]->name);
                fprintf(stderr, "anyevent: backend %s (first that works in the order %s)\n", ops->name, list);
            }
            return 0;
        }
        if (ae__debug())
            fprintf(stderr, "anyevent: backend %s skipped: %s\n", order[i]->name, ae_last_error());
    }
    char last[256];
    snprintf(last, sizeof last, "%s", ae_last_error());
    return ae__set_error(AE_ENOENT, "no backend could be started; last error: %s", last);
}
