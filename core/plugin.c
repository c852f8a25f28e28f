/* Backend plugins: finding anyevent-NAME.so on disk, loading it with dlopen
 * and checking what it exports. A plugin is loaded at most once per process
 * and never unloaded (its code may still be on a stack or in a handler). */
#include <dirent.h>
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#ifndef AE_PLUGIN_DIR
#define AE_PLUGIN_DIR "/usr/local/lib/anyevent"
#endif

static const ae_backend_services services = {
    .version = AE_BACKEND_ABI_VERSION,
    .struct_size = sizeof(ae_backend_services),
    .io_ready = ae_backend_io_ready,
    .expire = ae_backend_expire,
    .set_error = ae__set_error,
    .set_errno = ae__set_errno,
    .now = ae_now,
    .signal_ready = ae_backend_signal_ready,
    .child_ready = ae_backend_child_ready,
    .iteration = ae_backend_iteration,
    .expire_checked = ae_backend_expire_checked,
    .hooks_run = ae_backend_hooks_run,
    .fd_ready = ae_backend_fd_ready,
    .idle_run = ae_backend_idle_run,
    .fd_event = ae_backend_fd_event,
};

/* Whether this library runs from its build tree (tests, the benchmark): then
 * the plugins built beside it are found too. */
bool ae__in_build_tree(void)
{
#ifdef AE_BUILD_ROOT
    Dl_info info;
    if (dladdr((void *)ae_loop_new, &info) && info.dli_fname) {
        char real[PATH_MAX];
        const char *path = realpath(info.dli_fname, real) ? real : info.dli_fname;
        size_t n = strlen(AE_BUILD_ROOT);
        return strncmp(path, AE_BUILD_ROOT, n) == 0 && path[n] == '/';
    }
#endif
    return false;
}

/* Appends to reason, which has room for size bytes. */
static void note(char *reason, size_t size, const char *fmt, const char *a, const char *b)
{
    size_t len = strlen(reason);
    if (len + 3 < size) {
        if (len)
            strcpy(reason + len, "; "), len += 2;
        snprintf(reason + len, size - len, fmt, a, b);
    }
}

static const ae_backend_ops *try_file(const char *path, const char *name, char *reason, size_t size)
{
    if (access(path, F_OK) != 0) {
        note(reason, size, "%s: %s", path, "not found");
        return NULL;
    }
    /* RTLD_LOCAL: a plugin's event library stays out of the global scope
     * (Debian's libev.so also defines libevent's names). */
    void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        const char *msg = dlerror();
        size_t n = strlen(path);
        if (strncmp(msg, path, n) == 0 && msg[n] == ':') /* glibc names the file itself */
            note(reason, size, "%s%s", path, msg + n);
        else
            note(reason, size, "%s: %s", path, msg);
        return NULL;
    }
    ae_backend_entry_fn entry;
    *(void **)&entry = dlsym(handle, AE_BACKEND_ENTRY_SYMBOL);
    if (!entry) {
        note(reason, size, "%s: %s", path, "exports no " AE_BACKEND_ENTRY_SYMBOL "()");
        dlclose(handle);
        return NULL;
    }
    ae__error_reset();
    const ae_backend_ops *ops = entry(&services);
    if (!ops) {
        note(reason, size, "%s: %s", path, *ae_last_error() ? ae_last_error() : "its entry returned NULL");
        dlclose(handle);
        return NULL;
    }
    if (ae__backend_check(ops) < 0) {
        note(reason, size, "%s: %s", path, ae_last_error());
        dlclose(handle);
        return NULL;
    }
    if (name && strcmp(ops->name, name) != 0) {
        note(reason, size, "%s: %s", path, "calls itself by another name");
        dlclose(handle);
        return NULL;
    }
    return ops; /* the handle stays open for the life of the process */
}

