/* Condition variables: a value that becomes ready once, waited for by running
 * the loop (after AnyEvent's condvars). */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static bool cv_ok(const ae_cv *cv, const char *fn)
{
    if (!cv || cv->magic != AE_CV_MAGIC) {
        ae__set_error(AE_EINVAL, "%s: not a live condvar", fn);
        return false;
    }
    return true;
}

ae_cv *ae_cv_new(ae_loop *loop)
{
    if (!ae__loop_ok(loop, "ae_cv_new"))
        return NULL;
    ae_cv *cv = calloc(1, sizeof *cv);
    if (!cv) {
        ae__set_error(AE_ENOMEM, "ae_cv_new: out of memory");
        return NULL;
    }
    cv->magic = AE_CV_MAGIC;
    cv->loop = loop;
    cv->next = loop->cvs;
    if (loop->cvs)
        loop->cvs->prev = cv;
    loop->cvs = cv;
    return cv;
}

static void cv_destroy(ae_cv *cv)
{
    ae_loop *loop = cv->loop;
    if (cv->prev)
        cv->prev->next = cv->next;
    else
        loop->cvs = cv->next;
    if (cv->next)
        cv->next->prev = cv->prev;
    cv->magic = 0;
    free(cv->error);
    free(cv);
}

void ae_cv_free(ae_cv *cv)
{
    if (!cv || !cv_ok(cv, "ae_cv_free"))
        return;
    if (cv->recv_depth > 0) {
        /* ae_cv_recv() still waits on it; it frees the condvar on return. */
        cv->free_requested = true;
        cv->cb = NULL;
        return;
    }
    cv_destroy(cv);
}

void ae__cvs_free(ae_loop *loop)
{
    while (loop->cvs)
        cv_destroy(loop->cvs);
}

/* Ready: run the callback last, as it may free the condvar. */
static void cv_fire(ae_cv *cv)
{
    cv->ready = true;
    if (cv->cb)
        cv->cb(cv, cv->cb_arg);
}

int ae_cv_send(ae_cv *cv, void *value)
{
    if (!cv_ok(cv, "ae_cv_send"))
        return AE_EINVAL;
    if (cv->ready)
        return ae__set_error(AE_ESTATE, "ae_cv_send: condvar is already %s", cv->error ? "croaked" : "sent");
    cv->value = value;
    cv_fire(cv);
    return 0;
}

int ae_cv_croak(ae_cv *cv, const char *message)
{
    if (!cv_ok(cv, "ae_cv_croak"))
        return AE_EINVAL;
    if (cv->ready)
        return ae__set_error(AE_ESTATE, "ae_cv_croak: condvar is already %s", cv->error ? "croaked" : "sent");
    cv->error = strdup(message ? message : "croaked");
    if (!cv->error)
        return ae__set_error(AE_ENOMEM, "ae_cv_croak: out of memory");
    cv_fire(cv);
    return 0;
}

int ae_cv_begin(ae_cv *cv)
{
    if (!cv_ok(cv, "ae_cv_begin"))
        return AE_EINVAL;
    if (cv->ready)
        return ae__set_error(AE_ESTATE, "ae_cv_begin: condvar is already ready");
    cv->count++;
    return 0;
}

int ae_cv_end(ae_cv *cv)
{
    if (!cv_ok(cv, "ae_cv_end"))
        return AE_EINVAL;
    if (cv->count <= 0)
        return ae__set_error(AE_ESTATE, "ae_cv_end: without a matching ae_cv_begin");
    if (--cv->count == 0 && !cv->ready)
        return ae_cv_send(cv, NULL);
    return 0;
}

void ae_cv_cb(ae_cv *cv, void (*cb)(ae_cv *, void *), void *arg)
{
    if (!cv_ok(cv, "ae_cv_cb"))
        return;
    cv->cb = cb;
    cv->cb_arg = arg;
    if (cv->ready && cb)
        cb(cv, arg);
}

int ae_cv_ready(const ae_cv *cv)
{
    if (!cv_ok(cv, "ae_cv_ready"))
        return 0;
    return cv->ready;
}

const char *ae_cv_error(const ae_cv *cv)
{
    if (!cv_ok(cv, "ae_cv_error"))
        return NULL;
    return cv->error;
}

static int cv_result(ae_cv *cv, void **value)
{
    if (cv->error)
        return ae__set_error(AE_ECROAKED, "ae_cv_recv: croaked: %s", cv->error);
    if (value)
        *value = cv->value;
    return 0;
}

int ae_cv_recv(ae_cv *cv, void **value)
{
    if (!cv_ok(cv, "ae_cv_recv"))
        return AE_EINVAL;
    if (cv->ready)
        return cv_result(cv, value);
    ae_loop *loop = cv->loop;
    int rc = ae__loop_reenter_check(loop, "ae_cv_recv");
    if (rc < 0)
        return rc;
    ae__loop_enter(loop);
    cv->recv_depth++;
    while (!cv->ready && !cv->free_requested) {
        if (loop->free_requested) {
            rc = ae__set_error(AE_ESTATE, "ae_cv_recv: the loop was freed while waiting");
            break;
        }
        if (loop->active == 0) {
            rc = ae__set_error(AE_EDEADLK, "ae_cv_recv: no active watcher is left that could make the condvar ready");
            break;
        }
        rc = ae__run_once_entered(loop);
        if (rc < 0)
            break;
        rc = 0;
    }
    cv->recv_depth--;
    if (rc == 0)
        rc = cv->ready ? cv_result(cv, value)
                       : ae__set_error(AE_ESTATE, "ae_cv_recv: the condvar was freed while waiting");
    if (cv->free_requested && cv->recv_depth == 0)
        cv_destroy(cv);
    /* Last: leaving may free the loop, and the condvar with it. */
    ae__loop_leave(loop);
    return rc;
}
