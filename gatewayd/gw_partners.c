/* gw_partners — see gw_partners.h. */
#include "gw_partners.h"
#include "gw_config.h"
#include "gw_db.h"
#include "gw_http.h"
#include "gw_log.h"
#include "gw_metrics.h"
#include "gw_send.h"
#include "gw_util.h"
#include "prov_text.h"

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
#define WINDOW_S 300 /* accepted clock difference, either way */
#define KEY_ID_MAX 64
#define TS_MAX 20
#define MAX_IDEMPOTENCY_KEY 200
#define MAX_TITLE 100
#define MAX_CONTACT 100
#define MAX_EXTERNAL_ID 100
#define MAX_FUTURE_S (400LL * 86400)

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
    char key_id[KEY_ID_MAX];
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
    char key_id[KEY_ID_MAX];
    char ts[TS_MAX + 1];
    uint8_t sig[crypto_auth_hmacsha256_BYTES];
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
            evhttp_request_get_uri(c->req), why, c->key_id[0] ? ", key " : "", c->key_id);
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

static int partner_has_topic(const struct partner *e, const char *topic)
{
    size_t i;
    json_t *t;
    json_array_foreach(e->topics, i, t)
    {
        if (json_is_string(t) && !strcmp(json_string_value(t), topic))
            return 1;
    }
    return 0;
}

/* ---------------------------------------------------------------- validation */

/* Characters (code points) of valid UTF-8 (jansson only hands out valid UTF-8). */
static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((uint8_t)*s & 0xC0) != 0x80;
    return n;
}

static int blank(const char *s)
{
    for (; *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\n' && *s != '\r')
            return 0;
    return 1;
}

static int valid_external_id(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > MAX_EXTERNAL_ID)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '_' || ch == '.' || ch == '~' || ch == ':'))
            return 0;
    }
    return 1;
}

/* Validation of a body: the first problem found, as (status, code, message). */
struct verdict {
    int status;
    const char *code;
    char msg[400];
};

static int refuse(struct verdict *v, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int refuse(struct verdict *v, int status, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    v->status = status;
    v->code = code;
    vsnprintf(v->msg, sizeof v->msg, fmt, ap);
    va_end(ap);
    return -1;
}

/* Only the listed fields; the `required` ones present and of type `want` ('s' string, 'b'
 * boolean); optional ones may also be null. */
struct field {
    const char *name;
    char want;
    int required;
};

static int check_fields(json_t *root, const struct field *f, size_t n, struct verdict *v)
{
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val)
    {
        size_t i = 0;
        while (i < n && strcmp(key, f[i].name))
            i++;
        if (i == n) {
            char list[200] = "";
            for (size_t k = 0; k < n; k++) {
                size_t l = strlen(list);
                snprintf(list + l, sizeof list - l, "%s%s", k ? ", " : "", f[k].name);
            }
            return refuse(v, 422, "unknown_field", "unknown field '%s' (expected %s)", key, list);
        }
    }
    for (size_t i = 0; i < n; i++) {
        json_t *x = json_object_get(root, f[i].name);
        if ((!x || json_is_null(x)) && f[i].required)
            return refuse(v, 422, "missing_field", "the field '%s' is required", f[i].name);
        if (!x || json_is_null(x))
            continue;
        if (f[i].want == 's' && !json_is_string(x))
            return refuse(v, 422, "bad_field_type", "the field '%s' must be a string", f[i].name);
        if (f[i].want == 'b' && !json_is_boolean(x))
            return refuse(v, 422, "bad_field_type", "the field '%s' must be true or false",
                          f[i].name);
        if (f[i].want == 's' && blank(json_string_value(x)))
            return refuse(v, 422, "empty_field", "the field '%s' is empty", f[i].name);
    }
    return 0;
}

/* text: within the send limits (as it will be sent: maybe transliterated). Returns the text
 * to store (caller frees) or NULL with *v set. */
static char *check_text(const struct gw_config *cfg, const char *field, const char *t,
                        struct verdict *v)
{
    struct prov_text_info info;
    char *s = gw_send_text(cfg, t, strlen(t), &info);
    if (!s) {
        refuse(v, 422, "invalid_text", "the field '%s' is not valid UTF-8", field);
        return NULL;
    }
    if (info.segments > cfg->max_segments) {
        free(s);
        refuse(v, 422, "text_too_long",
               "the field '%s' needs %d SMS segments; the limit is %d (%d GSM-7 characters, or "
               "%d when it needs UCS-2)",
               field, info.segments, cfg->max_segments,
               cfg->max_segments == 1 ? 160 : 153 * cfg->max_segments,
               cfg->max_segments == 1 ? 70 : 67 * cfg->max_segments);
        return NULL;
    }
    return s;
}

