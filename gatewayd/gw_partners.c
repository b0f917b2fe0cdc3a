/* gw_partners — see gw_partners.h. */
#include "gw_partners.h"
#include "gw_partners_parse.h"
#include "gw_config.h"
#include "gw_db.h"
#include "gw_http.h"
#include "gw_log.h"
#include "gw_metrics.h"
#include "gw_util.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#define CACHE_TTL_MS 30000
#define CACHE_MAX 4096
#define MAX_IDEMPOTENCY_KEY 200

/* The one answer to every authentication failure: it must not tell which part failed. */
#define UNAUTHORIZED_MSG                                                                           \
    "missing or invalid request signature (X-Passerelle-Key, X-Passerelle-Timestamp, "             \
    "X-Passerelle-Signature)"

enum result {
    R_ACCEPTED,
    R_UNAUTHORIZED,
    R_FORBIDDEN,
    R_INVALID,
    R_CONFLICT,
    R_RATE_LIMITED,
    R_UNAVAILABLE,
    NRESULTS
};
static const char *const result_names[NRESULTS] = {
    "accepted", "unauthorized", "forbidden", "invalid", "conflict", "rate_limited", "unavailable"};

/* A partner as last read from the database, with its token bucket (kept across refreshes). */
struct partner {
    char key_id[GW_PARTNER_KEY_ID_MAX];
    int64_t id;
    char *name;
    char *secret;
    size_t secret_len;
    json_t *topics; /* array of strings */
    int may_post_jobs;
    int rate_per_min;
    int64_t expires_ms;
    double tokens;
    int64_t refilled_ms;
    UT_hash_handle hh;
};

struct gw_partners {
    struct gw_db *db;
    const struct gw_config *cfg;
    struct partner *cache;
    uint64_t results[NRESULTS];
};

enum op { OP_ALERT, OP_JOB, OP_WITHDRAW };

/* One request in progress (the partner lookup and the request itself are asynchronous).
 * It holds copies, never a pointer into the cache: an entry may go while we wait. */
struct call {
    struct gw_partners *p;
    struct evhttp_request *req;
    enum op op;
    char *body;
    size_t len;
    char *tail; /* DELETE: the external id */
    struct gw_partner_sig h; /* the signature headers */
    int64_t partner_id;
};

static void call_free(struct call *c)
{
    free(c->body);
    free(c->tail);
    free(c);
}

/* ---------------------------------------------------------------- answers */

static enum result result_of(int status)
{
    if (status < 300)
        return R_ACCEPTED;
    switch (status) {
    case 401:
        return R_UNAUTHORIZED;
    case 403:
        return R_FORBIDDEN;
    case 409:
        return R_CONFLICT;
    case 429:
        return R_RATE_LIMITED;
    default:
        return status >= 500 ? R_UNAVAILABLE : R_INVALID;
    }
}

