/* gw_http — see gw_http.h. */
#include "gw_http.h"
#include "gw_limit.h"
#include "gw_log.h"
#include "gw_metrics.h"
#include "gw_util.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <stdarg.h>
#include <sys/queue.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uthash.h>

struct route {
    int methods;
    char *path;
    size_t len;
    int kind;
    gw_http_fn fn;
    void *arg;
};

/* A client connection, from its first request until it closes (evhttp has no hook at accept
 * time in libevent 2.1: a connection counts once it has sent a request's headers; one that
 * never does is closed by the read timeout). */
struct conn {
    struct evhttp_connection *evcon; /* the key */
    struct gw_http *h;
    struct peer *peer;
    gw_http_close_fn on_close; /* a handler's interest in the close (gw_http_on_close) */
    void *on_close_arg;
    UT_hash_handle hh;
};

/* Open connections by client address. */
struct peer {
    int conns;
    UT_hash_handle hh;
    char addr[]; /* the key */
};

struct gw_http {
    struct event_base *base;
    struct evhttp *http;
    struct evhttp_bound_socket *sock;
    size_t max_body;
    struct route *routes;
    size_t nroutes;
    struct gw_http_limits lim;
    char *exempt;
    struct gw_limit *addr_rate;
    struct conn *conns;
    struct peer *peers;
    int nconns;
    uint64_t refused_conns, rate_limited;
};

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void conn_closed(struct evhttp_connection *evcon, void *arg)
{
    struct gw_http *h = arg;
    struct conn *c;
    HASH_FIND_PTR(h->conns, &evcon, c);
    if (!c)
        return; /* evhttp may call this more than once */
    HASH_DEL(h->conns, c);
    h->nconns--;
    if (c->on_close)
        c->on_close(evcon, c->on_close_arg);
    if (--c->peer->conns == 0) {
        HASH_DEL(h->peers, c->peer);
        free(c->peer);
    }
    free(c);
}

static int exempt(const struct gw_http *h, const char *addr)
{
    return h->exempt && *h->exempt && gw_addr_in_list(h->exempt, addr) == 1;
}

/* Count the request's connection when it is new. Returns 0, or -1 after answering 503 (the
 * connection is then closed after the answer). */
static int conn_admit(struct gw_http *h, struct evhttp_request *req, const char **addr_out)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    *addr_out = "";
    if (!evcon)
        return 0;
    struct conn *c;
    HASH_FIND_PTR(h->conns, &evcon, c);
    if (c) {
        *addr_out = c->peer->addr;
        return 0;
    }
    char *addr = NULL;
    ev_uint16_t port = 0;
    evhttp_connection_get_peer(evcon, &addr, &port);
    const char *a = addr ? addr : "";
    struct peer *p;
    HASH_FIND_STR(h->peers, a, p);
    int over = h->nconns >= h->lim.max_connections;
    if (!over && p && !exempt(h, a) && p->conns >= h->lim.max_connections_per_address)
        over = 2;
    if (over) {
        h->refused_conns++;
        gw_warn("http", "refused a connection from %s: %s (%d open)", a,
                over == 1 ? "max_connections reached" : "max_connections_per_address reached",
                over == 1 ? h->nconns : p->conns);
        evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "5");
        gw_http_error(req, 503, "too_many_connections",
                      "too many open connections%s; try again in a few seconds",
                      over == 1 ? "" : " from your address");
        return -1;
    }
    if (!p) {
        size_t len = strlen(a);
        p = calloc(1, sizeof *p + len + 1);
        if (!p)
            abort();
        memcpy(p->addr, a, len + 1);
        HASH_ADD_KEYPTR(hh, h->peers, p->addr, len, p);
    }
    c = calloc(1, sizeof *c);
    if (!c)
        abort();
    c->evcon = evcon;
    c->h = h;
    c->peer = p;
    p->conns++;
    h->nconns++;
    HASH_ADD_PTR(h->conns, evcon, c);
    evhttp_connection_set_closecb(evcon, conn_closed, h);
    *addr_out = p->addr;
    return 0;
}

/* The endpoints anyone can reach without an operator token: each client address gets
 * address_rate requests a second (burst: two seconds' worth). */
static int public_path(const char *path)
{
    static const char *const prefixes[] = {"/api/", "/ussd/", "/providers/",
                                           "/admin/api/login"};
    for (size_t i = 0; i < sizeof prefixes / sizeof *prefixes; i++)
        if (!strncmp(path, prefixes[i], strlen(prefixes[i])))
            return 1;
    return 0;
}

void gw_http_on_close(struct gw_http *h, struct evhttp_request *req, gw_http_close_fn fn,
                      void *arg)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    struct conn *c = NULL;
    if (evcon)
        HASH_FIND_PTR(h->conns, &evcon, c);
    if (c) {
        c->on_close = fn;
        c->on_close_arg = arg;
    }
}

