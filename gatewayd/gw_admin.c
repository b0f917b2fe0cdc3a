/* gw_admin — see gw_admin.h and admin/API.md. */
#include "gw_admin.h"
#include "gw_admin_parse.h"
#include "gw_auth.h"
#include "gw_config.h"
#include "gw_db.h"
#include "gw_flows.h"
#include "gw_http.h"
#include "gw_log.h"
#include "gw_metrics.h"
#include "gw_outbox.h"
#include "gw_send.h"
#include "gw_util.h"
#include "prov_text.h"
#include "sched_time.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <uthash.h>

#ifndef PASSERELLE_ADMIN_WWW
#define PASSERELLE_ADMIN_WWW "admin/www"
#endif

#define COOKIE "passerelle_session"
#define API_PREFIX "/admin/api/"
#define RL_WINDOW_S (15 * 60)
#define RL_PER_LOGIN 5
#define RL_PER_ADDRESS 20
#define MAX_VERIFYING 4 /* argon2id verifications at once (64 MiB each) */
#define MAX_STATIC_BYTES (2 * 1024 * 1024)

/* A valid argon2id hash of a random password nobody knows: an unknown login costs the same
 * verification as a known one (no timing oracle). */
static const char DUMMY_HASH[] = "$argon2id$v=19$m=65536,t=2,p=1$n43AC249k6/WBXvkgNvkew$"
                                 "eNuMH8MxRt9a/cZKAXPM987Z4Xlbj/gbKr3bxlTebvU";

struct rate {
    char key[96];
    int64_t window_start;
    int fails;
    UT_hash_handle hh;
};

struct gw_admin {
    struct event_base *base;
    struct gw_db *db;
    struct gw_outbox *o;
    struct gw_flows *flows;
    const struct gw_config *cfg;
    char *www;
    struct rate *rates;
    int verifying;
    uint64_t logins_ok, logins_failed, logins_limited, requests, unauthenticated, csrf_refused,
        forbidden;
};

/* One API request, from the session check to the reply. */
struct areq {
    struct gw_admin *a;
    struct evhttp_request *req;
    char method[8];
    char path[256]; /* after /admin/api/, without the query */
    char *body;
    size_t body_len;
    json_t *json;  /* parsed body (an object), or NULL */
    json_t *query; /* query parameters as an object of strings */
    const struct gw_admin_endpoint *ep;
    long long id; /* the numeric path segment, if any */
    char token_hash[65];
    /* the session */
    long long staff_id, centre_id;
    char login[64], role[16], csrf[65], name[128], centre_name[128], tz[64];
    char sms_number[32], ussd_code[32]; /* the centre's, for the poster ("" when not set) */
    /* per handler */
    char phone[24];
    char text_kind[16];
    long long aux;
    char secret[GW_KEY_LEN];  /* an API key made for this request, shown once */
    char password[40];        /* a password made for this request, shown once */
};

static void areq_free(struct areq *r)
{
    sodium_memzero(r->secret, sizeof r->secret);
    sodium_memzero(r->password, sizeof r->password);
    free(r->body);
    json_decref(r->json);
    json_decref(r->query);
    free(r);
}

static int role_bit(const char *role)
{
    if (!strcmp(role, "admin"))
        return GW_ADMIN_R_ADMIN;
    if (!strcmp(role, "referent"))
        return GW_ADMIN_R_REFERENT;
    if (!strcmp(role, "staff"))
        return GW_ADMIN_R_STAFF;
    return GW_ADMIN_R_VIEWER;
}

/* French error replies (shown to staff as is). */
static void fail(struct evhttp_request *req, int status, const char *code, const char *msg)
{
    gw_http_error(req, status, code, "%s", msg);
}

static void fail_db(struct evhttp_request *req)
{
    fail(req, 503, "database_unavailable", "Service momentanément indisponible.");
}

static void fail_busy(struct evhttp_request *req)
{
    fail(req, 503, "busy", "Service momentanément occupé, réessayez.");
}

/* The end of an API request that fails: the French error, then r is freed. */
static void areq_fail(struct areq *r, int status, const char *code, const char *msg)
{
    fail(r->req, status, code, msg);
    areq_free(r);
}

static void areq_fail_db(struct areq *r)
{
    fail_db(r->req);
    areq_free(r);
}

/* A number as the text of a SQL parameter ($n::bigint). */
struct numtext {
    char s[24];
};

static struct numtext as_text(long long v)
{
    struct numtext t;
    snprintf(t.s, sizeof t.s, "%lld", v);
    return t;
}

/* 1 when s is made of ASCII letters, digits and the characters of extra only. */
static int plain_chars(const char *s, const char *extra)
{
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              strchr(extra, *s)))
            return 0;
    return 1;
}

static int blank_text(const char *t)
{
    for (const char *p = t; p && *p; p++)
        if (*p != ' ' && *p != '\n' && *p != '\t' && *p != '\r')
            return 0;
    return 1;
}

/* 1 after answering 503 busy (Retry-After: 1) when MAX_VERIFYING argon2id jobs already run. */
static int too_busy(struct gw_admin *a, struct evhttp_request *req)
{
    if (a->verifying < MAX_VERIFYING)
        return 0;
    evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "1");
    fail_busy(req);
    return 1;
}

static void client_address(struct evhttp_request *req, char *out, size_t len)
{
    char *addr = NULL;
    ev_uint16_t port = 0;
    struct evhttp_connection *c = evhttp_request_get_connection(req);
    if (c)
        evhttp_connection_get_peer(c, &addr, &port);
    snprintf(out, len, "%s", addr ? addr : "?");
}

static void hash_token(const char *token, char out[65])
{
    unsigned char h[32];
    crypto_generichash(h, sizeof h, (const unsigned char *)token, strlen(token), NULL, 0);
    sodium_bin2hex(out, 65, h, sizeof h);
}

static void set_cookie(struct gw_admin *a, struct evhttp_request *req, const char *token,
                       int max_age)
{
    char c[256];
    snprintf(c, sizeof c, COOKIE "=%s; Path=/; HttpOnly; SameSite=Strict; Max-Age=%d%s", token,
             max_age, a->cfg->admin_secure_cookies ? "; Secure" : "");
    evhttp_add_header(evhttp_request_get_output_headers(req), "Set-Cookie", c);
}

static int cookie_token(struct evhttp_request *req, char *out, size_t len)
{
    const char *h = gw_http_header(req, "Cookie");
    while (h && *h) {
        while (*h == ' ' || *h == ';')
            h++;
        size_t n = strcspn(h, ";");
        if (n > sizeof COOKIE && !strncmp(h, COOKIE "=", sizeof COOKIE)) {
            size_t v = n - sizeof COOKIE;
            if (v == 0 || v >= len)
                return -1;
            memcpy(out, h + sizeof COOKIE, v);
            out[v] = '\0';
            return 0;
        }
        h += n;
    }
    return -1;
}

/* ---------------------------------------------------------------- rate limiting */

static struct rate *rate_get(struct gw_admin *a, const char *key)
{
    struct rate *r;
    HASH_FIND_STR(a->rates, key, r);
    int64_t now = gw_wall_ms() / 1000;
    if (r && now - r->window_start > RL_WINDOW_S) {
        r->window_start = now;
        r->fails = 0;
    }
    return r;
}

static int rate_limited(struct gw_admin *a, const char *login, const char *addr)
{
    char k[96];
    snprintf(k, sizeof k, "l:%s", login);
    struct rate *r = rate_get(a, k);
    if (r && r->fails >= RL_PER_LOGIN)
        return 1;
    snprintf(k, sizeof k, "a:%s", addr);
    r = rate_get(a, k);
    return r && r->fails >= RL_PER_ADDRESS;
}

static void rate_fail(struct gw_admin *a, const char *login, const char *addr)
{
    char k[2][96];
    snprintf(k[0], sizeof k[0], "l:%s", login);
    snprintf(k[1], sizeof k[1], "a:%s", addr);
    for (int i = 0; i < 2; i++) {
        struct rate *r = rate_get(a, k[i]);
        if (!r) {
            if (HASH_COUNT(a->rates) > 100000) { /* bounded: forget the oldest state */
                struct rate *e, *tmp;
                HASH_ITER(hh, a->rates, e, tmp)
                {
                    HASH_DEL(a->rates, e);
                    free(e);
                }
            }
            r = calloc(1, sizeof *r);
            if (!r)
                abort();
            size_t kl = strnlen(k[i], sizeof r->key - 1); /* keys are built to fit */
            memcpy(r->key, k[i], kl);
            r->key[kl] = '\0';
            r->window_start = gw_wall_ms() / 1000;
            HASH_ADD_STR(a->rates, key, r);
        }
        r->fails++;
    }
}

