/*
 * gw_curl — libcurl's multi interface driven by the daemon's libevent loop (socket and timer
 * callbacks, as in curl's docs/examples/multi-event.c): HTTP requests to providers without a
 * thread and without blocking. One gw_curl per daemon; drivers hand it prepared easy handles.
 *
 * Ownership: gw_curl_perform takes the easy handle (and frees it after the callback). The
 * callback gets the response body (borrowed, NUL-terminated) and runs on the loop thread,
 * never inside gw_curl_perform. gw_curl_free aborts what is in flight without calling back.
 */
#ifndef GW_CURL_H
#define GW_CURL_H

#include <curl/curl.h>
#include <stddef.h>

struct event_base;
struct gw_curl;

/* rc: CURLE_OK when an HTTP answer came (any status); else the transport error (timeout,
 * refused, reset…) with status 0. errbuf: curl's error text ("" if none). */
typedef void (*gw_curl_done)(void *arg, CURLcode rc, long status, const char *body, size_t len,
                             const char *errbuf);

struct gw_curl *gw_curl_new(struct event_base *base);
void gw_curl_free(struct gw_curl *c);
/* Start a request. The response body is kept up to max_body bytes (more is an error). */
int gw_curl_perform(struct gw_curl *c, CURL *easy, size_t max_body, gw_curl_done cb, void *arg)
    __attribute__((warn_unused_result));
/* Requests in flight. */
int gw_curl_running(const struct gw_curl *c);

#endif
