/* gw_http — see gw_http.h. */
#include "gw_http.h"
#include "gw_log.h"
#include "gw_util.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdarg.h>
#include <sys/queue.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct route {
    int methods;
    char *path;
    size_t len;
    int kind;
    gw_http_fn fn;
    void *arg;
};

struct gw_http {
    struct event_base *base;
    struct evhttp *http;
    struct evhttp_bound_socket *sock;
    size_t max_body;
    struct route *routes;
    size_t nroutes;
};

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

int gw_http_listen(struct gw_http *h, const char *host, int port, char *err, size_t errlen)
{
    h->sock = evhttp_bind_socket_with_handle(h->http, host, (ev_uint16_t)port);
    if (!h->sock) {
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
    evhttp_free(h->http);
    for (size_t i = 0; i < h->nroutes; i++)
        free(h->routes[i].path);
    free(h->routes);
    free(h);
}