static void rate_clear_login(struct gw_admin *a, const char *login)
{
    char k[96];
    snprintf(k, sizeof k, "l:%s", login);
    struct rate *r;
    HASH_FIND_STR(a->rates, k, r);
    if (r) {
        HASH_DEL(a->rates, r);
        free(r);
    }
}

/* ---------------------------------------------------------------- replies */

static json_t *me_json(const struct areq *r)
{
    json_t *j = json_pack("{s:s,s:s,s:s,s:{s:I,s:s,s:s},s:s}", "login", r->login, "name",
                          r->name, "role", r->role, "centre", "id", (json_int_t)r->centre_id,
                          "name", r->centre_name, "timezone", r->tz, "csrf", r->csrf);
    json_t *c = json_object_get(j, "centre");
    if (r->sms_number[0])
        json_object_set_new(c, "sms_number", json_string(r->sms_number));
    if (r->ussd_code[0])
        json_object_set_new(c, "ussd_code", json_string(r->ussd_code));
    return j;
}

static void audit(struct gw_admin *a, const struct areq *r, const char *action, const char *object,
                  json_t *detail)
{
    struct numtext centre = as_text(r->centre_id), staff = as_text(r->staff_id);
    char *d = detail ? json_dumps(detail, JSON_COMPACT) : NULL;
    const char *p[6] = {centre.s, staff.s, r->login, action, object, d};
    if (gw_db_query(a->db, "SELECT gw_audit($1::bigint, $2::bigint, $3, $4, $5, $6::jsonb)", 6,
                    p, NULL, NULL) != GW_OK)
        gw_warn("admin", "audit entry lost (database unavailable): %s %s by %s", action, object,
                r->login);
    free(d);
}

/* audit() of the object "kind:id". */
static void audit_id(struct gw_admin *a, const struct areq *r, const char *action, const char *kind,
                     long long id, json_t *detail)
{
    char obj[48];
    snprintf(obj, sizeof obj, "%s:%lld", kind, id);
    audit(a, r, action, obj, detail);
}

/* ---------------------------------------------------------------- static files */

static const char *content_type(const char *path)
{
    const char *dot = strrchr(path, '.');
    static const struct {
        const char *ext, *type;
    } types[] = {{".html", "text/html; charset=utf-8"},
                 {".js", "text/javascript; charset=utf-8"},
                 {".mjs", "text/javascript; charset=utf-8"},
                 {".css", "text/css; charset=utf-8"},
                 {".svg", "image/svg+xml"},
                 {".png", "image/png"},
                 {".ico", "image/x-icon"},
                 {".json", "application/json"},
                 {".txt", "text/plain; charset=utf-8"}};
    for (size_t i = 0; dot && i < sizeof types / sizeof types[0]; i++)
        if (!strcmp(dot, types[i].ext))
            return types[i].type;
    return "application/octet-stream";
}

static void on_static(struct evhttp_request *req, void *arg, const char *tail)
{
    struct gw_admin *a = arg;
    const char *f = *tail ? tail : "index.html";
    /* only plain relative names: letters, digits, '-', '_', '.', '/', no "..", no hidden */
    int ok = strlen(f) < 200 && f[0] != '/' && !strstr(f, "..") && !strstr(f, "/.") && f[0] != '.';
    if (!ok || !plain_chars(f, "-_./")) {
        gw_http_reply(req, 404, "text/plain; charset=utf-8", "introuvable\n", 12);
        return;
    }
    char path[512];
    snprintf(path, sizeof path, "%s/%s", a->www, f);
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        gw_http_reply(req, 404, "text/plain; charset=utf-8", "introuvable\n", 12);
        return;
    }
    char *buf = malloc(MAX_STATIC_BYTES);
    if (!buf)
        abort();
    size_t n = fread(buf, 1, MAX_STATIC_BYTES, fp);
    int err = ferror(fp) || !feof(fp);
    fclose(fp);
    if (err) {
        free(buf);
        gw_http_reply(req, 500, "text/plain; charset=utf-8", "erreur de lecture\n", 18);
        return;
    }
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Cache-Control", "no-cache");
    evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
    evhttp_add_header(h, "Content-Security-Policy",
                      "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                      "script-src 'self'; frame-ancestors 'none'");
    gw_http_reply(req, 200, content_type(f), buf, n);
    free(buf);
}

static void on_admin_root(struct evhttp_request *req, void *arg, const char *tail)
{
    (void)arg;
    (void)tail;
    evhttp_add_header(evhttp_request_get_output_headers(req), "Location", "/admin/");
    gw_http_reply(req, 302, "text/plain; charset=utf-8", "/admin/\n", 8);
}

/* ---------------------------------------------------------------- login */

/* An argon2id job (64 MiB, about a second: a login's check, or a staff password's hash) on a
 * short-lived thread, so that the loop never waits for it. */
struct argon {
    char *pw;                          /* owned, wiped when released */
    char hash[crypto_pwhash_STRBYTES]; /* the hash checked, or the hash made */
    int ok;                            /* the thread's result */
    struct event *done;                /* made active by the thread when it ends */
    pthread_t th;
};

static void argon_release(struct argon *g)
{
    if (g->pw) {
        sodium_memzero(g->pw, strlen(g->pw));
        free(g->pw);
    }
    if (g->done)
        event_free(g->done);
}

/* A staff password's argon2id hash (crypto_pwhash_str, the parameters of gatewayctl staff
 * create): 1 when made. POST staff, staff/{id}/password and me/password all hash through it. */
static int argon_hash(char out[crypto_pwhash_STRBYTES], const char *pw)
{
    return crypto_pwhash_str(out, pw, strlen(pw), crypto_pwhash_OPSLIMIT_INTERACTIVE,
                             crypto_pwhash_MEMLIMIT_INTERACTIVE) == 0;
}

/* Runs fn(arg) on a thread counted in a->verifying; fn ends with event_active(g->done), so that
 * on_done(arg) runs on the loop. 0, or -1 after answering 503 busy (the caller frees arg). */
static int argon_start(struct gw_admin *a, struct evhttp_request *req, struct argon *g,
                       void *(*fn)(void *), event_callback_fn on_done, void *arg)
{
    g->done = event_new(a->base, -1, 0, on_done, arg);
    a->verifying++;
    if (pthread_create(&g->th, NULL, fn, arg) == 0)
        return 0;
    a->verifying--;
    fail_busy(req);
    return -1;
}

/* On the loop once the thread has ended: joins it and uncounts it. */
static void argon_join(struct gw_admin *a, struct argon *g)
{
    pthread_join(g->th, NULL);
    a->verifying--;
}

struct login {
    struct gw_admin *a;
    struct evhttp_request *req;
    char login[64], addr[64];
    struct argon job; /* the password given, checked against the login's hash */
    int known;
    long long staff_id;
};

static void login_free(struct login *l)
{
    argon_release(&l->job);
    free(l);
}

static void session_created(void *arg, PGresult *res, const char *err)
{
    struct login *l = arg;
    struct gw_admin *a = l->a;
    if (err || PQntuples(res) != 1) {
        fail_db(l->req);
        login_free(l);
        return;
    }
    struct areq r = {0};
    snprintf(r.login, sizeof r.login, "%s", PQgetvalue(res, 0, 0));
    snprintf(r.name, sizeof r.name, "%s", PQgetvalue(res, 0, 1));
    snprintf(r.role, sizeof r.role, "%s", PQgetvalue(res, 0, 2));
    r.centre_id = gw_db_int(res, 0, 3);
    snprintf(r.centre_name, sizeof r.centre_name, "%s", PQgetvalue(res, 0, 4));
    snprintf(r.tz, sizeof r.tz, "%s", PQgetvalue(res, 0, 5));
    snprintf(r.csrf, sizeof r.csrf, "%s", PQgetvalue(res, 0, 6));
    snprintf(r.sms_number, sizeof r.sms_number, "%s", PQgetvalue(res, 0, 8));
    snprintf(r.ussd_code, sizeof r.ussd_code, "%s", PQgetvalue(res, 0, 9));
    set_cookie(a, l->req, PQgetvalue(res, 0, 7), a->cfg->admin_absolute_hours * 3600);
    gw_info("admin", "%s logged in (centre %lld)", r.login, r.centre_id);
    gw_http_json(l->req, 200, me_json(&r));
    login_free(l);
}

