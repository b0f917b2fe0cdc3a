/*
 * gw_http — the HTTP server plumbing over libevent's evhttp: one listener, a small router
 * (method + exact path or path prefix), JSON replies and errors in the contract's shape
 * {"error":{"code":"…","message":"…"}}, body reading with a size limit, and counters of
 * replies by status for /metrics.
 *
 * Every reply must go through gw_http_reply/json/error so it is counted. A handler must
 * answer each request exactly once, now or later (evhttp keeps the request alive until then,
 * even if the client went away).
 */
#ifndef GW_HTTP_H
#define GW_HTTP_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct evhttp_request;
struct gw_http;

/* tail: the part of the path after a prefix route's prefix (without query), "" for exact. */
typedef void (*gw_http_fn)(struct evhttp_request *req, void *arg, const char *tail);

enum { GW_HTTP_EXACT = 0, GW_HTTP_PREFIX = 1 };

struct gw_http *gw_http_new(struct event_base *base, size_t max_body);

/* Connection and per-address limits ([gateway] in the configuration). Beyond max_connections
 * (or max_connections_per_address from one client address) a new connection's first request
 * gets 503 too_many_connections and the connection is closed. The public endpoints (/api/,
 * /ussd/, /providers/, /admin/api/login) allow address_rate requests a second per client
 * address (0 = no limit), then 429 rate_limited with Retry-After. Addresses in rate_exempt
 * (copied) escape both per-address limits. May be called again (SIGHUP). */
struct gw_http_limits {
    int max_connections, max_connections_per_address, address_rate;
    const char *rate_exempt;
};
void gw_http_set_limits(struct gw_http *h, const struct gw_http_limits *lim);

/* Call fn(evcon, arg) when the connection of req closes (fn NULL: no longer). gw_http owns the
 * connection's close callback (it counts connections): a handler must not set its own. */
struct evhttp_connection;
typedef void (*gw_http_close_fn)(struct evhttp_connection *evcon, void *arg);
void gw_http_on_close(struct gw_http *h, struct evhttp_request *req, gw_http_close_fn fn,
                      void *arg);
struct evbuffer;
void gw_http_metrics(const struct gw_http *h, struct evbuffer *out);
int gw_http_listen(struct gw_http *h, const char *host, int port, char *err, size_t errlen)
    __attribute__((warn_unused_result));
/* methods: a mask of EVHTTP_REQ_GET | EVHTTP_REQ_POST | … */
void gw_http_route(struct gw_http *h, int methods, const char *path, int kind, gw_http_fn fn,
                   void *arg);
void gw_http_free(struct gw_http *h);
/* Stop accepting new connections (shutdown). */
void gw_http_close_listener(struct gw_http *h);
size_t gw_http_max_body(const struct gw_http *h);

void gw_http_reply(struct evhttp_request *req, int status, const char *content_type,
                   const char *body, size_t len);
/* Steals the reference to body. */
void gw_http_json(struct evhttp_request *req, int status, json_t *body);
void gw_http_error(struct evhttp_request *req, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Copy the request body into a new NUL-terminated buffer (caller frees). Returns 0, or
 * GW_EINVAL when it is larger than max bytes (nothing allocated). */
int gw_http_body(struct evhttp_request *req, size_t max, char **out, size_t *len)
    __attribute__((warn_unused_result));
const char *gw_http_header(struct evhttp_request *req, const char *name);
/* Decoded query-string parameter of the request URI, or NULL. Caller frees. */
char *gw_http_query_param(struct evhttp_request *req, const char *name);
const char *gw_http_method_name(struct evhttp_request *req);

/* Replies sent, by status code (index 100..599). */
uint64_t gw_http_count(int status);

#endif