void gw_http_set_limits(struct gw_http *h, const struct gw_http_limits *lim)
{
    h->lim = *lim;
    if (h->lim.max_connections < 1)
        h->lim.max_connections = 1;
    if (h->lim.max_connections_per_address < 1)
        h->lim.max_connections_per_address = 1;
    free(h->exempt);
    h->exempt = lim->rate_exempt ? strdup(lim->rate_exempt) : NULL;
    h->lim.rate_exempt = NULL;
    gw_limit_set(h->addr_rate, lim->address_rate, 2.0 * lim->address_rate);
}

void gw_http_metrics(const struct gw_http *h, struct evbuffer *out)
{
    gw_metric_head(out, "passerelle_http_connections", "gauge",
                   "Client connections open (counted from their first request).");
    evbuffer_add_printf(out, "passerelle_http_connections %d\n", h->nconns);
    gw_metric_head(out, "passerelle_http_connections_refused_total", "counter",
                   "Connections answered 503 too_many_connections.");
    evbuffer_add_printf(out, "passerelle_http_connections_refused_total %llu\n",
                        (unsigned long long)h->refused_conns);
    gw_metric_head(out, "passerelle_http_rate_limited_total", "counter",
                   "Requests answered 429 by the per-address limit of the public endpoints.");
    evbuffer_add_printf(out, "passerelle_http_rate_limited_total %llu\n",
                        (unsigned long long)h->rate_limited);
}

static uint64_t status_counts[600];

uint64_t gw_http_count(int status)
{
    return status >= 100 && status < 600 ? status_counts[status] : 0;
}

void gw_http_reply(struct evhttp_request *req, int status, const char *content_type,
                   const char *body, size_t len)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    if (content_type)
        evhttp_add_header(h, "Content-Type", content_type);
    evhttp_add_header(h, "Cache-Control", "no-store");
    struct evbuffer *b = evbuffer_new();
    if (body && len)
        evbuffer_add(b, body, len);
    if (status >= 100 && status < 600)
        status_counts[status]++;
    evhttp_send_reply(req, status, NULL, b);
    evbuffer_free(b);
}

void gw_http_json(struct evhttp_request *req, int status, json_t *body)
{
    char *s = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (!s) {
        gw_http_reply(req, 500, "application/json",
                      "{\"error\":{\"code\":\"internal\",\"message\":\"cannot encode reply\"}}",
                      61);
        return;
    }
    size_t n = strlen(s);
    /* a trailing newline makes curl output readable */
    char *t = realloc(s, n + 2);
    if (!t)
        abort();
    t[n] = '\n';
    t[n + 1] = '\0';
    gw_http_reply(req, status, "application/json; charset=utf-8", t, n + 1);
    free(t);
}

void gw_http_error(struct evhttp_request *req, int status, const char *code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_t *o = json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", msg);
    gw_http_json(req, status, o);
}

int gw_http_body(struct evhttp_request *req, size_t max, char **out, size_t *len)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in);
    if (n > max)
        return GW_EINVAL;
    char *b = malloc(n + 1);
    if (!b)
        abort();
    if (n)
        evbuffer_copyout(in, b, n);
    b[n] = '\0';
    *out = b;
    if (len)
        *len = n;
    return GW_OK;
}

const char *gw_http_header(struct evhttp_request *req, const char *name)
{
    return evhttp_find_header(evhttp_request_get_input_headers(req), name);
}

char *gw_http_query_param(struct evhttp_request *req, const char *name)
{
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *q = uri ? evhttp_uri_get_query(uri) : NULL;
    if (!q)
        return NULL;
    struct evkeyvalq params;
    TAILQ_INIT(&params);
    if (evhttp_parse_query_str(q, &params) < 0)
        return NULL;
    const char *v = evhttp_find_header(&params, name);
    char *r = v ? strdup(v) : NULL;
    evhttp_clear_headers(&params);
    return r;
}

const char *gw_http_method_name(struct evhttp_request *req)
{
    switch (evhttp_request_get_command(req)) {
    case EVHTTP_REQ_GET:
        return "GET";
    case EVHTTP_REQ_POST:
        return "POST";
    case EVHTTP_REQ_PUT:
        return "PUT";
    case EVHTTP_REQ_DELETE:
        return "DELETE";
    case EVHTTP_REQ_PATCH:
        return "PATCH";
    case EVHTTP_REQ_HEAD:
        return "HEAD";
    case EVHTTP_REQ_OPTIONS:
        return "OPTIONS";
    default:
        return "OTHER";
    }
}