static void login_verified(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct login *l = arg;
    struct gw_admin *a = l->a;
    argon_join(a, &l->job);
    if (!l->job.ok || !l->known) {
        a->logins_failed++;
        rate_fail(a, l->login, l->addr);
        gw_info("admin", "failed login for '%s' from %s", l->login, l->addr);
        fail(l->req, 401, "bad_credentials", "Identifiant ou mot de passe incorrect.");
        login_free(l);
        return;
    }
    a->logins_ok++;
    rate_clear_login(a, l->login);
    unsigned char raw[32], rc[16];
    char token[65], th[65], csrf[33], hours[12];
    randombytes_buf(raw, sizeof raw);
    randombytes_buf(rc, sizeof rc);
    sodium_bin2hex(token, sizeof token, raw, sizeof raw);
    sodium_bin2hex(csrf, sizeof csrf, rc, sizeof rc);
    hash_token(token, th);
    struct numtext sid = as_text(l->staff_id);
    snprintf(hours, sizeof hours, "%d", a->cfg->admin_absolute_hours);
    const char *p[6] = {th, sid.s, csrf, l->addr, hours, token};
    if (gw_db_query(a->db,
                    "WITH s AS (INSERT INTO admin_sessions (token_hash, staff_id, csrf, address,"
                    " expires_at) VALUES ($1, $2::bigint, $3, $4,"
                    " now() + make_interval(hours => $5::int)) RETURNING staff_id)"
                    " SELECT st.login, st.name, st.role, c.id, c.name, c.timezone, $3, $6,"
                    " coalesce(c.settings ->> 'sms_number', ''),"
                    " coalesce(c.settings ->> 'ussd_code', ''),"
                    " gw_audit(c.id, st.id, st.login, 'login', 'staff:' || st.id,"
                    "          jsonb_build_object('address', $4::text))"
                    " FROM s JOIN staff st ON st.id = s.staff_id JOIN centres c ON c.id = st.centre_id",
                    6, p, session_created, l) != GW_OK) {
        fail_db(l->req);
        login_free(l);
    }
}

static void *verify_thread(void *arg)
{
    struct login *l = arg;
    const char *h = l->known ? l->job.hash : DUMMY_HASH;
    l->job.ok = crypto_pwhash_str_verify(h, l->job.pw, strlen(l->job.pw)) == 0;
    event_active(l->job.done, EV_READ, 0);
    return NULL;
}

static void login_looked_up(void *arg, PGresult *res, const char *err)
{
    struct login *l = arg;
    struct gw_admin *a = l->a;
    if (err) {
        fail_db(l->req);
        login_free(l);
        return;
    }
    l->known = PQntuples(res) == 1 && !PQgetisnull(res, 0, 1);
    if (l->known) {
        l->staff_id = gw_db_int(res, 0, 0);
        snprintf(l->job.hash, sizeof l->job.hash, "%s", PQgetvalue(res, 0, 1));
    }
    if (argon_start(a, l->req, &l->job, verify_thread, login_verified, l) < 0)
        login_free(l);
}

static void handle_login(struct gw_admin *a, struct evhttp_request *req, json_t *body)
{
    const char *login = json_string_value(json_object_get(body, "login"));
    const char *pw = json_string_value(json_object_get(body, "password"));
    if (!login || !pw || !*login || strlen(login) > 60 || strlen(pw) > 256) {
        fail(req, 400, "bad_request", "Indiquez votre identifiant et votre mot de passe.");
        return;
    }
    char addr[64];
    client_address(req, addr, sizeof addr);
    if (rate_limited(a, login, addr)) {
        a->logins_limited++;
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "900");
        fail(req, 429, "rate_limited",
             "Trop d'essais. Attendez un quart d'heure ou demandez à un administrateur.");
        return;
    }
    if (too_busy(a, req))
        return;
    struct login *l = calloc(1, sizeof *l);
    if (!l)
        abort();
    l->a = a;
    l->req = req;
    snprintf(l->login, sizeof l->login, "%s", login);
    snprintf(l->addr, sizeof l->addr, "%s", addr);
    l->job.pw = strdup(pw);
    if (!l->job.pw)
        abort();
    const char *p[1] = {l->login};
    if (gw_db_query(a->db,
                    "SELECT st.id, st.password_hash FROM staff st"
                    " WHERE st.login = $1 AND st.disabled_at IS NULL",
                    1, p, login_looked_up, l) != GW_OK) {
        fail_db(req);
        login_free(l);
    }
}

/* ---------------------------------------------------------------- generic SQL endpoints */

/* The {"status", "body"} answer of gw_admin_call and of the 010 functions, or NULL after
 * answering 503 (no answer, or not JSON). */
static json_t *sql_answer(struct areq *r, PGresult *res, const char *err)
{
    json_t *j = (!err && PQntuples(res) == 1 && !PQgetisnull(res, 0, 0))
                    ? json_loads(PQgetvalue(res, 0, 0), 0, NULL)
                    : NULL;
    if (!j) {
        gw_warn("admin", "%s %s: %s", r->method, r->path, err ? err : "no answer");
        fail_db(r->req);
    }
    return j;
}

/* The request's body ({} without one) and query as JSON text, for $n::jsonb (caller frees). */
static void request_texts(const struct areq *r, char **body, char **query)
{
    json_t *empty = r->json ? NULL : json_object();
    *body = json_dumps(r->json ? r->json : empty, JSON_COMPACT);
    json_decref(empty);
    *query = json_dumps(r->query, JSON_COMPACT);
}

static void generic_done(void *arg, PGresult *res, const char *err)
{
    struct areq *r = arg;
    json_t *j = sql_answer(r, res, err);
    if (j) {
        int status = (int)json_integer_value(json_object_get(j, "status"));
        const char *csv = json_string_value(json_object_get(j, "csv"));
        if (csv) {
            evhttp_add_header(evhttp_request_get_output_headers(r->req), "Content-Disposition",
                              "attachment; filename=\"presences.csv\"");
            gw_http_reply(r->req, status, "text/csv; charset=utf-8", csv, strlen(csv));
        } else {
            gw_http_json(r->req, status ? status : 500, json_incref(json_object_get(j, "body")));
        }
    }
    json_decref(j);
    areq_free(r);
}

static void run_generic(struct areq *r)
{
    struct numtext centre = as_text(r->centre_id), staff = as_text(r->staff_id);
    char *body, *query;
    request_texts(r, &body, &query);
    const char *p[7] = {centre.s, staff.s, r->login, r->method, r->path, body, query};
    int rc = gw_db_query(r->a->db,
                         "SELECT gw_admin_call($1::bigint, $2::bigint, $3, $4, $5, $6::jsonb,"
                         " $7::jsonb)",
                         7, p, generic_done, r);
    free(body);
    free(query);
    if (rc != GW_OK)
        areq_fail_db(r);
}

/* ---------------------------------------------------------------- residents */

static void resident_created(void *arg, PGresult *res, const char *err)
{
    generic_done(arg, res, err); /* gw_admin_resident_create answers {status, body} too */
}

static void handle_resident_create(struct areq *r)
{
    struct gw_admin_resident in;
    const char *code, *msg;
    int st = gw_admin_resident_parse(r->json, r->a->cfg->default_region, &in, &code, &msg);
    if (st) {
        areq_fail(r, st, code, msg);
        return;
    }
    struct numtext centre = as_text(r->centre_id), staff = as_text(r->staff_id);
    const char *p[7] = {centre.s, staff.s, r->login, in.phone, in.first_name, in.language,
                        in.consent};
    if (gw_db_query(r->a->db,
                    "SELECT gw_admin_resident_create($1::bigint, $2::bigint, $3, $4, $5, $6, $7)",
                    7, p, resident_created, r) != GW_OK)
        areq_fail_db(r);
}

/* ---------------------------------------------------------------- reminders */

/* Validates the reminder body (gw_admin_parse.h): fills *in and next[] and returns the count
 * of next occurrences (1 to 5); or answers 422 invalid_reminder (or no_occurrence: it would
 * never fire), frees r and returns -1. */
static int reminder_checked(struct areq *r, struct gw_admin_reminder *in, int64_t next[5])
{
    const char *why;
    int n = gw_admin_reminder_parse(r->json, r->tz, gw_wall_ms() / 1000, in, next, &why);
    if (n < 0)
        areq_fail(r, 422, "invalid_reminder", why);
    else if (n == 0)
        areq_fail(r, 422, "no_occurrence",
                  "Ce rappel ne partirait jamais : les dates sont passées.");
    return n > 0 ? n : -1;
}

struct preview {
    struct areq *r;
    int n;
    int64_t next[5];
};

static void preview_rendered(void *arg, PGresult *res, const char *err)
{
    struct preview *pv = arg;
    struct areq *r = pv->r;
    if (err || PQntuples(res) != 1) {
        fail_db(r->req);
    } else if (PQgetisnull(res, 0, 0)) {
        fail(r->req, 404, "not_found", "Habitant introuvable.");
    } else {
        const char *text = PQgetvalue(res, 0, 0);
        struct prov_text_info info;
        char *t = gw_send_text(r->a->cfg, text, strlen(text), &info);
        json_t *next = json_array(), *local = json_array();
        for (int i = 0; i < pv->n; i++) {
            char ts[32];
            struct sched_local l;
            gw_format_rfc3339(pv->next[i], ts, sizeof ts);
            json_array_append_new(next, json_string(ts));
            if (sched_utc_to_local(r->tz, pv->next[i], &l, NULL) == 0) {
                char ls[20];
                snprintf(ls, sizeof ls, "%04d-%02d-%02d %02d:%02d", l.year, l.month, l.day,
                         l.hour, l.minute);
                json_array_append_new(local, json_string(ls));
            }
        }
        gw_http_json(r->req, 200,
                     json_pack("{s:o,s:o,s:s,s:i,s:s}", "next", next, "next_local", local, "text",
                               t ? t : text, "segments", t ? info.segments : 0, "encoding",
                               t ? prov_encoding_name(info.encoding) : "?"));
        free(t);
    }
    free(pv);
    areq_free(r);
}

