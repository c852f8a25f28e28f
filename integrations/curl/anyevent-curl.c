/*
 * anyevent-curl: libcurl's "multi_socket" interface on an anyevent loop.
 *
 * libcurl tells us, through the socket callback, which sockets to watch for
 * what, and through the timer callback when to call it back without
 * readiness. We keep one record per socket (found again with
 * curl_multi_assign()'s per-socket pointer) holding one io watcher, and one
 * timer for the whole multi. Both are switched in place (ae_io_set(),
 * ae_timer_set(), ae_timer_stop()); the only allocations are one record and one watcher per
 * socket libcurl opens.
 */
#include "anyevent-curl.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

struct ae_curl_socket {
    ae_curl *owner;
    curl_socket_t fd;
    int events; /* AE_READ | AE_WRITE currently set on io */
    ae_watcher *io;
    struct ae_curl_socket *next, *prev; /* the owner's list, for detach */
};

struct ae_curl {
    ae_loop *loop;
    CURLM *multi;
    ae_curl_done_cb done;
    void *arg;
    ae_watcher *timer; /* active exactly while libcurl wants a timeout */
    struct ae_curl_socket *sockets;
    /* Calls of drive() in progress: a detach from the done callback defers
     * freeing this struct until the outermost one returns. */
    int depth;
    int detached;
    int failed;
    char error[256];
};

static void note_error(ae_curl *ac, const char *fmt, ...)
{
    if (ac->failed)
        return; /* the first failure is the one that explains the rest */
    ac->failed = 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ac->error, sizeof ac->error, fmt, ap);
    va_end(ap);
}

/* Hand every finished transfer to the done callback. The message is copied
 * before curl_multi_remove_handle(), which invalidates it. */
static void report_done(ae_curl *ac)
{
    CURLMsg *msg;
    int left;
    while (!ac->detached && (msg = curl_multi_info_read(ac->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *easy = msg->easy_handle;
        CURLcode result = msg->data.result;
        CURLMcode rc = curl_multi_remove_handle(ac->multi, easy);
        if (rc != CURLM_OK)
            note_error(ac, "curl_multi_remove_handle: %s", curl_multi_strerror(rc));
        ac->done(ac, easy, result, ac->arg);
    }
}

static int on_timer_request(CURLM *multi, long timeout_ms, void *userp);

/* libcurl only calls the timer callback when its earliest deadline changes.
 * If our timer fired before that deadline (libcurl rounds the time left down
 * to the millisecond, and a timer's delay counts from the loop's cached
 * time), nothing expired, and libcurl would not ask again: ask it. */
static void rearm_if_early(ae_curl *ac)
{
    long timeout_ms;
    if (curl_multi_timeout(ac->multi, &timeout_ms) == CURLM_OK && timeout_ms >= 0)
        on_timer_request(ac->multi, timeout_ms, ac);
}

static void drive(ae_curl *ac, curl_socket_t fd, int curl_events)
{
    int running;
    ac->depth++;
    CURLMcode rc = curl_multi_socket_action(ac->multi, fd, curl_events, &running);
    if (rc != CURLM_OK)
        note_error(ac, "curl_multi_socket_action: %s", curl_multi_strerror(rc));
    /* The timer fired (a one-shot is inactive in its callback) and the
     * action did not re-arm it. */
    if (fd == CURL_SOCKET_TIMEOUT && !ae_watcher_active(ac->timer))
        rearm_if_early(ac);
    report_done(ac);
    if (--ac->depth == 0 && ac->detached)
        free(ac);
}

static void on_io(ae_watcher *w, int revents, void *arg)
{
    (void)w;
    /* The record may be freed by the CURL_POLL_REMOVE drive() causes. */
    struct ae_curl_socket *s = arg;
    ae_curl *ac = s->owner;
    int curl_events = 0;
    if (revents & AE_READ)
        curl_events |= CURL_CSELECT_IN;
    if (revents & AE_WRITE)
        curl_events |= CURL_CSELECT_OUT;
    if (revents & AE_ERROR) {
        /* The fd was closed behind our back and the watcher paused: let
         * libcurl see the error; a later report re-arms the watcher. */
        s->events = 0;
        curl_events |= CURL_CSELECT_ERR;
    }
    drive(ac, s->fd, curl_events);
}

static void on_timer(ae_watcher *w, void *arg)
{
    (void)w;
    drive(arg, CURL_SOCKET_TIMEOUT, 0);
}

static void socket_unlink(ae_curl *ac, struct ae_curl_socket *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        ac->sockets = s->next;
    if (s->next)
        s->next->prev = s->prev;
}

static void socket_free(ae_curl *ac, struct ae_curl_socket *s)
{
    socket_unlink(ac, s);
    ae_watcher_free(s->io);
    free(s);
}

static struct ae_curl_socket *socket_new(ae_curl *ac, curl_socket_t fd, int events)
{
    struct ae_curl_socket *s = calloc(1, sizeof *s);
    if (!s) {
        note_error(ac, "socket %d: out of memory", (int)fd);
        return NULL;
    }
    s->owner = ac;
    s->fd = fd;
    s->events = events;
    s->io = ae_io(ac->loop, fd, events, on_io, s);
    if (!s->io) {
        note_error(ac, "socket %d: %s", (int)fd, ae_last_error());
        free(s);
        return NULL;
    }
    CURLMcode rc = curl_multi_assign(ac->multi, fd, s);
    if (rc != CURLM_OK) {
        note_error(ac, "curl_multi_assign(%d): %s", (int)fd, curl_multi_strerror(rc));
        ae_watcher_free(s->io);
        free(s);
        return NULL;
    }
    s->next = ac->sockets;
    if (s->next)
        s->next->prev = s;
    ac->sockets = s;
    return s;
}

/* CURLMOPT_SOCKETFUNCTION. Returning -1 makes libcurl fail the transfers. */
static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)easy;
    ae_curl *ac = userp;
    struct ae_curl_socket *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (s)
            socket_free(ac, s);
        return 0;
    }
    int events = ((what & CURL_POLL_IN) ? AE_READ : 0) | ((what & CURL_POLL_OUT) ? AE_WRITE : 0);
    if (!s)
        return socket_new(ac, fd, events) ? 0 : -1;
    if (events == s->events)
        return 0;
    int err = ae_io_set(s->io, events);
    if (err < 0) {
        note_error(ac, "socket %d: %s", (int)fd, ae_last_error());
        return -1;
    }
    s->events = events;
    return 0;
}