static void fail(struct call *c, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void fail(struct call *c, int status, const char *code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    c->p->results[result_of(status)]++;
    gw_http_error(c->req, status, code, "%s", msg);
    call_free(c);
}

/* why goes to the log only (at info: an operator helping a partner needs it). */
static void unauthorized(struct call *c, const char *why)
{
    gw_info("partners", "%s %s refused (401): %s%s%s", gw_http_method_name(c->req),
            evhttp_request_get_uri(c->req), why, c->h.key_id[0] ? ", key " : "", c->h.key_id);
    fail(c, 401, "unauthorized", UNAUTHORIZED_MSG);
}

static void unavailable(struct call *c)
{
    fail(c, 503, "database_unavailable", "the database is unavailable; try again shortly");
}

/* ---------------------------------------------------------------- the partner cache */

static void partner_free(struct partner *e)
{
    if (e->secret) {
        sodium_memzero(e->secret, e->secret_len);
        free(e->secret);
    }
    free(e->name);
    json_decref(e->topics);
    free(e);
}

static void cache_drop(struct gw_partners *p, const char *key_id)
{
    struct partner *e;
    HASH_FIND_STR(p->cache, key_id, e);
    if (e) {
        HASH_DEL(p->cache, e);
        partner_free(e);
    }
}

/* res row: id, name, secret, topics (JSON array), may_post_jobs, rate_per_min. */
static struct partner *cache_put(struct gw_partners *p, const char *key_id, const PGresult *res)
{
    struct partner *e;
    HASH_FIND_STR(p->cache, key_id, e);
    if (!e) {
        if (HASH_COUNT(p->cache) >= CACHE_MAX) {
            struct partner *x, *tmp;
            HASH_ITER(hh, p->cache, x, tmp)
            {
                HASH_DEL(p->cache, x);
                partner_free(x);
            }
        }
        e = calloc(1, sizeof *e);
        if (!e)
            abort();
        snprintf(e->key_id, sizeof e->key_id, "%s", key_id);
        e->tokens = -1; /* a full bucket, once the rate is known */
        HASH_ADD_STR(p->cache, key_id, e);
    } else {
        sodium_memzero(e->secret, e->secret_len);
        free(e->secret);
        free(e->name);
        json_decref(e->topics);
    }
    e->id = gw_db_int(res, 0, 0);
    e->name = strdup(PQgetvalue(res, 0, 1));
    e->secret_len = (size_t)PQgetlength(res, 0, 2);
    e->secret = strdup(PQgetvalue(res, 0, 2));
    if (!e->name || !e->secret)
        abort();
    e->topics = json_loads(PQgetvalue(res, 0, 3), 0, NULL);
    if (!json_is_array(e->topics)) {
        json_decref(e->topics);
        e->topics = json_array();
    }
    e->may_post_jobs = PQgetvalue(res, 0, 4)[0] == 't';
    e->rate_per_min = (int)gw_db_int(res, 0, 5);
    if (e->rate_per_min < 1)
        e->rate_per_min = 1;
    if (e->tokens < 0 || e->tokens > e->rate_per_min) {
        e->tokens = e->rate_per_min;
        e->refilled_ms = gw_now_ms();
    }
    e->expires_ms = gw_now_ms() + CACHE_TTL_MS;
    return e;
}

/* Token bucket: rate_per_min tokens at most, refilled continuously. Returns 0 when the request
 * may go, else the seconds to wait for the next token. */
static int bucket_take(struct partner *e)
{
    int64_t now = gw_now_ms();
    double per_ms = e->rate_per_min / 60000.0;
    e->tokens += (double)(now - e->refilled_ms) * per_ms;
    if (e->tokens > e->rate_per_min)
        e->tokens = e->rate_per_min;
    e->refilled_ms = now;
    if (e->tokens >= 1.0) {
        e->tokens -= 1.0;
        return 0;
    }
    int wait = (int)ceil((1.0 - e->tokens) / per_ms / 1000.0);
    return wait < 1 ? 1 : wait;
}

/* ---------------------------------------------------------------- arguments */

/* The arguments of gw_partner_request for a validated alert or job (gw_partners_parse.h). */
static json_t *alert_args(const struct gw_partner_alert *a)
{
    json_t *args = json_pack("{s:s,s:s}", "topic", a->topic, "text", a->text);
    if (a->expires_at[0])
        json_object_set_new(args, "expires_at", json_string(a->expires_at));
    json_object_set_new(args, "urgent", json_boolean(a->urgent));
    return args;
}

static json_t *job_args(const struct gw_partner_job *j)
{
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "external_id", j->external_id, "title",
                     j->title, "text", j->text, "category", j->category, "contact", j->contact,
                     "expires_at", j->expires_at);
}

/* ---------------------------------------------------------------- the request itself */

static void on_done(void *arg, PGresult *res, const char *err)
{
    struct call *c = arg;
    if (err) {
        /* no result: the connection went away (or the pool is down); a result: the statement
         * itself failed, which is our bug, not the partner's */
        if (res) {
            gw_error("partners", "gw_partner_request failed: %s", err);
            fail(c, 500, "internal", "the request could not be performed");
        } else {
            unavailable(c);
        }
        return;
    }
    json_t *r = PQntuples(res) == 1 ? json_loads(PQgetvalue(res, 0, 0), 0, NULL) : NULL;
    const char *e = json_string_value(json_object_get(r, "error"));
    const char *body = json_string_value(json_object_get(r, "body"));
    int status = (int)json_integer_value(json_object_get(r, "status"));
    if (!r || (!e && (!body || status < 200 || status > 299))) {
        gw_error("partners", "gw_partner_request gave an answer we do not understand");
        fail(c, 500, "internal", "the request could not be performed");
    } else if (!e) {
        if (json_is_true(json_object_get(r, "replay")))
            evhttp_add_header(evhttp_request_get_output_headers(c->req), "Idempotent-Replay",
                              "true");
        size_t n = strlen(body);
        char *out = malloc(n + 2);
        if (!out)
            abort();
        memcpy(out, body, n);
        out[n] = '\n';
        out[n + 1] = '\0';
        c->p->results[R_ACCEPTED]++;
        gw_http_reply(c->req, status, "application/json; charset=utf-8", out, n + 1);
        free(out);
        call_free(c);
    } else if (!strcmp(e, "revoked")) {
        cache_drop(c->p, c->h.key_id);
        unauthorized(c, "revoked");
    } else if (!strcmp(e, "idempotency_key_reused")) {
        fail(c, 409, "idempotency_key_reused",
             "this Idempotency-Key was used for another request (another body or endpoint); "
             "use a new key for a new request");
    } else if (!strcmp(e, "unknown_topic")) {
        fail(c, 422, "unknown_topic", "the centre has no alert topic of that name");
    } else if (!strcmp(e, "too_large")) {
        fail(c, 403, "fanout_too_large",
             "this alert would reach %lld residents; the centre's limit for one alert is %lld "
             "(only the centre's staff can send a larger one)",
             (long long)json_integer_value(json_object_get(r, "recipients")),
             (long long)json_integer_value(json_object_get(r, "limit")));
    } else if (!strcmp(e, "expired")) {
        fail(c, 422, "invalid_expires_at", "expires_at is in the past");
    } else if (!strcmp(e, "unknown_category")) {
        fail(c, 422, "unknown_category", "the centre has no job category of that name");
    } else if (!strcmp(e, "not_found")) {
        fail(c, 404, "not_found",
             "no job offer with this external_id from this partner (or it "
             "was already withdrawn)");
    } else {
        gw_error("partners", "gw_partner_request answered the unknown error '%s'", e);
        fail(c, 500, "internal", "the request could not be performed");
    }
    json_decref(r);
}