static void handle_preview(struct areq *r)
{
    struct gw_admin_reminder in;
    int64_t next[5];
    int n = reminder_checked(r, &in, next);
    if (n < 0)
        return;
    struct preview *pv = calloc(1, sizeof *pv);
    if (!pv)
        abort();
    pv->r = r;
    pv->n = n;
    memcpy(pv->next, next, sizeof pv->next);
    struct numtext centre = as_text(r->centre_id), at = as_text(next[0]),
                   resident = as_text(json_integer_value(json_object_get(r->json, "resident_id")));
    json_t *row = json_pack("{s:s,s:s,s:s,s:s?,s:s?}", "centre_id", centre.s, "contact_id",
                            resident.s, "body", in.text, "place", in.place, "appointment_local",
                            !strcmp(in.schedule, "appointment") ? in.appt_s : NULL);
    char *rj = json_dumps(row, JSON_COMPACT);
    json_decref(row);
    const char *p[4] = {centre.s, resident.s, rj, at.s};
    int rc = gw_db_query(r->a->db,
                         "SELECT gw_reminder_text(jsonb_populate_record(NULL::reminders, $3::jsonb),"
                         " to_timestamp($4::bigint)) FROM contacts"
                         " WHERE id = $2::bigint AND centre_id = $1::bigint"
                         " UNION ALL SELECT NULL LIMIT 1",
                         4, p, preview_rendered, pv);
    free(rj);
    if (rc != GW_OK) {
        fail_db(r->req);
        free(pv);
        areq_free(r);
    }
}

static void reminder_created(void *arg, PGresult *res, const char *err)
{
    struct areq *r = arg;
    if (err || PQntuples(res) > 1) {
        fail_db(r->req);
    } else if (PQntuples(res) == 0) {
        fail(r->req, 404, "not_found", "Habitant introuvable.");
    } else {
        gw_http_json(r->req, 201, json_pack("{s:I}", "id", (json_int_t)gw_db_int(res, 0, 0)));
    }
    areq_free(r);
}

/* POST reminders and PATCH reminders/{id} send the same 13 parameters to sql: $1 the centre,
 * $2 subject (the resident, or the reminder), $3 the login, $4..$12 the body (text, schedule,
 * start, rrule, appointment, place, offsets, urgent, ack), $13 the staff id. A refused body or
 * an unavailable database is answered here (r freed); else done answers. */
static void reminder_write(struct areq *r, long long subject, const char *sql, gw_db_cb done)
{
    struct gw_admin_reminder in;
    int64_t next[5];
    if (reminder_checked(r, &in, next) < 0)
        return;
    struct numtext centre = as_text(r->centre_id), id = as_text(subject),
                   staff = as_text(r->staff_id);
    char *offs = json_dumps(in.offsets, JSON_COMPACT | JSON_ENCODE_ANY);
    int appt = !strcmp(in.schedule, "appointment");
    const char *p[13] = {centre.s, id.s, r->login, in.text, in.schedule,
                         appt ? NULL : in.start_s, !strcmp(in.schedule, "rrule") ? in.rrule : NULL,
                         appt ? in.appt_s : NULL, in.place, appt ? offs : NULL,
                         in.urgent ? "t" : "f", in.ack ? "t" : "f", staff.s};
    int rc = gw_db_query(r->a->db, sql, 13, p, done, r);
    free(offs);
    if (rc != GW_OK)
        areq_fail_db(r);
}

static void handle_reminder_create(struct areq *r)
{
    reminder_write(
        r, json_integer_value(json_object_get(r->json, "resident_id")),
        "WITH c AS (SELECT phone FROM contacts WHERE id = $2::bigint AND centre_id = $1::bigint),"
        " r AS (SELECT gw_reminder_create($1::bigint, c.phone, $3, $4, $5, $6::timestamp, $7,"
        " $8::timestamp, $9, $10::jsonb, $11::boolean, $12::boolean) AS id FROM c)"
        " SELECT r.id, gw_audit($1::bigint, $13::bigint, $3, 'reminder.create', 'reminder:' || r.id,"
        " jsonb_build_object('schedule', $5::text, 'resident', $2::bigint)) FROM r",
        reminder_created);
}

/* ---------------------------------------------------------------- sending (messages, inbox) */

/* An inbox item answered is done (by this login, unless it was done before). */
static void inbox_mark_done(const struct areq *r)
{
    struct numtext centre = as_text(r->centre_id), item = as_text(r->aux);
    const char *p[3] = {centre.s, item.s, r->login};
    if (gw_db_query(r->a->db,
                    "UPDATE inbox SET handled_at = coalesce(handled_at, now()),"
                    " handled_by = coalesce(handled_by, $3)"
                    " WHERE id = $2::bigint AND centre_id = $1::bigint",
                    3, p, NULL, NULL) != GW_OK)
        gw_warn("admin", "inbox item %lld answered but not marked done", r->aux);
}

static void staff_sms_queued(void *arg, int err, int64_t id, int created, const char *status,
                             int segments, const char *encoding)
{
    (void)created;
    struct areq *r = arg;
    if (err) {
        fail_db(r->req);
    } else if (status && !strcmp(status, "opted_out")) {
        fail(r->req, 422, "opted_out",
             "Cet habitant a demandé à ne plus recevoir de SMS (STOP) : rien n'est envoyé.");
    } else {
        json_t *d = json_pack("{s:I,s:s}", "message_id", (json_int_t)id, "phone", r->phone);
        if (r->aux > 0) { /* an inbox answer */
            inbox_mark_done(r);
            audit_id(r->a, r, "inbox.reply", "inbox", r->aux, d);
        } else {
            audit_id(r->a, r, "message.send", "message", id, d);
        }
        json_decref(d);
        gw_http_json(r->req, 202,
                     json_pack("{s:I,s:I,s:s,s:i,s:s}", "id", (json_int_t)id, "message_id",
                               (json_int_t)id, "status", "queued", "segments", segments,
                               "encoding", encoding ? encoding : "gsm7"));
    }
    areq_free(r);
}

static void recipient_found(void *arg, PGresult *res, const char *err)
{
    struct areq *r = arg;
    if (err) {
        areq_fail_db(r);
        return;
    }
    if (PQntuples(res) != 1) {
        areq_fail(r, 404, "not_found",
                  r->aux > 0 ? "Message introuvable." : "Habitant introuvable.");
        return;
    }
    snprintf(r->phone, sizeof r->phone, "%s", PQgetvalue(res, 0, 0));
    const char *text = json_string_value(json_object_get(r->json, "text"));
    struct prov_text_info info;
    char *t = gw_send_text(r->a->cfg, text, strlen(text), &info);
    if (!t || info.segments > r->a->cfg->max_segments) {
        free(t);
        areq_fail(r, 422, "text_too_long", "Ce texte est trop long pour un SMS.");
        return;
    }
    struct gw_enqueue e = {.centre_id = r->centre_id,
                           .phone = r->phone,
                           .text = t,
                           .segments = info.segments,
                           .encoding = prov_encoding_name(info.encoding),
                           .kind = r->aux > 0 ? "replies" : "staff"};
    int rc = gw_outbox_enqueue(r->a->o, &e, staff_sms_queued, r);
    free(t);
    if (rc != GW_OK)
        staff_sms_queued(r, rc, 0, 0, NULL, 0, NULL);
}

static void handle_send(struct areq *r, int inbox)
{
    if (blank_text(json_string_value(json_object_get(r->json, "text")))) {
        areq_fail(r, 422, "empty_text", "Écrivez le texte du SMS.");
        return;
    }
    json_t *rid = json_object_get(r->json, "resident_id");
    if (inbox) {
        r->aux = r->id;
    } else if (!json_is_integer(rid)) {
        areq_fail(r, 422, "invalid_resident", "Choisissez un habitant.");
        return;
    }
    struct numtext centre = as_text(r->centre_id),
                   id = as_text(inbox ? r->id : json_integer_value(rid));
    const char *p[2] = {centre.s, id.s};
    int rc = gw_db_query(r->a->db,
                         inbox ? "SELECT phone FROM inbox WHERE id = $2::bigint AND centre_id = $1::bigint"
                               : "SELECT phone FROM contacts WHERE id = $2::bigint AND centre_id = $1::bigint",
                         2, p, recipient_found, r);
    if (rc != GW_OK)
        areq_fail_db(r);
}

