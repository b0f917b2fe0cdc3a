/* gw_api — see gw_api.h. */
#include "gw_api.h"
#include "gw_auth.h"
#include "gw_config.h"
#include "gw_db.h"
#include "gw_http.h"
#include "gw_limit.h"
#include "gw_log.h"
#include "gw_metrics.h"
#include "gw_outbox.h"
#include "gw_util.h"
#include "prov_phone.h"
#include "prov_text.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>


/* Recently normalised numbers. libphonenumber's parse and validation run ICU regular
 * expressions (tens of microseconds); a centre texts the same few thousand residents again and
 * again, so a small direct-mapped cache of input → result saves most of that work. */
#define PHONE_CACHE 4096
struct phone_entry {
    char in[40];
    char e164[24];
    int status;
    int used; /* a zeroed slot is not a cached "" */
};

struct gw_api {
    struct phone_entry phones[PHONE_CACHE];
    struct gw_db *db;
    struct gw_auth *auth;
    struct gw_outbox *outbox;
    const struct gw_config *cfg;
    struct gw_limit *key_rate; /* sends per second per key (its public prefix) */
    int key_rate_per_s;
    uint64_t key_limited;
};

static int normalize_phone(struct gw_api *api, const char *in, char *out, size_t outlen)
{
    size_t n = strlen(in);
    if (n == 0 || n >= sizeof api->phones[0].in)
        return prov_phone_normalize(in, api->cfg->default_region, out, outlen);
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)in[i]) * 16777619u;
    struct phone_entry *e = &api->phones[h % PHONE_CACHE];
    if (!e->used || strcmp(e->in, in) != 0) {
        e->used = 1;
        e->status = prov_phone_normalize(in, api->cfg->default_region, e->e164, sizeof e->e164);
        memcpy(e->in, in, n + 1);
    }
    if (e->status == PROV_PHONE_OK && snprintf(out, outlen, "%s", e->e164) >= (int)outlen)
        return PROV_PHONE_ESPACE;
    return e->status;
}

/* One request in progress (auth and database answers are asynchronous). */
struct call {
    struct gw_api *api;
    struct evhttp_request *req;
    char *body;
    size_t body_len;
    char *tail;
    int64_t centre_id;
    struct gw_send_req req_send; /* POST: what we enqueue */
};

static void call_free(struct call *c)
{
    free(c->body);
    free(c->tail);
    gw_send_req_clear(&c->req_send);
    free(c);
}

static void auth_failed(struct call *c, int rc)
{
    if (rc == GW_EDOWN)
        gw_http_error(c->req, 503, "database_unavailable",
                      "the database is unavailable; try again shortly");
    else
        gw_http_error(c->req, 401, "unauthorized",
                      "missing or invalid API key (Authorization: Bearer psk_…)");
    call_free(c);
}

static int db_down_reply(struct call *c, int rc)
{
    if (rc == GW_OK)
        return 0;
    gw_http_error(c->req, 503, "database_unavailable",
                  "the database is unavailable; try again shortly");
    call_free(c);
    return 1;
}

/* ------------------------------------------------------------------ POST /api/v1/messages */

static void enqueued(void *arg, int err, int64_t id, int created, const char *status, int segments,
                     const char *encoding)
{
    struct call *c = arg;
    if (err == GW_EDOWN) {
        gw_http_error(c->req, 503, "database_unavailable",
                      "the message was not accepted because the database is unavailable; send "
                      "it again (with the same idempotency_key to be safe)");
    } else if (err) {
        gw_http_error(c->req, 500, "internal", "the message could not be stored");
    } else if (!strcmp(status, "opted_out")) {
        gw_http_error(c->req, 422, "opted_out",
                      "this number has opted out of messages from your centre (STOP)");
    } else if (!strcmp(status, "conflict")) {
        gw_http_error(c->req, 409, "conflict",
                      "a message with this idempotency_key is being created; retry");
    } else {
        json_t *o = json_pack("{s:I,s:s,s:i,s:s}", "id", (json_int_t)id, "status", status,
                              "segments", segments, "encoding", encoding);
        if (!created)
            json_object_set_new(o, "idempotent_replay", json_true());
        gw_http_json(c->req, 202, o);
    }
    call_free(c);
}

static int api_normalize(void *arg, const char *in, char *out, size_t outlen)
{
    return normalize_phone(arg, in, out, outlen);
}

/* The per-key limit of sends (the key authenticated: its prefix names it). Returns 1 after
 * answering 429. */