const ae_backend_ops *ae__plugin_load(const char *name, char *where, size_t where_size, char *reason,
                                      size_t reason_size)
{
    reason[0] = '\0';
    where[0] = '\0';
    /* An absolute path to a .so: that file, whatever the backend calls
     * itself (ae-conformance tests a plugin file before it is installed). */
    size_t len = strlen(name);
    if (name[0] == '/' && len > 3 && strcmp(name + len - 3, ".so") == 0) {
        const ae_backend_ops *ops = try_file(name, NULL, reason, reason_size);
        if (ops)
            snprintf(where, where_size, "%s", name);
        return ops;
    }
    if (!*name || strlen(name) > 64 || strchr(name, '/') || strchr(name, '.')) {
        snprintf(reason, reason_size, "'%s' is not a plugin name", name);
        return NULL;
    }
    char path[PATH_MAX];
    const ae_backend_ops *ops = NULL;
    /* 1. ANYEVENT_PLUGIN_PATH, colon-separated folders */
    const char *env = secure_getenv("ANYEVENT_PLUGIN_PATH");
    while (env && *env && !ops) {
        size_t len = strcspn(env, ":");
        if (len > 0 && len < sizeof path - 80) {
            snprintf(path, sizeof path, "%.*s/anyevent-%s.so", (int)len, env, name);
            ops = try_file(path, name, reason, reason_size);
        }
        env += len + (env[len] == ':');
    }
    /* 2. the installed plugin folder */
    if (!ops) {
        snprintf(path, sizeof path, "%s/anyevent-%s.so", AE_PLUGIN_DIR, name);
        ops = try_file(path, name, reason, reason_size);
    }
    /* 3. the build tree's, when this library is the build tree's */
#ifdef AE_BUILD_ROOT
    if (!ops && ae__in_build_tree()) {
        snprintf(path, sizeof path, "%s/backends/%s/anyevent-%s.so", AE_BUILD_ROOT, name, name);
        ops = try_file(path, name, reason, reason_size);
    }
#endif
    if (ops)
        snprintf(where, where_size, "%s", path);
    return ops;
}

/* Adds the plugin names of folder's anyevent-NAME.so files to names (count
 * *n, room for max), each once. */
static void scan_folder(const char *folder, char (*names)[AE_PLUGIN_NAME_MAX], size_t *n, size_t max)
{
    DIR *d = opendir(folder);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) && *n < max) {
        size_t len = strlen(e->d_name);
        if (len <= 12 || strncmp(e->d_name, "anyevent-", 9) != 0 || strcmp(e->d_name + len - 3, ".so") != 0 ||
            len - 12 >= AE_PLUGIN_NAME_MAX)
            continue;
        char name[AE_PLUGIN_NAME_MAX];
        snprintf(name, sizeof name, "%.*s", (int)(len - 12), e->d_name + 9);
        if (strchr(name, '.'))
            continue;
        bool seen = false;
        for (size_t i = 0; i < *n && !seen; i++)
            seen = strcmp(names[i], name) == 0;
        if (!seen)
            snprintf(names[(*n)++], AE_PLUGIN_NAME_MAX, "%s", name);
    }
    closedir(d);
}

size_t ae__plugin_scan(char (*names)[AE_PLUGIN_NAME_MAX], size_t max)
{
    size_t n = 0;
    char path[PATH_MAX];
    const char *env = secure_getenv("ANYEVENT_PLUGIN_PATH");
    while (env && *env) {
        size_t len = strcspn(env, ":");
        if (len > 0 && len < sizeof path) {
            snprintf(path, sizeof path, "%.*s", (int)len, env);
            scan_folder(path, names, &n, max);
        }
        env += len + (env[len] == ':');
    }
    scan_folder(AE_PLUGIN_DIR, names, &n, max);
#ifdef AE_BUILD_ROOT
    if (ae__in_build_tree()) {
        /* backends/NAME/anyevent-NAME.so */
        snprintf(path, sizeof path, "%s/backends", AE_BUILD_ROOT);
        DIR *d = opendir(path);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (e->d_name[0] == '.' || strlen(path) + strlen(e->d_name) + 2 >= sizeof path)
                continue;
            char sub[PATH_MAX];
            size_t len = strlen(path);
            memcpy(sub, path, len);
            sub[len] = '/';
            strcpy(sub + len + 1, e->d_name); /* fits: checked above */
            scan_folder(sub, names, &n, max);
        }
        if (d)
            closedir(d);
    }
#endif
    return n;
}