/* ---------------------------------------------------------------- loans */

/* NULL when action applies to a loan in state status, else why not (French). */
static const char *loan_refusal(const char *action, const char *status)
{
    int requested = !strcmp(status, "requested");
    int out = !strcmp(status, "confirmed") || !strcmp(status, "return_requested");
    if ((!strcmp(action, "confirm") || !strcmp(action, "refuse")) && requested)
        return NULL;
    if (!strcmp(action, "returned") && out)
        return NULL;
    if (!strcmp(status, "returned"))
        return "Ce prêt est déjà terminé : l'objet a été rendu.";
    if (!strcmp(status, "refused"))
        return "Ce prêt a déjà été refusé.";
    if (!strcmp(status, "cancelled"))
        return "Cette demande de prêt a été annulée par l'habitant.";
    if (out)
        return "Ce prêt est déjà confirmé : l'objet est sorti.";
    return "Ce prêt n'est pas encore confirmé : confirmez-le ou refusez-le d'abord.";
}

static void loan_checked(void *arg, PGresult *res, const char *err)
{
    struct areq *r = arg;
    const char *action = strrchr(r->path, '/') + 1;
    const char *refusal =
        !err && PQntuples(res) == 1 ? loan_refusal(action, PQgetvalue(res, 0, 0)) : NULL;
    json_t *days = json_object_get(r->json, "days");
    int d = json_is_integer(days) ? (int)json_integer_value(days) : 0;
    if (err) {
        fail_db(r->req);
    } else if (PQntuples(res) != 1) {
        fail(r->req, 404, "not_found", "Prêt introuvable.");
    } else if (refusal) {
        /* the loan is not in a state this action applies to (gw_loan_action would refuse it
         * with an English message): say why in French */
        fail(r->req, 409, "bad_state", refusal);
    } else if (json_is_integer(days) ? d < 1 || d > 365 : days != NULL) {
        fail(r->req, 422, "invalid_days", "Durée du prêt : de 1 à 365 jours.");
    } else {
        char act[32];
        snprintf(act, sizeof act, "loan.%s", action);
        audit_id(r->a, r, act, "loan", r->id, r->json);
        gw_flows_loan_action(r->a->flows, r->req, r->id, action, d);
    }
    areq_free(r);
}

static void handle_loan(struct areq *r)
{
    struct numtext centre = as_text(r->centre_id), id = as_text(r->id);
    const char *p[2] = {centre.s, id.s};
    if (gw_db_query(r->a->db,
                    "SELECT status FROM loans WHERE id = $2::bigint AND centre_id = $1::bigint",
                    2, p, loan_checked, r) != GW_OK)
        areq_fail_db(r);
}

/* ---------------------------------------------------------------- second increment (010) */

/* An answer's "text_preview" becomes the SMS as it will be sent: "text", "segments",
 * "encoding" and "too_long" (more segments than [gateway] max_segments). */
static void sms_preview_fill(struct gw_admin *a, json_t *body)
{
    json_t *tp = json_object_get(body, "text_preview");
    if (!tp)
        return;
    const char *text = json_string_value(tp);
    struct prov_text_info info = {0};
    char *t = text ? gw_send_text(a->cfg, text, strlen(text), &info) : NULL;
    json_object_set_new(body, "text", json_string(t ? t : ""));
    json_object_set_new(body, "segments", json_integer(t && *t ? info.segments : 0));
    json_object_set_new(body, "encoding",
                        json_string(t ? prov_encoding_name(info.encoding) : "gsm7"));
    json_object_set_new(body, "too_long", json_boolean(t && info.segments > a->cfg->max_segments));
    free(t);
    json_object_del(body, "text_preview");
}

/* GET routes: the centre's routes in order (none listed: the default route) with their live
 * state as /healthz shows it, minus anything that looks like a credential; and the routes of
 * the configuration ("available", for Paramètres). */
static void routes_fill(struct gw_admin *a, json_t *body)
{
    json_t *names = json_object_get(body, "routes");
    json_t *st = gw_outbox_status(a->o);
    json_t *out = json_array(), *avail = json_array();
    int dflt = json_array_size(names) == 0;
    json_t *list = dflt ? json_pack("[s]", a->cfg->default_route ? a->cfg->default_route : "")
                        : json_incref(names);
    size_t i;
    json_t *n;
    json_array_foreach(list, i, n)
    {
        const char *name = json_string_value(n);
        json_t *s = json_object_get(st, name), *o = json_object(), *v;
        const char *k;
        json_object_foreach(s, k, v)
        {
            /* nothing that looks like a credential, nor the daemon's counts over every centre */
            if (!strstr(k, "key") && !strstr(k, "secret") && !strstr(k, "token") &&
                !strstr(k, "password") && strcmp(k, "queued") && strcmp(k, "due") &&
                strcmp(k, "in_flight") && strcmp(k, "claimed") && strcmp(k, "accepted") &&
                strcmp(k, "tempfail") && strcmp(k, "permfail"))
                json_object_set(o, k, v);
        }
        json_t *mine = json_object_get(json_object_get(body, "queued_by_route"), name);
        json_object_set_new(o, "queued", json_integer(json_integer_value(mine)));
        if (!s)
            json_object_set_new(o, "state", json_string("unknown"));
        json_object_set_new(o, "name", json_string(name));
        json_object_set_new(o, "position", json_integer((json_int_t)i));
        json_object_set_new(o, "default", json_boolean(dflt));
        json_array_append_new(out, o);
    }
    const char *k;
    json_t *v;
    json_object_foreach(st, k, v) json_array_append_new(avail, json_string(k));
    json_object_set_new(body, "routes", out);
    json_object_del(body, "queued_by_route");
    json_object_set_new(body, "available", avail);
    json_object_set_new(body, "default_route",
                        json_string(a->cfg->default_route ? a->cfg->default_route : ""));
    json_decref(list);
    json_decref(st);
}

/* Every SQL function of 010 answers {"status", "body"} like gw_admin_call. */
static void more_done(void *arg, PGresult *res, const char *err)
{
    struct areq *r = arg;
    json_t *j = sql_answer(r, res, err);
    if (j) {
        int status = (int)json_integer_value(json_object_get(j, "status"));
        json_t *body = json_object_get(j, "body");
        if (json_is_object(body) && status >= 200 && status < 300) {
            sms_preview_fill(r->a, body);
            if (r->ep->handler == GW_ADMIN_H_ROUTES)
                routes_fill(r->a, body);
            if (r->secret[0])
                json_object_set_new(body, "key", json_string(r->secret));
            if (r->password[0])
                json_object_set_new(body, "password", json_string(r->password));
        }
        gw_http_json(r->req, status ? status : 500, json_incref(body));
    }
    json_decref(j);
    areq_free(r);
}

static void run_more(struct areq *r)
{
    struct numtext centre = as_text(r->centre_id), staff = as_text(r->staff_id);
    char *body, *query;
    request_texts(r, &body, &query);
    const char *p[8] = {centre.s, staff.s, r->login, r->role, r->method, r->path, body, query};
    int rc = gw_db_query(r->a->db,
                         "SELECT gw_admin_more($1::bigint, $2::bigint, $3, $4, $5, $6, $7::jsonb,"
                         " $8::jsonb)",
                         8, p, more_done, r);
    free(body);
    free(query);
    if (rc != GW_OK)
        areq_fail_db(r);
}

/* POST alerts and alerts/preview: the text must fit the centre's SMS limits before anything
 * is created (the preview only reports "too_long"). */
static void handle_more_sms(struct areq *r)
{
    const char *text = json_string_value(json_object_get(r->json, "text"));
    int preview = !strcmp(r->path, "alerts/preview");
    if (text && strlen(text) > 1000) {
        areq_fail(r, 422, "text_too_long", "Ce texte est trop long pour un SMS.");
        return;
    }
    if (!preview) {
        struct prov_text_info info;
        char *t = text && !blank_text(text) ? gw_send_text(r->a->cfg, text, strlen(text), &info)
                                            : NULL;
        if (!t) {
            areq_fail(r, 422, "empty_text", "Écrivez le texte de l'alerte.");
            return;
        }
        free(t);
        if (info.segments > r->a->cfg->max_segments) {
            areq_fail(r, 422, "text_too_long", "Ce texte est trop long pour un SMS.");
            return;
        }
    }
    run_more(r);
}

