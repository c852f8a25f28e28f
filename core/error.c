/* Error codes, and the per-thread message of the last failed call. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static _Thread_local char last_message[512];
static _Thread_local int last_code;

const char *ae_strerror(int err)
{
    switch (err) {
    case AE_OK: return "success";
    case AE_EINVAL: return "invalid argument";
    case AE_ENOMEM: return "out of memory";
    case AE_EBADF: return "bad file descriptor";
    case AE_ENOENT: return "no such backend";
    case AE_ENOTSUP: return "not supported by this backend";
    case AE_ESYS: return "system call failed";
    case AE_ECROAKED: return "condition variable croaked";
    case AE_EDEADLK: return "would block forever";
    case AE_ELIMIT: return "backend limit reached";
    case AE_ESTATE: return "not allowed in this state";
    case AE_ESIGNAL: return "signal cannot be watched";
    case AE_EPROC: return "the other process failed";
    default: return "unknown error";
    }
}

const char *ae_last_error(void) { return last_message; }

int ae_last_error_code(void) { return last_code; }

int ae__set_error(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_message, sizeof last_message, fmt, ap);
    va_end(ap);
    last_code = code;
    if (ae__debug())
        fprintf(stderr, "anyevent: error: %s\n", last_message);
    return code;
}

int ae_set_error(int code, const char *fmt, ...)
{
    char msg[sizeof last_message];
    msg[0] = '\0';
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
    }
    return ae__set_error(code, "%s", msg);
}

void ae__error_reset(void)
{
    last_message[0] = '\0';
    last_code = 0;
}

/* strerror() may share one buffer between threads; strerror_r() comes in a
 * GNU flavour (returns the text) and a POSIX one (fills buf). */
static const char *errno_text(int err, char *buf, size_t size)
{
#if defined(__GLIBC__) && defined(_GNU_SOURCE)
    return strerror_r(err, buf, size);
#else
    if (strerror_r(err, buf, size) != 0)
        snprintf(buf, size, "error %d", err);
    return buf;
#endif
}

int ae__set_errno(const char *what)
{
    int saved = errno;
    int code = saved == ENOMEM ? AE_ENOMEM : saved == EBADF ? AE_EBADF : AE_ESYS;
    char buf[128];
    ae__set_error(code, "%s: %s", what, errno_text(saved, buf, sizeof buf));
    errno = saved;
    return code;
}

bool ae__debug(void)
{
    /* Read once: getenv is not safe against a concurrent setenv, and the
     * answer must not change mid-run. */
    static atomic_int cached = -1;
    int v = atomic_load_explicit(&cached, memory_order_relaxed);
    if (v < 0) {
        const char *e = getenv("ANYEVENT_DEBUG");
        v = e && *e && strcmp(e, "0") != 0;
        atomic_store_explicit(&cached, v, memory_order_relaxed);
    }
    return v;
}