/* The request is authenticated and within its rate: validate it and perform it. */
static void perform(struct call *c, const struct partner *e)
{
    struct gw_partners *p = c->p;
    const char *idem = gw_http_header(c->req, "Idempotency-Key");
    if (idem && (strlen(idem) == 0 || strlen(idem) > MAX_IDEMPOTENCY_KEY)) {
        fail(c, 422, "invalid_idempotency_key", "Idempotency-Key must be 1 to %d characters",
             MAX_IDEMPOTENCY_KEY);
        return;
    }
    if ((c->op == OP_JOB || c->op == OP_WITHDRAW) && !e->may_post_jobs) {
        fail(c, 403, "jobs_not_allowed", "this partner may not publish job offers");
        return;
    }
    json_t *args = NULL;
    const char *op;
    if (c->op == OP_WITHDRAW) {
        op = "withdraw";
        if (!gw_partners_external_id_ok(c->tail)) {
            fail(c, 404, "not_found", "no job offer with this external_id from this partner");
            return;
        }
        args = json_pack("{s:s}", "external_id", c->tail);
    } else {
        op = c->op == OP_ALERT ? "alert" : "job";
        struct gw_partner_verdict v = {0};
        int64_t now = gw_wall_ms() / 1000;
        if (c->op == OP_ALERT) {
            struct gw_partner_alert a;
            if (gw_partners_alert_parse(c->body, c->len, e->topics, p->cfg, now, &a, &v) == 0) {
                args = alert_args(&a);
                gw_partner_alert_clear(&a);
            }
        } else {
            struct gw_partner_job j;
            if (gw_partners_job_parse(c->body, c->len, p->cfg, now, &j, &v) == 0) {
                args = job_args(&j);
                gw_partner_job_clear(&j);
            }
        }
        if (!args) {
            fail(c, v.status, v.code, "%s", v.msg);
            return;
        }
    }
    /* The idempotency record covers the method and the path too: a DELETE has no body. */
    char hash_hex[2 * crypto_hash_sha256_BYTES + 1];
    uint8_t hash[crypto_hash_sha256_BYTES];
    crypto_hash_sha256_state st;
    const char *method = gw_http_method_name(c->req);
    const char *uri = evhttp_request_get_uri(c->req);
    crypto_hash_sha256_init(&st);
    crypto_hash_sha256_update(&st, (const uint8_t *)method, strlen(method));
    crypto_hash_sha256_update(&st, (const uint8_t *)" ", 1);
    crypto_hash_sha256_update(&st, (const uint8_t *)uri, strlen(uri));
    crypto_hash_sha256_update(&st, (const uint8_t *)"\n", 1);
    crypto_hash_sha256_update(&st, (const uint8_t *)c->body, c->len);
    crypto_hash_sha256_final(&st, hash);
    sodium_bin2hex(hash_hex, sizeof hash_hex, hash, sizeof hash);
    char *args_s = json_dumps(args, JSON_COMPACT);
    json_decref(args);
    if (!args_s)
        abort();
    char pid[24];
    snprintf(pid, sizeof pid, "%lld", (long long)e->id);
    c->partner_id = e->id;
    const char *params[5] = {pid, idem, hash_hex, op, args_s};
    int rc = gw_db_query(p->db, "SELECT gw_partner_request($1, $2, $3, $4, $5::jsonb)", 5, params,
                         on_done, c);
    free(args_s);
    if (rc != GW_OK)
        unavailable(c);
}