/* PUT routes {"routes": [names]}: configured routes only, each once. */
static void handle_routes_set(struct areq *r)
{
    json_t *names = json_object_get(r->json, "routes");
    const char *why = NULL;
    char msg[200];
    if (!json_is_array(names) || json_array_size(names) > 10)
        why = "Donnez la liste des voies, dans l'ordre (10 au plus).";
    for (size_t i = 0; !why && i < json_array_size(names); i++) {
        const char *s = json_string_value(json_array_get(names, i));
        if (!s || !gw_config_route(r->a->cfg, s)) {
            snprintf(msg, sizeof msg, "Voie inconnue : %.100s.", s ? s : "?");
            why = msg;
        }
        for (size_t j = 0; !why && j < i; j++)
            if (json_equal(json_array_get(names, j), json_array_get(names, i)))
                why = "Chaque voie ne figure qu'une fois dans la liste.";
    }
    if (why) {
        areq_fail(r, 422, "invalid_routes", why);
        return;
    }
    run_more(r);
}

/* POST partners, POST api-keys: the daemon makes the secrets (libsodium's random), the
 * database keeps what it needs (a partner's secret for HMAC; only a hash of an API key). */
static void handle_secret(struct areq *r)
{
    if (!r->json)
        r->json = json_object();
    if (!strcmp(r->path, "partners")) {
        uint8_t kid[8], sec[32];
        char key_id[3 + 2 * sizeof kid + 1], secret[2 * sizeof sec + 1];
        randombytes_buf(kid, sizeof kid);
        randombytes_buf(sec, sizeof sec);
        memcpy(key_id, "pk_", 3);
        sodium_bin2hex(key_id + 3, sizeof key_id - 3, kid, sizeof kid);
        sodium_bin2hex(secret, sizeof secret, sec, sizeof sec);
        json_object_set_new(r->json, "key_id", json_string(key_id));
        json_object_set_new(r->json, "secret", json_string(secret));
        sodium_memzero(sec, sizeof sec);
        sodium_memzero(secret, sizeof secret);
    } else {
        char prefix[GW_KEY_PREFIX_LEN], hex[2 * GW_KEY_HASH_LEN + 1];
        uint8_t hash[GW_KEY_HASH_LEN];
        gw_auth_key_generate(r->secret, prefix, hash);
        sodium_bin2hex(hex, sizeof hex, hash, sizeof hash);
        json_object_set_new(r->json, "prefix", json_string(prefix));
        json_object_set_new(r->json, "key_hash", json_string(hex));
    }
    run_more(r);
}

/* Staff accounts with a password: argon2id (as gatewayctl staff create and the login check)
 * on a short-lived thread, so the loop never waits for it. */
struct pwjob {
    struct areq *r;
    struct argon job; /* the password given or made, hashed */
};

static void pwjob_free(struct pwjob *j)
{
    argon_release(&j->job);
    free(j);
}

static void *hash_thread(void *arg)
{
    struct pwjob *j = arg;
    struct argon *g = &j->job;
    g->ok = argon_hash(g->hash, g->pw);
    event_active(g->done, EV_READ, 0);
    return NULL;
}

static void pw_hashed(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct pwjob *j = arg;
    struct areq *r = j->r;
    argon_join(r->a, &j->job);
    if (!j->job.ok) {
        fail_busy(r->req);
        areq_free(r);
        pwjob_free(j);
        return;
    }
    struct numtext centre = as_text(r->centre_id), staff = as_text(r->staff_id),
                   target = as_text(r->id);
    char *body = json_dumps(r->json, JSON_COMPACT);
    const char *op = !strcmp(r->path, "staff") ? "create" : "password";
    const char *p[7] = {centre.s, staff.s, r->login, op, target.s, body, j->job.hash};
    int rc = gw_db_query(r->a->db,
                         "SELECT gw_admin_staff_write($1::bigint, $2::bigint, $3, $4, $5::bigint,"
                         " $6::jsonb, $7)",
                         7, p, more_done, r);
    free(body);
    pwjob_free(j);
    if (rc != GW_OK)
        areq_fail_db(r);
}

/* Why a staff body is refused (French), or NULL: POST staff checks the login, role and name;
 * both endpoints check a password given (none: one is made). */
/* Characters (UTF-8 code points) of s, as the browser counts them. */
static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

/* The one password rule (a staff account's, set by an admin or by its owner): at least 10
 * characters as the browser counts them, at most 256 bytes. */
static const char *password_refusal(const char *pw)
{
    if (utf8_chars(pw) < 10 || strlen(pw) > 256)
        return "Le mot de passe doit avoir au moins 10 caractères (et 256 octets au plus).";
    return NULL;
}

static const char *staff_refusal(const struct areq *r, const char *pw)
{
    if (!strcmp(r->path, "staff")) {
        const char *login = json_string_value(json_object_get(r->json, "login"));
        const char *role = json_string_value(json_object_get(r->json, "role"));
        const char *name = json_string_value(json_object_get(r->json, "name"));
        if (!login || !*login || strlen(login) > 60 || !plain_chars(login, "._-@"))
            return "Identifiant : de 1 à 60 lettres sans accent, chiffres, « . », « _ », « - » ou « @ ».";
        if (!role || (strcmp(role, "admin") && strcmp(role, "referent") && strcmp(role, "staff") &&
                      strcmp(role, "viewer")))
            return "Choisissez un rôle : administrateur, référent, animateur ou lecture seule.";
        if (name && strlen(name) > 100)
            return "Nom : 100 caractères au plus.";
    }
    return pw && *pw ? password_refusal(pw) : NULL;
}

/* A password made here, shown once: 3 groups of 4 characters that cannot be mistaken for one
 * another (no 0/O, 1/l/I), e.g. "k7Qm-xR2p-9fTz". */
static void password_make(char out[15])
{
    static const char alphabet[] = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    size_t o = 0;
    for (int g = 0; g < 3; g++) {
        if (g)
            out[o++] = '-';
        for (int c = 0; c < 4; c++)
            out[o++] = alphabet[randombytes_uniform(sizeof alphabet - 1)];
    }
    out[o] = '\0';
}

static void handle_staff_pw(struct areq *r)
{
    if (!r->json)
        r->json = json_object();
    const char *pw = json_string_value(json_object_get(r->json, "password"));
    const char *why = staff_refusal(r, pw);
    if (why) {
        areq_fail(r, 422, "invalid_staff", why);
        return;
    }
    if (too_busy(r->a, r->req)) {
        areq_free(r);
        return;
    }
    struct pwjob *j = calloc(1, sizeof *j);
    if (!j)
        abort();
    j->r = r;
    if (!pw || !*pw)
        password_make(r->password);
    j->job.pw = strdup(pw && *pw ? pw : r->password);
    if (!j->job.pw)
        abort();
    /* the password never reaches SQL, the audit log or a log line, and is wiped from the
     * request (its JSON value and the raw body) as in handle_me_pw */
    json_t *given = json_object_get(r->json, "password");
    if (json_is_string(given))
        sodium_memzero((char *)json_string_value(given), json_string_length(given));
    json_object_del(r->json, "password");
    if (r->body)
        sodium_memzero(r->body, r->body_len);
    if (argon_start(r->a, r->req, &j->job, hash_thread, pw_hashed, j) < 0) {
        pwjob_free(j);
        areq_free(r);
    }
}

/* POST me/password {"current", "new"}: any staff member, whatever the role, changes their own
 * password. The current one is checked exactly as a login checks it (argon2id on a thread, in
 * one of the MAX_VERIFYING slots) and a wrong one counts as a failed login for the rate
 * limiter, so this endpoint is no way around it to guess a password; the new one is hashed on
 * the same thread right after (one slot, one thread for both). The UPDATE applies only if the
 * stored hash is still the one checked (an admin may have reset it meanwhile), ends the
 * account's other sessions, keeps this one, and is audited without any password. Both
 * passwords are copied out of the request at once and wiped there (JSON and raw body); the
 * copies are wiped when the job ends. */
struct mepw {
    struct areq *r;
    struct argon job; /* job.pw: the current password, checked against job.hash */
    char *next;       /* the new password (owned, wiped) */
    char next_hash[crypto_pwhash_STRBYTES];
    int made; /* next_hash was made */
    char addr[64];
};

static void mepw_free(struct mepw *m)
{
    argon_release(&m->job);
    if (m->next) {
        sodium_memzero(m->next, strlen(m->next));
        free(m->next);
    }
    free(m);
}

/* A copy of the string body[key] (NULL when it is not a string); the original is wiped. */
static char *take_secret(json_t *body, const char *key)
{
    json_t *v = json_object_get(body, key);
    if (!json_is_string(v))
        return NULL;
    char *copy = strdup(json_string_value(v));
    if (!copy)
        abort();
    /* jansson keeps the value in a buffer of its own, writable: wipe it before it is freed */
    sodium_memzero((char *)json_string_value(v), json_string_length(v));
    json_object_del(body, key);
    return copy;
}