/* CURLMOPT_TIMERFUNCTION. curl_multi_socket_action() must not be called from
 * here, so even "now" (0) goes through the timer, which fires in the next
 * iteration. */
static int on_timer_request(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    ae_curl *ac = userp;
    /* -1: no timeout. Disarmed, the timer neither fires nor keeps the loop
     * (or the host's) alive; a later request re-arms it. */
    int rc = timeout_ms < 0 ? ae_timer_stop(ac->timer)
                            : ae_timer_set(ac->timer, (double)timeout_ms / 1000.0, 0);
    if (rc < 0) {
        note_error(ac, "timer: %s", ae_last_error());
        return -1;
    }
    return 0;
}

/* Reset the four options to "none"; returns the first failure or CURLM_OK. */
static CURLMcode callbacks_reset(CURLM *multi)
{
    CURLMcode rc = curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, (curl_socket_callback)NULL);
    if (rc == CURLM_OK)
        rc = curl_multi_setopt(multi, CURLMOPT_SOCKETDATA, (void *)NULL);
    if (rc == CURLM_OK)
        rc = curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, (curl_multi_timer_callback)NULL);
    if (rc == CURLM_OK)
        rc = curl_multi_setopt(multi, CURLMOPT_TIMERDATA, (void *)NULL);
    return rc;
}

ae_curl *ae_curl_attach(ae_loop *loop, CURLM *multi, ae_curl_done_cb done, void *arg)
{
    if (!loop || !multi || !done) {
        errno = EINVAL;
        return NULL;
    }
    ae_curl *ac = calloc(1, sizeof *ac);
    if (!ac) {
        errno = ENOMEM;
        return NULL;
    }
    ac->loop = loop;
    ac->multi = multi;
    ac->done = done;
    ac->arg = arg;
    /* The one timer, made once. It first fires in the loop's next
     * iteration, so easy handles added before attaching start then. */
    ac->timer = ae_timer(loop, 0, 0, on_timer, ac);
    if (!ac->timer) {
        free(ac);
        errno = ae_last_error_code() == AE_ENOMEM ? ENOMEM : EIO;
        return NULL;
    }
    CURLMcode rc = curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    if (rc == CURLM_OK)
        rc = curl_multi_setopt(multi, CURLMOPT_SOCKETDATA, ac);
    if (rc == CURLM_OK)
        rc = curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, on_timer_request);
    if (rc == CURLM_OK)
        rc = curl_multi_setopt(multi, CURLMOPT_TIMERDATA, ac);
    if (rc != CURLM_OK) {
        callbacks_reset(multi);
        ae_watcher_free(ac->timer);
        free(ac);
        errno = rc == CURLM_OUT_OF_MEMORY ? ENOMEM : EIO;
        return NULL;
    }
    return ac;
}

void ae_curl_detach(ae_curl *ac)
{
    if (!ac || ac->detached)
        return;
    /* Nothing of ours may be called back once we are gone. Resetting a
     * function pointer option cannot fail on a valid multi. */
    callbacks_reset(ac->multi);
    while (ac->sockets) {
        struct ae_curl_socket *s = ac->sockets;
        curl_multi_assign(ac->multi, s->fd, NULL);
        socket_free(ac, s);
    }
    ae_watcher_free(ac->timer);
    ac->timer = NULL;
    ac->detached = 1;
    if (ac->depth == 0)
        free(ac);
}

const char *ae_curl_error(const ae_curl *ac)
{
    return ac && ac->failed ? ac->error : NULL;
}