static int key_limited(struct call *c)
{
    struct gw_api *api = c->api;
    if (api->key_rate_per_s <= 0)
        return 0;
    const char *authz = gw_http_header(c->req, "Authorization");
    char prefix[GW_KEY_PREFIX_LEN];
    uint8_t hash[GW_KEY_HASH_LEN];
    if (!authz || strncmp(authz, "Bearer ", 7) != 0 ||
        gw_auth_key_parse(authz + 7, prefix, hash) != GW_OK)
        return 0; /* cannot happen once authenticated */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double wait;
    if (gw_limit_take(api->key_rate, prefix, (double)ts.tv_sec + (double)ts.tv_nsec / 1e9,
                      &wait))
        return 0;
    api->key_limited++;
    char ra[16];
    snprintf(ra, sizeof ra, "%d", (int)wait + 1);
    evhttp_add_header(evhttp_request_get_output_headers(c->req), "Retry-After", ra);
    gw_http_error(c->req, 429, "rate_limited",
                  "this API key may send %d messages a second; the message was not accepted, "
                  "send it again in %s s",
                  api->key_rate_per_s, ra);
    call_free(c);
    return 1;
}

static void post_authed(void *arg, int rc, int64_t centre_id)
{
    struct call *c = arg;
    if (rc != GW_OK) {
        auth_failed(c, rc);
        return;
    }
    c->centre_id = centre_id;
    if (key_limited(c))
        return;
    const char *code;
    char msg[512];
    int st = gw_send_parse(c->body, c->body_len, c->api->cfg, api_normalize, c->api,
                               &c->req_send, &code, msg, sizeof msg);
    if (st) {
        gw_http_error(c->req, st, code, "%s", msg);
        call_free(c);
        return;
    }
    struct gw_enqueue e = {
        .centre_id = centre_id,
        .phone = c->req_send.phone,
        .text = c->req_send.text,
        .segments = c->req_send.segments,
        .encoding = c->req_send.encoding,
        .send_at = c->req_send.send_at,
        .idem = c->req_send.idem,
    };
    db_down_reply(c, gw_outbox_enqueue(c->api->outbox, &e, enqueued, c));
}

static struct call *call_new(struct gw_api *api, struct evhttp_request *req, const char *tail)
{
    struct call *c = calloc(1, sizeof *c);
    if (!c)
        abort();
    c->api = api;
    c->req = req;
    c->tail = strdup(tail);
    if (!c->tail)
        abort();
    return c;
}

/* ------------------------------------------------------------------ GET one / list */

static void json_row_reply(void *arg, PGresult *res, const char *err)
{
    struct call *c = arg;
    if (err) {
        gw_http_error(c->req, 503, "database_unavailable", "the database did not answer");
    } else if (PQntuples(res) == 0 || PQgetisnull(res, 0, 0)) {
        gw_http_error(c->req, 404, "not_found", "no such message");
    } else {
        const char *js = PQgetvalue(res, 0, 0);
        gw_http_reply(c->req, 200, "application/json; charset=utf-8", js, strlen(js));
    }
    call_free(c);
}

static void get_one_authed(void *arg, int rc, int64_t centre_id)
{
    struct call *c = arg;
    if (rc != GW_OK) {
        auth_failed(c, rc);
        return;
    }
    int64_t id;
    if (gw_parse_i64(c->tail, 1, INT64_MAX, &id) != GW_OK) {
        gw_http_error(c->req, 404, "not_found", "no such message");
        call_free(c);
        return;
    }
    char ids[24], cs[24];
    snprintf(ids, sizeof ids, "%lld", (long long)id);
    snprintf(cs, sizeof cs, "%lld", (long long)centre_id);
    const char *p[2] = {ids, cs};
    /* Another centre's message is "not found", exactly like a missing one. */
    db_down_reply(c, gw_db_query(c->api->db,
                                 "SELECT gw_message_json(m, true) FROM messages m"
                                 " WHERE m.id = $1 AND m.centre_id = $2",
                                 2, p, json_row_reply, c));
}