static void mepw_saved(void *arg, PGresult *res, const char *err)
{
    struct areq *r = arg;
    if (err || PQntuples(res) > 1) {
        fail_db(r->req);
    } else if (PQntuples(res) == 0) {
        fail(r->req, 409, "password_changed",
             "Votre mot de passe vient d'être changé par ailleurs : recommencez avec le nouveau.");
    } else {
        long long ended = gw_db_int(res, 0, 0);
        gw_info("admin", "%s changed their own password (%lld other sessions ended)", r->login,
                ended);
        gw_http_json(r->req, 200, json_pack("{s:I}", "sessions_ended", (json_int_t)ended));
    }
    areq_free(r);
}

static void *mepw_thread(void *arg)
{
    struct mepw *m = arg;
    struct argon *g = &m->job;
    g->ok = crypto_pwhash_str_verify(g->hash, g->pw, strlen(g->pw)) == 0;
    if (g->ok)
        m->made = argon_hash(m->next_hash, m->next);
    event_active(g->done, EV_READ, 0);
    return NULL;
}

static void mepw_checked(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct mepw *m = arg;
    struct areq *r = m->r;
    struct gw_admin *a = r->a;
    argon_join(a, &m->job);
    if (!m->job.ok) {
        a->logins_failed++;
        rate_fail(a, r->login, m->addr);
        gw_info("admin", "wrong current password for '%s' from %s (own password change)",
                r->login, m->addr);
        areq_fail(r, 403, "bad_current_password", "Le mot de passe actuel est incorrect.");
        mepw_free(m);
        return;
    }
    if (!m->made) { /* out of memory for argon2id's 64 MiB */
        fail_busy(r->req);
        areq_free(r);
        mepw_free(m);
        return;
    }
    rate_clear_login(a, r->login);
    struct numtext centre = as_text(r->centre_id), staff = as_text(r->staff_id);
    const char *p[6] = {centre.s, staff.s, m->next_hash, m->job.hash, r->token_hash, r->login};
    int rc = gw_db_query(
        a->db,
        "WITH u AS (UPDATE staff SET password_hash = $3"
        "   WHERE id = $2::bigint AND centre_id = $1::bigint AND password_hash = $4"
        "   RETURNING id),"
        " s AS (UPDATE admin_sessions SET revoked_at = now()"
        "   WHERE staff_id IN (SELECT id FROM u) AND token_hash <> $5 AND revoked_at IS NULL"
        "   RETURNING 1)"
        " SELECT (SELECT count(*) FROM s), gw_audit($1::bigint, $2::bigint, $6,"
        "   'staff.password_own', 'staff:' || u.id,"
        "   jsonb_build_object('sessions_ended', (SELECT count(*) FROM s)))"
        " FROM u",
        6, p, mepw_saved, r);
    mepw_free(m);
    if (rc != GW_OK)
        areq_fail_db(r);
}

static void mepw_looked_up(void *arg, PGresult *res, const char *err)
{
    struct mepw *m = arg;
    struct areq *r = m->r;
    if (err) {
        areq_fail_db(r);
        mepw_free(m);
        return;
    }
    /* no hash (cannot happen with a session): the dummy one, which nothing matches */
    int known = PQntuples(res) == 1 && !PQgetisnull(res, 0, 0);
    snprintf(m->job.hash, sizeof m->job.hash, "%s", known ? PQgetvalue(res, 0, 0) : DUMMY_HASH);
    if (argon_start(r->a, r->req, &m->job, mepw_thread, mepw_checked, m) < 0) {
        areq_free(r);
        mepw_free(m);
    }
}

static void handle_me_pw(struct areq *r)
{
    struct gw_admin *a = r->a;
    struct mepw *m = calloc(1, sizeof *m);
    if (!m)
        abort();
    m->r = r;
    m->job.pw = take_secret(r->json, "current");
    m->next = take_secret(r->json, "new");
    if (r->body)
        sodium_memzero(r->body, r->body_len);
    const char *cur = m->job.pw, *next = m->next, *weak = NULL;
    if (!cur || !*cur || !next || strlen(cur) > 256) {
        areq_fail(r, 400, "bad_request", "Indiquez votre mot de passe actuel et le nouveau.");
        mepw_free(m);
        return;
    }
    weak = password_refusal(next);
    if (!weak && !strcmp(cur, next))
        weak = "Le nouveau mot de passe doit être différent de l'actuel.";
    if (weak) {
        areq_fail(r, 422, "weak_password", weak);
        mepw_free(m);
        return;
    }
    client_address(r->req, m->addr, sizeof m->addr);
    if (rate_limited(a, r->login, m->addr)) {
        a->logins_limited++;
        evhttp_add_header(evhttp_request_get_output_headers(r->req), "Retry-After", "900");
        areq_fail(r, 429, "rate_limited",
                  "Trop d'essais. Attendez un quart d'heure ou demandez à un administrateur.");
        mepw_free(m);
        return;
    }
    if (too_busy(a, r->req)) {
        areq_free(r);
        mepw_free(m);
        return;
    }
    struct numtext centre = as_text(r->centre_id), staff = as_text(r->staff_id);
    const char *p[2] = {centre.s, staff.s};
    if (gw_db_query(a->db,
                    "SELECT password_hash FROM staff WHERE id = $2::bigint AND centre_id = $1::bigint",
                    2, p, mepw_looked_up, m) != GW_OK) {
        areq_fail_db(r);
        mepw_free(m);
    }
}

/* POST residents/import {"csv": "…", "confirm": bool}: parsed here (gw_admin_csv_parse),
 * checked against the database and, when confirmed and without errors, saved in one
 * transaction (gw_admin_import). */
static void handle_import(struct areq *r)
{
    const char *csv = json_string_value(json_object_get(r->json, "csv"));
    if (!csv) {
        areq_fail(r, 422, "invalid_file", "Choisissez un fichier CSV.");
        return;
    }
    json_t *rows = NULL;
    const char *why = NULL;
    if (gw_admin_csv_parse(csv, strlen(csv), r->a->cfg->default_region, &rows, &why) < 0) {
        areq_fail(r, 422, "invalid_file", why);
        return;
    }
    struct numtext centre = as_text(r->centre_id), staff = as_text(r->staff_id);
    char *rj = json_dumps(rows, JSON_COMPACT);
    json_decref(rows);
    const char *p[5] = {centre.s, staff.s, r->login, rj,
                        json_is_true(json_object_get(r->json, "confirm")) ? "t" : "f"};
    int rc = gw_db_query(r->a->db,
                         "SELECT gw_admin_import($1::bigint, $2::bigint, $3, $4::jsonb, $5::boolean)",
                         5, p, more_done, r);
    free(rj);
    if (rc != GW_OK)
        areq_fail_db(r);
}

/* PATCH reminders/{id}: the same body and checks as POST reminders (the resident stays the
 * reminder's own); the scheduler then computes it again. */
static void handle_reminder_update(struct areq *r)
{
    if (!r->json)
        r->json = json_object();
    if (!json_is_integer(json_object_get(r->json, "resident_id")))
        json_object_set_new(r->json, "resident_id", json_integer(0));
    reminder_write(r, r->id,
                   "SELECT gw_admin_reminder_update($1::bigint, $13::bigint, $3, $2::bigint, $4,"
                   " $5, $6::timestamp, $7, $8::timestamp, $9, $10::jsonb, $11::boolean,"
                   " $12::boolean)",
                   more_done);
}

/* ---------------------------------------------------------------- session and dispatch */

static void logout_done(void *arg, PGresult *res, const char *err)
{
    (void)res;
    struct areq *r = arg;
    if (err) {
        fail_db(r->req);
    } else {
        audit_id(r->a, r, strstr(r->path, "all") ? "logout.all" : "logout", "staff",
                 r->staff_id, NULL);
        set_cookie(r->a, r->req, "", 0);
        gw_http_reply(r->req, 204, "application/json", "", 0);
    }
    areq_free(r);
}

/* POST logout ends this session; POST logout-all every session of this staff member. */
static void handle_logout(struct areq *r, int all)
{
    struct numtext staff = as_text(r->staff_id);
    const char *by_token[1] = {r->token_hash}, *by_staff[1] = {staff.s};
    int rc = all ? gw_db_query(r->a->db,
                               "UPDATE admin_sessions SET revoked_at = now()"
                               " WHERE staff_id = $1::bigint AND revoked_at IS NULL",
                               1, by_staff, logout_done, r)
                 : gw_db_query(r->a->db,
                               "UPDATE admin_sessions SET revoked_at = now() WHERE token_hash = $1",
                               1, by_token, logout_done, r);
    if (rc != GW_OK)
        areq_fail_db(r);
}