/* The partner is known: check the signature, then the rate. */
static void authenticated(struct call *c, struct partner *e)
{
    if (!gw_partners_sig_verify(&c->h, e->secret, e->secret_len, c->body, c->len)) {
        unauthorized(c, "wrong signature");
        return;
    }
    int wait = bucket_take(e);
    if (wait) {
        char ra[16];
        snprintf(ra, sizeof ra, "%d", wait);
        evhttp_add_header(evhttp_request_get_output_headers(c->req), "Retry-After", ra);
        fail(c, 429, "rate_limited", "more than %d requests a minute; retry in %d s",
             e->rate_per_min, wait);
        return;
    }
    perform(c, e);
}

static void on_partner_row(void *arg, PGresult *res, const char *err)
{
    struct call *c = arg;
    if (err) {
        unavailable(c);
        return;
    }
    if (PQntuples(res) != 1) {
        cache_drop(c->p, c->h.key_id);
        unauthorized(c, "unknown or revoked key");
        return;
    }
    authenticated(c, cache_put(c->p, c->h.key_id, res));
}

static void on_request(struct gw_partners *p, struct evhttp_request *req, enum op op,
                       const char *tail)
{
    struct call *c = calloc(1, sizeof *c);
    if (!c)
        abort();
    c->p = p;
    c->req = req;
    c->op = op;
    c->tail = strdup(tail);
    if (!c->tail)
        abort();
    if (gw_http_body(req, p->cfg->max_body_bytes, &c->body, &c->len) != GW_OK) {
        fail(c, 413, "body_too_large", "the request body is over %zu bytes",
             p->cfg->max_body_bytes);
        return;
    }
    const char *why;
    if (gw_partners_sig_parse(gw_http_header(req, "X-Passerelle-Key"),
                              gw_http_header(req, "X-Passerelle-Timestamp"),
                              gw_http_header(req, "X-Passerelle-Signature"), gw_wall_ms() / 1000,
                              &c->h, &why) != 0) {
        unauthorized(c, why);
        return;
    }
    struct partner *e;
    HASH_FIND_STR(p->cache, c->h.key_id, e);
    if (e && e->expires_ms > gw_now_ms()) {
        authenticated(c, e);
        return;
    }
    const char *params[1] = {c->h.key_id};
    int rc = gw_db_query(p->db,
                         "SELECT id, name, secret, array_to_json(topics)::text, may_post_jobs,"
                         " rate_per_min FROM partners WHERE key_id = $1 AND revoked_at IS NULL",
                         1, params, on_partner_row, c);
    if (rc != GW_OK)
        unavailable(c);
}

static void on_alerts(struct evhttp_request *req, void *arg, const char *tail)
{
    on_request(arg, req, OP_ALERT, tail);
}

static void on_jobs(struct evhttp_request *req, void *arg, const char *tail)
{
    on_request(arg, req, OP_JOB, tail);
}

static void on_job(struct evhttp_request *req, void *arg, const char *tail)
{
    on_request(arg, req, OP_WITHDRAW, tail);
}

/* ---------------------------------------------------------------- life cycle */

struct gw_partners *gw_partners_new(struct gw_db *db, const struct gw_config *cfg,
                                    struct gw_http *http)
{
    struct gw_partners *p = calloc(1, sizeof *p);
    if (!p)
        abort();
    p->db = db;
    p->cfg = cfg;
    gw_http_route(http, EVHTTP_REQ_POST, "/api/v1/alerts", GW_HTTP_EXACT, on_alerts, p);
    gw_http_route(http, EVHTTP_REQ_POST, "/api/v1/jobs", GW_HTTP_EXACT, on_jobs, p);
    gw_http_route(http, EVHTTP_REQ_DELETE, "/api/v1/jobs/", GW_HTTP_PREFIX, on_job, p);
    return p;
}

void gw_partners_free(struct gw_partners *p)
{
    if (!p)
        return;
    struct partner *e, *tmp;
    HASH_ITER(hh, p->cache, e, tmp)
    {
        HASH_DEL(p->cache, e);
        partner_free(e);
    }
    free(p);
}

void gw_partners_metrics(struct gw_partners *p, struct evbuffer *out)
{
    gw_metric_head(out, "passerelle_webhook_requests_total", "counter",
                   "Partner webhook requests by result.");
    for (int i = 0; i < NRESULTS; i++)
        evbuffer_add_printf(out, "passerelle_webhook_requests_total{result=\"%s\"} %llu\n",
                            result_names[i], (unsigned long long)p->results[i]);
}
