/* Which backends exist, and choosing one for a new loop. Plugins found at run
 * time will join the built-in table here. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Preference order: poll has no descriptor limit, select is the portable last
 * resort. */
static const ae_backend_ops *const builtin_backends[] = {
    &ae__backend_poll,
    &ae__backend_select,
};
#define N_BUILTIN (sizeof builtin_backends / sizeof builtin_backends[0])

static char names[256];
static pthread_once_t names_once = PTHREAD_ONCE_INIT;

static void names_build(void)
{
    size_t len = 0;
    for (size_t i = 0; i < N_BUILTIN; i++)
        len += (size_t)snprintf(names + len, sizeof names - len, "%s%s", i ? "," : "", builtin_backends[i]->name);
}

const char *ae_backend_names(void)
{
    pthread_once(&names_once, names_build);
    return names;
}

/* The fields of version 1 must all be there, and the version must be ours. */
static int backend_check(const ae_backend_ops *ops)
{
    if (ops->abi_version < 1 || ops->abi_version > AE_BACKEND_ABI_VERSION)
        return ae__set_error(AE_ENOTSUP, "backend '%s': ABI version %u, this anyevent speaks 1 to %u",
                             ops->name ? ops->name : "?", ops->abi_version, AE_BACKEND_ABI_VERSION);
    if (ops->struct_size < offsetof(ae_backend_ops, wait) + sizeof ops->wait || !ops->name || !ops->init ||
        !ops->destroy || !ops->fd_update || !ops->wait)
        return ae__set_error(AE_ENOTSUP, "backend '%s': incomplete operations table",
                             ops->name ? ops->name : "?");
    return 0;
}

static int backend_try(ae_loop *loop, const ae_backend_ops *ops)
{
    int rc = backend_check(ops);
    if (rc < 0)
        return rc;
    void *state = NULL;
    if (ops->state_size && !(state = calloc(1, ops->state_size)))
        return ae__set_error(AE_ENOMEM, "backend '%s': out of memory", ops->name);
    loop->ops = ops;
    loop->backend_state = state;
    rc = ops->init(loop, state);
    if (rc < 0) {
        free(state);
        loop->ops = NULL;
        loop->backend_state = NULL;
    }
    return rc;
}

static const ae_backend_ops *builtin_find(const char *name)
{
    for (size_t i = 0; i < N_BUILTIN; i++)
        if (strcmp(builtin_backends[i]->name, name) == 0)
            return builtin_backends[i];
    return NULL;
}

int ae__backend_open(ae_loop *loop, const char *name)
{
    const char *why = "named by the caller";
    if (!name || !*name) {
        const char *env = getenv("ANYEVENT_BACKEND");
        if (env && *env) {
            name = env;
            why = "named by ANYEVENT_BACKEND";
        }
    }
    if (name && *name) {
        const ae_backend_ops *ops = builtin_find(name);
        if (!ops)
            return ae__set_error(AE_ENOENT, "unknown backend '%s' (%s); available: %s", name, why,
                                 ae_backend_names());
        if (backend_try(loop, ops) < 0) {
            char reason[256];
            snprintf(reason, sizeof reason, "%s", ae_last_error());
            return ae__set_error(AE_ENOENT, "backend '%s' (%s) could not start: %s; available: %s", name, why,
                                 reason, ae_backend_names());
        }
        if (ae__debug())
            fprintf(stderr, "anyevent: backend %s (%s)\n", ops->name, why);
        return 0;
    }
    for (size_t i = 0; i < N_BUILTIN; i++) {
        if (backend_try(loop, builtin_backends[i]) == 0) {
            if (ae__debug())
                fprintf(stderr, "anyevent: backend %s (first that works in the order %s)\n",
                        builtin_backends[i]->name, ae_backend_names());
            return 0;
        }
        if (ae__debug())
            fprintf(stderr, "anyevent: backend %s skipped: %s\n", builtin_backends[i]->name, ae_last_error());
    }
    char last[256];
    snprintf(last, sizeof last, "%s", ae_last_error());
    return ae__set_error(AE_ENOENT, "no backend could be started; last error: %s", last);
}