/* expires_at: RFC 3339, in the future, at most 400 days away; normalised into out. */
static int check_expires(json_t *x, char *out, size_t outlen, struct verdict *v)
{
    int64_t t;
    if (gw_parse_rfc3339(json_string_value(x), &t) != GW_OK)
        return refuse(v, 422, "invalid_expires_at",
                      "expires_at must be an RFC 3339 time such as 2026-12-01T18:00:00+01:00");
    int64_t now = gw_wall_ms() / 1000;
    if (t <= now)
        return refuse(v, 422, "invalid_expires_at", "expires_at is in the past");
    if (t > now + MAX_FUTURE_S)
        return refuse(v, 422, "invalid_expires_at", "expires_at is more than 400 days away");
    gw_format_rfc3339(t, out, outlen);
    return 0;
}

static void ascii_lower(char *s)
{
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z')
            *s = (char)(*s - 'A' + 'a');
}

/* Builds the arguments of gw_partner_request for an alert. */
static json_t *alert_args(struct gw_partners *p, const struct partner *e, json_t *root,
                          struct verdict *v)
{
    static const struct field fields[] = {
        {"topic", 's', 1}, {"text", 's', 1}, {"expires_at", 's', 0}, {"urgent", 'b', 0}};
    if (check_fields(root, fields, sizeof fields / sizeof fields[0], v))
        return NULL;
    char topic[128];
    const char *t = json_string_value(json_object_get(root, "topic"));
    if (strlen(t) >= sizeof topic) {
        refuse(v, 422, "unknown_topic", "the centre has no alert topic of that name");
        return NULL;
    }
    snprintf(topic, sizeof topic, "%s", t);
    ascii_lower(topic);
    if (!partner_has_topic(e, topic)) {
        char *allowed = json_dumps(e->topics, JSON_COMPACT);
        refuse(v, 403, "topic_not_allowed",
               "this partner may not post to the topic '%s' (allowed: %s)", topic,
               allowed ? allowed : "[]");
        free(allowed);
        return NULL;
    }
    char *text = check_text(p->cfg, "text", json_string_value(json_object_get(root, "text")), v);
    if (!text)
        return NULL;
    json_t *args = json_pack("{s:s,s:s}", "topic", topic, "text", text);
    free(text);
    json_t *x = json_object_get(root, "expires_at");
    if (x && !json_is_null(x)) {
        char when[32];
        if (check_expires(x, when, sizeof when, v)) {
            json_decref(args);
            return NULL;
        }
        json_object_set_new(args, "expires_at", json_string(when));
    }
    json_object_set_new(args, "urgent",
                        json_boolean(json_is_true(json_object_get(root, "urgent"))));
    return args;
}