static void dispatch(struct areq *r)
{
    struct gw_admin *a = r->a;
    if (!(r->ep->roles & role_bit(r->role))) {
        a->forbidden++;
        areq_fail(r, 403, "forbidden", "Votre rôle ne permet pas cette action.");
        return;
    }
    switch (r->ep->handler) {
    case GW_ADMIN_H_ME:
        gw_http_json(r->req, 200, me_json(r));
        areq_free(r);
        return;
    case GW_ADMIN_H_LOGOUT: handle_logout(r, 0); return;
    case GW_ADMIN_H_LOGOUT_ALL: handle_logout(r, 1); return;
    case GW_ADMIN_H_RES_CREATE: handle_resident_create(r); return;
    case GW_ADMIN_H_PREVIEW: handle_preview(r); return;
    case GW_ADMIN_H_REM_CREATE: handle_reminder_create(r); return;
    case GW_ADMIN_H_MSG_SEND: handle_send(r, 0); return;
    case GW_ADMIN_H_INBOX_REPLY: handle_send(r, 1); return;
    case GW_ADMIN_H_LOAN: handle_loan(r); return;
    case GW_ADMIN_H_MORE:
    case GW_ADMIN_H_ROUTES: run_more(r); return;
    case GW_ADMIN_H_MORE_SMS: handle_more_sms(r); return;
    case GW_ADMIN_H_ROUTES_SET: handle_routes_set(r); return;
    case GW_ADMIN_H_SECRET: handle_secret(r); return;
    case GW_ADMIN_H_STAFF_PW: handle_staff_pw(r); return;
    case GW_ADMIN_H_ME_PW: handle_me_pw(r); return;
    case GW_ADMIN_H_IMPORT: handle_import(r); return;
    case GW_ADMIN_H_REM_UPDATE: handle_reminder_update(r); return;
    default: run_generic(r); return;
    }
}

static void session_checked(void *arg, PGresult *res, const char *err)
{
    struct areq *r = arg;
    struct gw_admin *a = r->a;
    if (err) {
        areq_fail_db(r);
        return;
    }
    if (PQntuples(res) != 1) {
        a->unauthenticated++;
        set_cookie(a, r->req, "", 0);
        areq_fail(r, 401, "unauthenticated", "Votre session a expiré : reconnectez-vous.");
        return;
    }
    r->staff_id = gw_db_int(res, 0, 0);
    r->centre_id = gw_db_int(res, 0, 1);
    snprintf(r->login, sizeof r->login, "%s", PQgetvalue(res, 0, 2));
    snprintf(r->role, sizeof r->role, "%s", PQgetvalue(res, 0, 3));
    snprintf(r->csrf, sizeof r->csrf, "%s", PQgetvalue(res, 0, 4));
    snprintf(r->name, sizeof r->name, "%s", PQgetvalue(res, 0, 5));
    snprintf(r->centre_name, sizeof r->centre_name, "%s", PQgetvalue(res, 0, 6));
    snprintf(r->tz, sizeof r->tz, "%s", PQgetvalue(res, 0, 7));
    snprintf(r->sms_number, sizeof r->sms_number, "%s", PQgetvalue(res, 0, 8));
    snprintf(r->ussd_code, sizeof r->ussd_code, "%s", PQgetvalue(res, 0, 9));
    if (strcmp(r->method, "GET")) {
        const char *t = gw_http_header(r->req, "X-CSRF-Token");
        size_t n = strlen(r->csrf);
        if (!t || strlen(t) != n || sodium_memcmp(t, r->csrf, n) != 0) {
            a->csrf_refused++;
            areq_fail(r, 403, "csrf", "Requête refusée (jeton de sécurité manquant) : rechargez la page.");
            return;
        }
    }
    if (!r->ep) {
        areq_fail(r, 404, "not_found", "Cette adresse n'existe pas.");
        return;
    }
    dispatch(r);
}

static void query_params(struct evhttp_request *req, json_t *out)
{
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    gw_admin_query_parse(uri ? evhttp_uri_get_query(uri) : NULL, out);
}

static void on_api(struct evhttp_request *req, void *arg, const char *tail)
{
    struct gw_admin *a = arg;
    a->requests++;
    evhttp_add_header(evhttp_request_get_output_headers(req), "Cache-Control", "no-store");
    struct areq *r = calloc(1, sizeof *r);
    if (!r)
        abort();
    r->a = a;
    r->req = req;
    snprintf(r->method, sizeof r->method, "%s", gw_http_method_name(req));
    snprintf(r->path, sizeof r->path, "%s", tail);
    r->query = json_object();
    query_params(req, r->query);
    if (gw_http_body(req, 64 * 1024, &r->body, &r->body_len) != GW_OK) {
        areq_fail(r, 413, "body_too_large", "Requête trop grosse.");
        return;
    }
    if (r->body_len) {
        json_error_t je;
        r->json = json_loadb(r->body, r->body_len, 0, &je);
        if (!json_is_object(r->json)) {
            areq_fail(r, 400, "malformed_json", "Requête illisible (JSON attendu).");
            return;
        }
    }
    if (!strcmp(r->method, "POST") && !strcmp(r->path, "login")) {
        handle_login(a, req, r->json);
        areq_free(r);
        return;
    }
    r->ep = gw_admin_endpoint_find(r->method, r->path, &r->id);
    char token[80];
    if (cookie_token(req, token, sizeof token) != 0) {
        a->unauthenticated++;
        areq_fail(r, 401, "unauthenticated", "Connectez-vous.");
        return;
    }
    hash_token(token, r->token_hash);
    char idle[12];
    snprintf(idle, sizeof idle, "%d", a->cfg->admin_idle_minutes);
    const char *p[2] = {r->token_hash, idle};
    if (gw_db_query(a->db,
                    "UPDATE admin_sessions s SET last_seen_at = now() FROM staff st, centres c"
                    " WHERE s.token_hash = $1 AND s.revoked_at IS NULL AND s.expires_at > now()"
                    "   AND s.last_seen_at > now() - make_interval(mins => $2::int)"
                    "   AND st.id = s.staff_id AND st.disabled_at IS NULL AND c.id = st.centre_id"
                    " RETURNING st.id, st.centre_id, st.login, st.role, s.csrf, st.name, c.name,"
                    "   c.timezone, coalesce(c.settings ->> 'sms_number', ''),"
                    "   coalesce(c.settings ->> 'ussd_code', '')",
                    2, p, session_checked, r) != GW_OK)
        areq_fail_db(r);
}

/* ---------------------------------------------------------------- life cycle */

struct gw_admin *gw_admin_new(struct event_base *base, struct gw_db *db, struct gw_outbox *o,
                              struct gw_flows *flows, const struct gw_config *cfg,
                              struct gw_http *http)
{
    struct gw_admin *a = calloc(1, sizeof *a);
    if (!a)
        abort();
    a->base = base;
    a->db = db;
    a->o = o;
    a->flows = flows;
    a->cfg = cfg;
    a->www = strdup(cfg->admin_www_dir ? cfg->admin_www_dir : PASSERELLE_ADMIN_WWW);
    if (!a->www)
        abort();
    int all = EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PATCH | EVHTTP_REQ_DELETE |
              EVHTTP_REQ_PUT;
    gw_http_route(http, all, API_PREFIX, GW_HTTP_PREFIX, on_api, a);
    gw_http_route(http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD, "/admin/", GW_HTTP_PREFIX, on_static, a);
    gw_http_route(http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD, "/admin", GW_HTTP_EXACT, on_admin_root,
                  a);
    return a;
}

void gw_admin_free(struct gw_admin *a)
{
    if (!a)
        return;
    struct rate *e, *tmp;
    HASH_ITER(hh, a->rates, e, tmp)
    {
        HASH_DEL(a->rates, e);
        free(e);
    }
    free(a->www);
    free(a);
}

void gw_admin_metrics(struct gw_admin *a, struct evbuffer *out)
{
    gw_metric_head(out, "passerelle_admin_logins_total", "counter", "Admin logins by result.");
    evbuffer_add_printf(out,
                        "passerelle_admin_logins_total{result=\"ok\"} %llu\n"
                        "passerelle_admin_logins_total{result=\"failed\"} %llu\n"
                        "passerelle_admin_logins_total{result=\"rate_limited\"} %llu\n",
                        (unsigned long long)a->logins_ok, (unsigned long long)a->logins_failed,
                        (unsigned long long)a->logins_limited);
    gw_metric_head(out, "passerelle_admin_requests_total", "counter",
                   "Admin API requests, and those refused.");
    evbuffer_add_printf(out,
                        "passerelle_admin_requests_total{result=\"all\"} %llu\n"
                        "passerelle_admin_requests_total{result=\"unauthenticated\"} %llu\n"
                        "passerelle_admin_requests_total{result=\"csrf\"} %llu\n"
                        "passerelle_admin_requests_total{result=\"forbidden\"} %llu\n",
                        (unsigned long long)a->requests, (unsigned long long)a->unauthenticated,
                        (unsigned long long)a->csrf_refused, (unsigned long long)a->forbidden);
}