/* One entry point for every request: find the route by path, then check the method. */
static void on_request(struct evhttp_request *req, void *arg)
{
    struct gw_http *h = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    if (!path || !*path) {
        gw_http_error(req, 400, "bad_request", "malformed request URI");
        return;
    }
    const char *addr;
    if (conn_admit(h, req, &addr) < 0)
        return;
    double wait;
    if (public_path(path) && !exempt(h, addr) &&
        !gw_limit_take(h->addr_rate, addr, mono_now(), &wait)) {
        h->rate_limited++;
        char ra[16];
        snprintf(ra, sizeof ra, "%d", (int)wait + 1);
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", ra);
        gw_http_error(req, 429, "rate_limited",
                      "more than %d requests a second from your address; retry in %s s",
                      h->lim.address_rate, ra);
        return;
    }
    int path_matched = 0;
    int cmd = (int)evhttp_request_get_command(req);
    for (size_t i = 0; i < h->nroutes; i++) {
        struct route *r = &h->routes[i];
        int match = r->kind == GW_HTTP_EXACT ? strcmp(path, r->path) == 0
                                             : strncmp(path, r->path, r->len) == 0;
        if (!match)
            continue;
        path_matched = 1;
        if (!(r->methods & cmd))
            continue;
        r->fn(req, r->arg, r->kind == GW_HTTP_EXACT ? "" : path + r->len);
        return;
    }
    if (path_matched)
        gw_http_error(req, 405, "method_not_allowed", "%s is not allowed on %s",
                      gw_http_method_name(req), path);
    else
        gw_http_error(req, 404, "not_found", "no such endpoint: %s", path);
}

struct gw_http *gw_http_new(struct event_base *base, size_t max_body)
{
    struct gw_http *h = calloc(1, sizeof *h);
    if (!h)
        abort();
    h->base = base;
    h->max_body = max_body;
    h->addr_rate = gw_limit_new(0, 1);
    h->lim = (struct gw_http_limits){.max_connections = 1024,
                                     .max_connections_per_address = 1024};
    h->http = evhttp_new(base);
    if (!h->http)
        abort();
    /* evhttp's own hard limit sits well above ours, so that a body over max_body still gets
     * our JSON 413; past the hard limit evhttp answers 413 itself and drops the connection. */
    size_t hard = max_body * 4 > (1u << 20) ? max_body * 4 : (1u << 20);
    evhttp_set_max_body_size(h->http, (ev_ssize_t)hard);
    evhttp_set_max_headers_size(h->http, 16384);
    evhttp_set_timeout(h->http, 30);
    evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                            EVHTTP_REQ_DELETE | EVHTTP_REQ_PATCH | EVHTTP_REQ_HEAD |
                                            EVHTTP_REQ_OPTIONS);
    evhttp_set_gencb(h->http, on_request, h);
    return h;
}

size_t gw_http_max_body(const struct gw_http *h)
{
    return h->max_body;
}

/* The listen backlog: connections the kernel completes before the loop accepts them. libevent's
 * evhttp_bind_socket uses 128; a burst of more new connections (clients starting together, a
 * proxy opening its pool) then loses SYNs, and each lost one costs its client a 1 s
 * retransmission. The kernel caps it at net.core.somaxconn. */
#define LISTEN_BACKLOG 4096

int gw_http_listen(struct gw_http *h, const char *host, int port, char *err, size_t errlen)
{
    char portstr[8];
    snprintf(portstr, sizeof portstr, "%d", port);
    struct evutil_addrinfo hints = {.ai_family = AF_UNSPEC,
                                    .ai_socktype = SOCK_STREAM,
                                    .ai_flags = EVUTIL_AI_PASSIVE | EVUTIL_AI_ADDRCONFIG};
    struct evutil_addrinfo *ai = NULL;
    int rc = evutil_getaddrinfo(host, portstr, &hints, &ai);
    if (rc != 0 || !ai) {
        snprintf(err, errlen, "cannot listen on %s:%d (%s)", host, port,
                 rc ? evutil_gai_strerror(rc) : "no address");
        return GW_EINVAL;
    }
    struct evconnlistener *l = evconnlistener_new_bind(
        h->base, NULL, NULL, LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_CLOSE_ON_FREE,
        LISTEN_BACKLOG, ai->ai_addr, (int)ai->ai_addrlen);
    evutil_freeaddrinfo(ai);
    h->sock = l ? evhttp_bind_listener(h->http, l) : NULL;
    if (!h->sock) {
        if (l)
            evconnlistener_free(l);
        snprintf(err, errlen, "cannot listen on %s:%d (address in use or not available)", host,
                 port);
        return GW_EINVAL;
    }
    return GW_OK;
}

void gw_http_close_listener(struct gw_http *h)
{
    if (h->sock) {
        evhttp_del_accept_socket(h->http, h->sock);
        h->sock = NULL;
    }
}

void gw_http_route(struct gw_http *h, int methods, const char *path, int kind, gw_http_fn fn,
                   void *arg)
{
    struct route *r = realloc(h->routes, (h->nroutes + 1) * sizeof *r);
    if (!r)
        abort();
    h->routes = r;
    r = &h->routes[h->nroutes++];
    r->methods = methods;
    r->path = strdup(path);
    if (!r->path)
        abort();
    r->len = strlen(path);
    r->kind = kind;
    r->fn = fn;
    r->arg = arg;
}

void gw_http_free(struct gw_http *h)
{
    if (!h)
        return;
    /* evhttp_free frees every connection, and evhttp_connection_free runs its close callback:
     * conn_closed empties h->conns and h->peers (their evcon would be freed memory after this,
     * so nothing here may look at them again) */
    evhttp_free(h->http);
    gw_limit_free(h->addr_rate);
    free(h->exempt);
    for (size_t i = 0; i < h->nroutes; i++)
        free(h->routes[i].path);
    free(h->routes);
    free(h);
}