static json_t *job_args(struct gw_partners *p, json_t *root, struct verdict *v)
{
    static const struct field fields[] = {{"external_id", 's', 1}, {"title", 's', 1},
                                          {"text", 's', 1},        {"category", 's', 1},
                                          {"contact", 's', 1},     {"expires_at", 's', 1}};
    if (check_fields(root, fields, sizeof fields / sizeof fields[0], v))
        return NULL;
    const char *ext = json_string_value(json_object_get(root, "external_id"));
    const char *title = json_string_value(json_object_get(root, "title"));
    const char *contact = json_string_value(json_object_get(root, "contact"));
    char category[128];
    if (!valid_external_id(ext)) {
        refuse(v, 422, "invalid_external_id",
               "external_id must be 1 to %d characters among letters, digits and . _ ~ : -",
               MAX_EXTERNAL_ID);
        return NULL;
    }
    if (utf8_chars(title) > MAX_TITLE) {
        refuse(v, 422, "title_too_long", "the title is %zu characters long; the limit is %d",
               utf8_chars(title), MAX_TITLE);
        return NULL;
    }
    if (utf8_chars(contact) > MAX_CONTACT) {
        refuse(v, 422, "contact_too_long", "the contact is %zu characters long; the limit is %d",
               utf8_chars(contact), MAX_CONTACT);
        return NULL;
    }
    const char *cat = json_string_value(json_object_get(root, "category"));
    if (strlen(cat) >= sizeof category) {
        refuse(v, 422, "unknown_category", "the centre has no job category of that name");
        return NULL;
    }
    snprintf(category, sizeof category, "%s", cat);
    ascii_lower(category);
    char when[32];
    if (check_expires(json_object_get(root, "expires_at"), when, sizeof when, v))
        return NULL;
    char *text = check_text(p->cfg, "text", json_string_value(json_object_get(root, "text")), v);
    if (!text)
        return NULL;
    json_t *args =
        json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "external_id", ext, "title", title, "text", text,
                  "category", category, "contact", contact, "expires_at", when);
    free(text);
    return args;
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
        cache_drop(c->p, c->key_id);
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
    struct verdict v = {0};
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
        if (!valid_external_id(c->tail)) {
            fail(c, 404, "not_found", "no job offer with this external_id from this partner");
            return;
        }
        args = json_pack("{s:s}", "external_id", c->tail);
    } else {
        op = c->op == OP_ALERT ? "alert" : "job";
        json_error_t jerr;
        json_t *root = json_loadb(c->body, c->len, JSON_REJECT_DUPLICATES, &jerr);
        if (!root) {
            fail(c, 400, "malformed_json", "malformed JSON at line %d, column %d: %s", jerr.line,
                 jerr.column, jerr.text);
            return;
        }
        if (!json_is_object(root)) {
            json_decref(root);
            fail(c, 400, "malformed_json", "the body must be a JSON object");
            return;
        }
        args = c->op == OP_ALERT ? alert_args(p, e, root, &v) : job_args(p, root, &v);
        json_decref(root);
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
    uint8_t mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, (const uint8_t *)e->secret, e->secret_len);
    crypto_auth_hmacsha256_update(&st, (const uint8_t *)c->ts, strlen(c->ts));
    crypto_auth_hmacsha256_update(&st, (const uint8_t *)".", 1);
    crypto_auth_hmacsha256_update(&st, (const uint8_t *)c->body, c->len);
    crypto_auth_hmacsha256_final(&st, mac);
    int ok = sodium_memcmp(mac, c->sig, sizeof mac) == 0;
    sodium_memzero(&st, sizeof st);
    if (!ok) {
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
        cache_drop(c->p, c->key_id);
        unauthorized(c, "unknown or revoked key");
        return;
    }
    authenticated(c, cache_put(c->p, c->key_id, res));
}

static int header_ok(const char *s, size_t max, const char *allowed_extra)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > max)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || strchr(allowed_extra, s[i])))
            return 0;
    return 1;
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
    const char *key = gw_http_header(req, "X-Passerelle-Key");
    const char *ts = gw_http_header(req, "X-Passerelle-Timestamp");
    const char *sig = gw_http_header(req, "X-Passerelle-Signature");
    if (!header_ok(key, KEY_ID_MAX - 1, "_-")) {
        unauthorized(c, key ? "malformed key id" : "no X-Passerelle-Key");
        return;
    }
    snprintf(c->key_id, sizeof c->key_id, "%s", key);
    int64_t t;
    if (!header_ok(ts, TS_MAX, "") || gw_parse_i64(ts, 0, INT64_MAX / 2, &t) != GW_OK) {
        unauthorized(c, ts ? "malformed timestamp" : "no X-Passerelle-Timestamp");
        return;
    }
    snprintf(c->ts, sizeof c->ts, "%s", ts);
    int64_t now = gw_wall_ms() / 1000;
    if (t < now - WINDOW_S || t > now + WINDOW_S) {
        unauthorized(c, t < now ? "timestamp too old" : "timestamp in the future");
        return;
    }
    size_t bin_len = 0;
    if (!sig || strncmp(sig, "v1=", 3) != 0 || strlen(sig + 3) != 2 * sizeof c->sig ||
        sodium_hex2bin(c->sig, sizeof c->sig, sig + 3, 2 * sizeof c->sig, NULL, &bin_len, NULL) !=
            0 ||
        bin_len != sizeof c->sig) {
        unauthorized(c, sig ? "malformed signature" : "no X-Passerelle-Signature");
        return;
    }
    struct partner *e;
    HASH_FIND_STR(p->cache, c->key_id, e);
    if (e && e->expires_ms > gw_now_ms()) {
        authenticated(c, e);
        return;
    }
    const char *params[1] = {c->key_id};
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
