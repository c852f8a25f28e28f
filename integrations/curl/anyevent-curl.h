/*
 * anyevent-curl: drive a libcurl multi handle (CURLM *) from an anyevent loop.
 *
 * The integration owns the multi's CURLMOPT_SOCKETFUNCTION, SOCKETDATA,
 * TIMERFUNCTION and TIMERDATA: every socket libcurl reports gets one io
 * watcher (created when libcurl first reports it, switched in place with
 * ae_io_set() afterwards, freed on CURL_POLL_REMOVE), and the multi gets one
 * timer, re-armed in place with ae_timer_set() and stopped with
 * ae_timer_stop() when libcurl has no timeout. Readiness and timeouts are
 * handed to curl_multi_socket_action(); every transfer that finishes is
 * reported to the done callback. Nothing is allocated per event.
 * docs/integrations/curl.md is the long form.
 *
 *     CURLM *multi = curl_multi_init();
 *     ae_curl *ac = ae_curl_attach(loop, multi, on_done, state);
 *     curl_multi_add_handle(multi, easy);   ... as many as wanted
 *     ae_run(loop);                          returns when all are done
 *     ae_curl_detach(ac);
 *     curl_multi_cleanup(multi);
 */
#ifndef ANYEVENT_CURL_H
#define ANYEVENT_CURL_H

#include <curl/curl.h>

#include <anyevent.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ae_curl ae_curl;

/* Called once for each transfer that finished (libcurl's CURLMSG_DONE), with
 * its result: CURLE_OK, or why it failed (CURLE_COULDNT_CONNECT,
 * CURLE_OPERATION_TIMEDOUT, CURLE_HTTP_RETURNED_ERROR with
 * CURLOPT_FAILONERROR, ...). Before the call the easy handle has been removed
 * from the multi, so the callback owns it again: it may curl_easy_cleanup()
 * it, or set it up anew and curl_multi_add_handle() it again. It may add
 * other easy handles, and it may call ae_curl_detach(). */
typedef void (*ae_curl_done_cb)(ae_curl *ac, CURL *easy, CURLcode result, void *arg);

/* Drive multi from loop: sets the multi's socket and timer callbacks (and
 * their data pointers) to the integration's own; leave those four options
 * alone while attached. Easy handles may be added before or after attaching,
 * but the multi must not have been driven by other means (curl_multi_perform,
 * another socket callback) while they were in it. Transfers then
 * progress whenever the loop runs (ae_run(), or the host's own loop for an
 * adopted one), and a loop with nothing else to do returns once every
 * transfer has finished. A multi is attached to at most one loop at a time.
 * done (with arg) is called for each finished transfer.
 * Returns NULL on failure, with errno set: EINVAL (loop, multi or done is
 * NULL), ENOMEM, or EIO (anyevent could not make the timer, see
 * ae_last_error(), or libcurl refused an option). */
AE_EXPORT ae_curl *ae_curl_attach(ae_loop *loop, CURLM *multi, ae_curl_done_cb done, void *arg);

/* Stop driving the multi: frees every io watcher and the timer, and resets
 * the multi's socket and timer callbacks to none, so the multi can then be
 * cleaned up (curl_multi_cleanup()) or driven by other means. Transfers still
 * in flight stay in the multi, untouched: remove and clean them up yourself.
 * Detach before curl_multi_cleanup(). Allowed from inside the done callback
 * (no further done callback runs then); not from inside libcurl's own
 * callbacks (write, header, progress, ...). NULL is ignored. */
AE_EXPORT void ae_curl_detach(ae_curl *ac);

/* The first failure the integration met while driving the multi, or NULL if
 * none: anyevent refusing a socket (select()'s FD_SETSIZE, see
 * docs/api.md) or a timer, or curl_multi_socket_action() returning an error.
 * A refused socket is reported to libcurl, which then fails the transfers of
 * the multi: their done callbacks say so. */
AE_EXPORT const char *ae_curl_error(const ae_curl *ac);

#ifdef __cplusplus
}
#endif

#endif /* ANYEVENT_CURL_H */