static void list_authed(void *arg, int rc, int64_t centre_id)
{
    struct call *c = arg;
    if (rc != GW_OK) {
        auth_failed(c, rc);
        return;
    }
    char *to = gw_http_query_param(c->req, "to");
    char *dir = gw_http_query_param(c->req, "direction");
    char *since = gw_http_query_param(c->req, "since");
    char *before = gw_http_query_param(c->req, "before");
    char *limit = gw_http_query_param(c->req, "limit");
    char phone[24], cs[24], since_s[32], lim_s[16], before_s[24];
    const char *p[6] = {cs, NULL, NULL, NULL, NULL, lim_s};
    int64_t n = 50, ts, b;
    snprintf(cs, sizeof cs, "%lld", (long long)centre_id);
    if (to && *to) {
        int prc = normalize_phone(c->api, to, phone, sizeof phone);
        if (prc != PROV_PHONE_OK) {
            gw_http_error(c->req, 422, "invalid_phone", "'to' is not a valid number: %s",
                          prov_phone_strerror(prc));
            goto done;
        }
        p[1] = phone;
    }
    if (dir && *dir) {
        if (strcmp(dir, "in") && strcmp(dir, "out")) {
            gw_http_error(c->req, 400, "bad_parameter", "direction must be 'in' or 'out'");
            goto done;
        }
        p[2] = dir;
    }
    if (since && *since) {
        if (gw_parse_rfc3339(since, &ts) != GW_OK) {
            gw_http_error(c->req, 400, "bad_parameter",
                          "since must be an RFC 3339 time such as 2026-12-01T00:00:00Z");
            goto done;
        }
        gw_format_rfc3339(ts, since_s, sizeof since_s);
        p[3] = since_s;
    }
    if (before && *before) {
        if (gw_parse_i64(before, 1, INT64_MAX, &b) != GW_OK) {
            gw_http_error(c->req, 400, "bad_parameter", "before must be a message id");
            goto done;
        }
        snprintf(before_s, sizeof before_s, "%lld", (long long)b);
        p[4] = before_s;
    }
    if (limit && *limit && gw_parse_i64(limit, 1, 200, &n) != GW_OK) {
        gw_http_error(c->req, 400, "bad_parameter", "limit must be between 1 and 200");
        goto done;
    }
    snprintf(lim_s, sizeof lim_s, "%lld", (long long)n);
    int qrc = gw_db_query(
        c->api->db,
        "WITH page AS (SELECT m.id, gw_message_json(m, false) AS j FROM messages m"
        "  WHERE m.centre_id = $1 AND ($2::text IS NULL OR m.phone = $2)"
        "    AND ($3::text IS NULL OR m.direction = $3)"
        "    AND ($4::timestamptz IS NULL OR m.created_at >= $4)"
        "    AND ($5::bigint IS NULL OR m.id < $5)"
        "  ORDER BY m.id DESC LIMIT $6::int)"
        " SELECT json_build_object('messages', coalesce(json_agg(j ORDER BY id DESC), '[]'),"
        "   'next_before', CASE WHEN count(*) = $6::int THEN min(id) END) FROM page",
        6, p, json_row_reply, c);
    free(to);
    free(dir);
    free(since);
    free(before);
    free(limit);
    db_down_reply(c, qrc);
    return;
done:
    free(to);
    free(dir);
    free(since);
    free(before);
    free(limit);
    call_free(c);
}

/* ------------------------------------------------------------------ routing */

static void on_messages(struct evhttp_request *req, void *arg, const char *tail)
{
    struct gw_api *api = arg;
    (void)tail;
    struct call *c = call_new(api, req, "");
    const char *authz = gw_http_header(req, "Authorization");
    if (evhttp_request_get_command(req) == EVHTTP_REQ_POST) {
        if (gw_http_body(req, api->cfg->max_body_bytes, &c->body, &c->body_len) != GW_OK) {
            gw_http_error(req, 413, "body_too_large", "the request body is over %zu bytes",
                          api->cfg->max_body_bytes);
            call_free(c);
            return;
        }
        gw_auth_check(api->auth, authz, post_authed, c);
    } else {
        gw_auth_check(api->auth, authz, list_authed, c);
    }
}

static void on_message(struct evhttp_request *req, void *arg, const char *tail)
{
    struct gw_api *api = arg;
    struct call *c = call_new(api, req, tail);
    gw_auth_check(api->auth, gw_http_header(req, "Authorization"), get_one_authed, c);
}

struct gw_api *gw_api_new(struct gw_http *http, struct gw_db *db, struct gw_auth *auth,
                          struct gw_outbox *outbox, const struct gw_config *cfg)
{
    struct gw_api *api = calloc(1, sizeof *api);
    if (!api)
        abort();
    api->db = db;
    api->auth = auth;
    api->outbox = outbox;
    api->cfg = cfg;
    api->key_rate = gw_limit_new(0, 1);
    gw_http_route(http, EVHTTP_REQ_POST | EVHTTP_REQ_GET, "/api/v1/messages", GW_HTTP_EXACT,
                  on_messages, api);
    gw_http_route(http, EVHTTP_REQ_GET, "/api/v1/messages/", GW_HTTP_PREFIX, on_message, api);
    return api;
}

void gw_api_set_key_rate(struct gw_api *api, int per_second)
{
    api->key_rate_per_s = per_second > 0 ? per_second : 0;
    gw_limit_set(api->key_rate, api->key_rate_per_s, 2.0 * api->key_rate_per_s);
}

void gw_api_metrics(const struct gw_api *api, struct evbuffer *out)
{
    gw_metric_head(out, "passerelle_api_key_rate_limited_total", "counter",
                   "Sends answered 429 by the per-key limit (key_rate).");
    evbuffer_add_printf(out, "passerelle_api_key_rate_limited_total %llu\n",
                        (unsigned long long)api->key_limited);
}

void gw_api_free(struct gw_api *api)
{
    if (api)
        gw_limit_free(api->key_rate);
    free(api);
}
