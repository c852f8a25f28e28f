/* Name lookup off the loop: getaddrinfo() on a thread of its own per
 * lookup, its answer handed back through an eventfd watched by the loop.
 * The lookup's state is shared by the thread and the loop and freed by the
 * last of the two to let go, so a cancelled lookup is simply abandoned: the
 * thread finishes getaddrinfo() (which cannot be interrupted safely) and
 * frees what it holds; nothing of it reaches the loop again. */
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "internal.h"

struct ae_resolve {
    /* A resolver's lookup (ae_connect_set_resolver) instead of the thread's. */
    bool custom;
    ae_resolver resolver;
    void *resolver_ctx, *lookup;

    atomic_int refs; /* the thread's and the loop's */
    atomic_bool done; /* answer and gai_err are written */
    char *host, *service;
    int family;
    struct addrinfo *answer;
    int gai_err;
    int efd;
    ae_watcher *io;
    ae_resolve_cb cb;
    void *arg;
};

static void resolve_unref(ae_resolve *r)
{
    if (atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) != 1)
        return;
    if (r->answer)
        freeaddrinfo(r->answer);
    close(r->efd);
    free(r->host);
    free(r->service);
    free(r);
}

static void *resolve_thread(void *arg)
{
    ae_resolve *r = arg;
    struct addrinfo hints = {.ai_family = r->family, .ai_socktype = SOCK_STREAM};
    r->gai_err = getaddrinfo(r->host, r->service, &hints, &r->answer);
    atomic_store_explicit(&r->done, true, memory_order_release);
    uint64_t one = 1;
    (void)!write(r->efd, &one, sizeof one);
    resolve_unref(r);
    return NULL;
}

static void on_answer(ae_watcher *w, int revents, void *arg)
{
    (void)w;
    (void)revents;
    ae_resolve *r = arg;
    if (!atomic_load_explicit(&r->done, memory_order_acquire))
        return;
    struct addrinfo *answer = r->answer;
    int err = r->gai_err;
    r->answer = NULL;
    ae_resolve_cb cb = r->cb;
    void *cb_arg = r->arg;
    ae_watcher_free(r->io);
    resolve_unref(r);
    cb(answer, err, cb_arg);
    if (answer)
        freeaddrinfo(answer);
}

static void custom_done(struct addrinfo *answer, int gai_err, void *arg)
{
    ae_resolve *r = arg;
    ae_resolver resolver = r->resolver;
    void *ctx = r->resolver_ctx;
    ae_resolve_cb cb = r->cb;
    void *cb_arg = r->arg;
    free(r);
    cb(answer, answer ? 0 : (gai_err ? gai_err : EAI_FAIL), cb_arg);
    if (answer)
        resolver.free_answer(ctx, answer);
}

static ae_resolve *custom_start(const ae_resolver *resolver, void *ctx, const char *host, const char *service,
                                int family, ae_resolve_cb cb, void *arg)
{
    ae_resolve *r = calloc(1, sizeof *r);
    if (!r) {
        ae__set_error(AE_ENOMEM, "name lookup: out of memory");
        return NULL;
    }
    r->custom = true;
    r->resolver = *resolver;
    r->resolver_ctx = ctx;
    r->cb = cb;
    r->arg = arg;
    r->lookup = resolver->start(ctx, host, service, family, custom_done, r);
    if (!r->lookup) {
        free(r);
        return NULL;
    }
    return r;
}

ae_resolve *ae__resolve_start(ae_loop *loop, const char *host, const char *service, int family, ae_resolve_cb cb,
                              void *arg)
{
    void *ctx;
    const ae_resolver *resolver = ae__layer_resolver(loop, &ctx);
    if (resolver)
        return custom_start(resolver, ctx, host, service, family, cb, arg);
    ae_resolve *r = calloc(1, sizeof *r);
    if (!r) {
        ae__set_error(AE_ENOMEM, "name lookup: out of memory");
        return NULL;
    }
    r->efd = -1;
    r->host = strdup(host);
    r->service = strdup(service);
    r->family = family;
    r->cb = cb;
    r->arg = arg;
    r->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (!r->host || !r->service || r->efd < 0) {
        ae__set_errno("name lookup");
        goto fail;
    }
    r->io = ae_io(loop, r->efd, AE_READ, on_answer, r);
    if (!r->io)
        goto fail;
    atomic_init(&r->refs, 2);
    atomic_init(&r->done, false);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    /* The thread takes no signal: they stay with the program's threads. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_t t;
    int rc = pthread_create(&t, &attr, resolve_thread, r);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        ae__set_error(AE_ESYS, "name lookup: pthread_create: %s", strerror(rc));
        ae_watcher_free(r->io);
        goto fail;
    }
    return r;
fail:
    if (r->efd >= 0)
        close(r->efd);
    free(r->host);
    free(r->service);
    free(r);
    return NULL;
}

void ae__resolve_cancel(ae_resolve *r)
{
    if (r->custom) {
        r->resolver.cancel(r->resolver_ctx, r->lookup);
        free(r);
        return;
    }
    ae_watcher_free(r->io);
    r->io = NULL;
    resolve_unref(r);
}
