/*
 * test_webhooks — partner webhooks (POST /api/v1/alerts, POST /api/v1/jobs,
 * DELETE /api/v1/jobs/{external_id}) of a real gatewayd against a real PostgreSQL, as a partner
 * and the centre see them: requests signed here with libsodium (HMAC-SHA256 of
 * "<timestamp>.<body>" keyed with the secret `gatewayctl partner create` printed), every
 * refusal with its status and error.code, and what each accepted request left in the database
 * (alerts, one pending delivery per consenting subscriber, job offers and grouped job alerts,
 * idempotency records).
 *
 * One daemon ("main", database t_webhooks_<pid>) with the centre "Les Tilleuls" on the `sim`
 * route, seeded with `gatewayctl centre seed` (alert topics sortie and atelier, job categories
 * cuisine and menage) plus the alert topics "grande" (10,000 subscribers) and "fete" (deleted
 * after a partner got it). The scheduler is disabled ([scheduler] enabled = no) so that the
 * deliveries the requests create stay pending where the test looks at them. Partners:
 *   mairie  sortie, grande, jobs, 1000 requests/min (the main one)
 *   club    atelier only, no jobs
 *   bavard  sortie, 5 requests/min
 *   ancien  sortie (revoked during the run)
 *   fete    fete (a topic the centre no longer has)
 * The tests run in order and share that state; the last one stops the daemon.
 */
#include "harness.h"

#include <curl/curl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define CENTRE "Les Tilleuls"

struct partner {
    char key_id[64];
    char secret[128];
};

static struct {
    char *conninfo;
    char *config;
    struct h_daemon *d;
    long long centre;
    struct partner mairie, club, bavard, ancien, fete;
    char *unauthorized_body; /* the first 401 body: every 401 must be exactly the same */
    long long job1, job2;
} G;

/* ------------------------------------------------------------------ signed requests */

enum { OMIT_KEY = 1, OMIT_TS = 2, OMIT_SIG = 4 };

struct wreq {
    const char *method; /* NULL: POST */
    const char *path;
    const struct partner *p;
    const char *body;        /* NULL: "" */
    const char *signed_body; /* what the signature covers; NULL: body */
    const char *secret;      /* NULL: p->secret */
    const char *key_id;      /* NULL: p->key_id */
    long skew_s;             /* added to the timestamp */
    const char *idem;        /* Idempotency-Key, NULL: none */
    unsigned omit;
    const char *signature; /* the whole header value instead of the right one */
};

struct wresp {
    struct h_resp *r;
    struct h_buf headers;
};

static void wresp_free(struct wresp *w)
{
    if (!w)
        return;
    h_resp_free(w->r);
    free(w->headers.data);
    free(w);
}

/* The value of response header name, or NULL (malloc'ed). */
static char *resp_header(const struct wresp *w, const char *name)
{
    size_t n = strlen(name);
    for (const char *l = w->headers.data; l && *l;) {
        const char *end = strchr(l, '\n');
        if (!strncasecmp(l, name, n) && l[n] == ':') {
            const char *v = l + n + 1;
            while (*v == ' ')
                v++;
            size_t vl = (size_t)((end ? end : l + strlen(l)) - v);
            while (vl && (v[vl - 1] == '\r' || v[vl - 1] == ' '))
                vl--;
            return h_printf("%.*s", (int)vl, v);
        }
        l = end ? end + 1 : l + strlen(l);
    }
    return NULL;
}

static void sign(const char *secret, const char *ts, const char *body, char hex[65])
{
    uint8_t mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, (const unsigned char *)secret, strlen(secret));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)ts, strlen(ts));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)".", 1);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)body, strlen(body));
    crypto_auth_hmacsha256_final(&st, mac);
    sodium_bin2hex(hex, 65, mac, sizeof mac);
}

/* One request in progress: a prepared easy handle and what it collects. */
struct pending {
    CURL *c;
    struct curl_slist *hl;
    struct h_buf body, headers;
};

static void pending_start(struct pending *p, const struct wreq *q)
{
    memset(p, 0, sizeof *p);
    const char *body = q->body ? q->body : "";
    char ts[32], sig[65], line[512];
    snprintf(ts, sizeof ts, "%lld", (long long)time(NULL) + q->skew_s);
    if (q->p && !(q->omit & OMIT_KEY)) {
        snprintf(line, sizeof line, "X-Passerelle-Key: %s", q->key_id ? q->key_id : q->p->key_id);
        p->hl = curl_slist_append(p->hl, line);
    }
    if (q->p && !(q->omit & OMIT_TS)) {
        snprintf(line, sizeof line, "X-Passerelle-Timestamp: %s", ts);
        p->hl = curl_slist_append(p->hl, line);
    }
    if (q->p && !(q->omit & OMIT_SIG)) {
        sign(q->secret ? q->secret : q->p->secret, ts, q->signed_body ? q->signed_body : body, sig);
        if (q->signature)
            snprintf(line, sizeof line, "X-Passerelle-Signature: %s", q->signature);
        else
            snprintf(line, sizeof line, "X-Passerelle-Signature: v1=%s", sig);
        p->hl = curl_slist_append(p->hl, line);
    }
    if (q->idem) {
        /* "Name;" is how curl sends a header with an empty value */
        if (*q->idem)
            snprintf(line, sizeof line, "Idempotency-Key: %s", q->idem);
        else
            snprintf(line, sizeof line, "Idempotency-Key;");
        p->hl = curl_slist_append(p->hl, line);
    }
    p->hl = curl_slist_append(p->hl, "Content-Type: application/json");
    p->hl = curl_slist_append(p->hl, "Expect:");
    p->c = curl_easy_init();
    H_ASSERT(p->c, "curl_easy_init failed");
    char *url = h_printf("%s%s", G.d->url, q->path);
    curl_easy_setopt(p->c, CURLOPT_URL, url);
    free(url);
    const char *method = q->method ? q->method : "POST";
    if (!strcmp(method, "POST"))
        curl_easy_setopt(p->c, CURLOPT_POST, 1L);
    else
        curl_easy_setopt(p->c, CURLOPT_CUSTOMREQUEST, method);
    if (!strcmp(method, "POST") || *body) {
        curl_easy_setopt(p->c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(p->c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
    }
    curl_easy_setopt(p->c, CURLOPT_HTTPHEADER, p->hl);
    curl_easy_setopt(p->c, CURLOPT_WRITEFUNCTION, h_curl_collect);
    curl_easy_setopt(p->c, CURLOPT_WRITEDATA, &p->body);
    curl_easy_setopt(p->c, CURLOPT_HEADERFUNCTION, h_curl_collect);
    curl_easy_setopt(p->c, CURLOPT_HEADERDATA, &p->headers);
    curl_easy_setopt(p->c, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(p->c, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(p->c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(p->c, CURLOPT_FORBID_REUSE, 1L);
    curl_easy_setopt(p->c, CURLOPT_PROXY, "");
}

static struct wresp *pending_finish(struct pending *p, CURLcode rc)
{
    struct wresp *w = calloc(1, sizeof *w);
    struct h_resp *r = calloc(1, sizeof *r);
    if (!w || !r)
        abort();
    w->r = r;
    w->headers = p->headers;
    if (rc != CURLE_OK)
        snprintf(r->err, sizeof r->err, "%s", curl_easy_strerror(rc));
    else
        curl_easy_getinfo(p->c, CURLINFO_RESPONSE_CODE, &r->status);
    r->body = p->body.data ? p->body.data : h_printf("%s", "");
    r->len = p->body.data ? p->body.len : 0;
    r->json = json_loadb(r->body, r->len, 0, NULL);
    curl_slist_free_all(p->hl);
    curl_easy_cleanup(p->c);
    return w;
}

static struct wresp *wsend(const struct wreq *q)
{
    struct pending p;
    pending_start(&p, q);
    CURLcode rc = curl_easy_perform(p.c);
    return pending_finish(&p, rc);
}

/* Sends n copies of q at once (curl multi). */
static void wsend_parallel(const struct wreq *q, int n, struct wresp **out)
{
    struct pending p[16];
    H_ASSERT(n <= 16, "at most 16 parallel requests");
    CURLM *m = curl_multi_init();
    for (int i = 0; i < n; i++) {
        pending_start(&p[i], q);
        curl_multi_add_handle(m, p[i].c);
    }
    int running = n;
    while (running) {
        curl_multi_perform(m, &running);
        if (running)
            curl_multi_poll(m, NULL, 0, 1000, NULL);
    }
    CURLMsg *msg;
    int left;
    CURLcode rcs[16];
    for (int i = 0; i < n; i++)
        rcs[i] = CURLE_RECV_ERROR;
    while ((msg = curl_multi_info_read(m, &left)) != NULL) {
        for (int i = 0; i < n; i++)
            if (msg->msg == CURLMSG_DONE && msg->easy_handle == p[i].c)
                rcs[i] = msg->data.result;
    }
    for (int i = 0; i < n; i++) {
        curl_multi_remove_handle(m, p[i].c);
        out[i] = pending_finish(&p[i], rcs[i]);
    }
    curl_multi_cleanup(m);
}

/* Asserts status (and error.code for an error); returns the answer. */
static struct wresp *expect(const struct wreq *q, long status, const char *code, const char *what)
{
    struct wresp *w = wsend(q);
    if (code)
        h_expect_error(w->r, status, code, what);
    else
        H_ASSERT(w->r->status == status, "%s: expected HTTP %ld, got %ld%s: %s", what, status,
                 w->r->status, w->r->err, w->r->body);
    return w;
}

static void expect_free(const struct wreq *q, long status, const char *code, const char *what)
{
    wresp_free(expect(q, status, code, what));
}

/* 401 with exactly the same body as every other 401. */
static void expect_401(const struct wreq *q, const char *what)
{
    struct wresp *w = expect(q, 401, "unauthorized", what);
    if (!G.unauthorized_body)
        G.unauthorized_body = h_printf("%s", w->r->body);
    H_ASSERT(!strcmp(w->r->body, G.unauthorized_body),
             "%s: every 401 must be the same, got '%s' (first one: '%s')", what, w->r->body,
             G.unauthorized_body);
    wresp_free(w);
}

static char *alert_body(const char *topic, const char *text)
{
    json_t *o = json_pack("{s:s,s:s}", "topic", topic, "text", text);
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

static char *job_body(const char *ext, const char *title, const char *category)
{
    char when[32];
    time_t t = time(NULL) + 30 * 86400;
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
    json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "external_id", ext, "title", title, "text",
                          "CDD 3 mois, 24 h/semaine, débutant accepté.", "category", category,
                          "contact", "04 78 11 22 33", "expires_at", when);
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

static long long count(const char *sql_fmt, long long arg)
{
    return h_sql_int(G.conninfo, sql_fmt, arg);
}

/* ------------------------------------------------------------------ set-up */

/* gatewayctl partner create CENTRE name --topics topics [a1 [a2 [a3]]] (NULL ends the list). */
static void partner_create(struct partner *p, const char *name, const char *topics, const char *a1,
                           const char *a2, const char *a3)
{
    char *out = NULL;
    int rc = h_ctl(G.config, &out, "partner", "create", CENTRE, name, "--topics", topics, a1, a2,
                   a3, NULL);
    H_ASSERT(rc == 0, "gatewayctl partner create %s failed (exit %d): %s", name, rc,
             h_ctl_stderr());
    H_ASSERT(sscanf(out, "key_id %63s secret %127s", p->key_id, p->secret) == 2,
             "gatewayctl partner create printed '%s', expected 'key_id …' and 'secret …'", out);
    H_ASSERT(!strncmp(p->key_id, "pk_", 3) && strlen(p->key_id) == 19,
             "key id '%s': expected pk_ and 16 hex digits", p->key_id);
    H_ASSERT(strlen(p->secret) == 64, "secret: expected 64 hex digits, got '%s'", p->secret);
    free(out);
}

/* n consenting subscribers of topic (kind, name) with phones prefix+i, plus one without
 * consent and one opted out (who must get nothing). */
static void add_subscribers(const char *kind, const char *name, const char *prefix, int n)
{
    h_sql_exec(G.conninfo,
               "WITH c AS (INSERT INTO contacts (centre_id, phone, consent_at, opted_out_at)"
               "  SELECT %lld, '%s' || lpad(g::text, 3, '0'),"
               "         CASE WHEN g <> %d + 1 THEN now() END,"
               "         CASE WHEN g = %d + 2 THEN now() END"
               "    FROM generate_series(1, %d + 2) g RETURNING id)"
               " INSERT INTO subscriptions (topic_id, contact_id)"
               " SELECT t.id, c.id FROM c, topics t"
               "  WHERE t.centre_id = %lld AND t.kind = '%s' AND t.name = '%s'",
               G.centre, prefix, n, n, n, G.centre, kind, name);
}

static int group_setup(void **state)
{
    (void)state;
    G.conninfo = h_db_create(h_test_pg(), "webhooks", NULL);
    int port = h_free_port();
    /* outbox_add ends the [outbox] section: the scheduler is off on this node */
    struct h_config c = {
        .port = port, .conninfo = G.conninfo, .outbox_add = "[scheduler]\nenabled = no\n"};
    G.config = h_config_write(&c, "main.ini");
    G.centre = h_centre_create(G.config, CENTRE);
    H_ASSERT(h_ctl(G.config, NULL, "centre", "seed", CENTRE, NULL) == 0,
             "gatewayctl centre seed failed: %s", h_ctl_stderr());
    h_sql_exec(G.conninfo,
               "INSERT INTO topics (centre_id, kind, name, label) VALUES"
               " (%lld, 'alert', 'grande', 'Tout le quartier'), (%lld, 'alert', 'fete', 'Fête')",
               G.centre, G.centre);
    partner_create(&G.mairie, "Mairie", "sortie,Grande", "--jobs", "--rate", "1000");
    partner_create(&G.club, "Club des aînés", "atelier", NULL, NULL, NULL);
    partner_create(&G.bavard, "Bavard", "sortie", "--rate", "5", NULL);
    partner_create(&G.ancien, "Ancien partenaire", "sortie", NULL, NULL, NULL);
    partner_create(&G.fete, "Comité des fêtes", "fete", NULL, NULL, NULL);
    /* the centre drops the topic after the partner got it */
    h_sql_exec(G.conninfo, "DELETE FROM topics WHERE centre_id = %lld AND name = 'fete'", G.centre);
    add_subscribers("alert", "sortie", "+33610000", 5);
    add_subscribers("alert", "atelier", "+33611000", 2);
    add_subscribers("job", "cuisine", "+33612000", 3);
    G.d = h_daemon_start("main", G.config, port);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    h_daemon_free(G.d); /* kills it if a test failed before the clean stop */
    G.d = NULL;
    return 0;
}

/* ------------------------------------------------------------------ 1. a signed alert */

static void test_alert_accepted(void **state)
{
    (void)state;
    const char *text = "Sortie au parc samedi à 14 h, départ devant le centre.";
    char *body = alert_body("sortie", text);
    struct wreq q = {.path = "/api/v1/alerts", .p = &G.mairie, .body = body};
    struct wresp *w = expect(&q, 202, NULL, "a signed alert");
    long long id = h_jint(w->r->json, "id");
    H_ASSERT(id > 0 && h_jint(w->r->json, "recipients") == 5,
             "expected {id, recipients: 5} (5 consenting subscribers of sortie), got %s",
             w->r->body);
    wresp_free(w);
    /* one pending delivery for each consenting subscriber who did not opt out: not the one
     * without consent (…006), not the one who opted out (…007), not the other topics' */
    char *rows = h_sql_rows(G.conninfo,
                            "SELECT ct.phone, d.kind, d.status, d.body = a.body, d.urgent"
                            " FROM deliveries d JOIN contacts ct ON ct.id = d.contact_id"
                            " JOIN alerts a ON a.id = d.alert_id"
                            " WHERE d.alert_id = %lld ORDER BY ct.phone",
                            id);
    const char *want = "+33610000001|alerts|pending|t|f; +33610000002|alerts|pending|t|f; "
                       "+33610000003|alerts|pending|t|f; +33610000004|alerts|pending|t|f; "
                       "+33610000005|alerts|pending|t|f";
    H_ASSERT(!strcmp(rows, want), "deliveries of alert %lld:\n  got  %s\n  want %s", id, rows,
             want);
    free(rows);
    char *a = h_sql_rows(G.conninfo,
                         "SELECT a.centre_id, t.name, a.body, a.created_by, a.recipients, a.urgent,"
                         " a.expires_at IS NULL FROM alerts a JOIN topics t ON t.id = a.topic_id"
                         " WHERE a.id = %lld",
                         id);
    char *want_a = h_printf("%lld|sortie|%s|partner:Mairie|5|f|t", G.centre, text);
    H_ASSERT(!strcmp(a, want_a), "alert %lld:\n  got  %s\n  want %s", id, a, want_a);
    free(a);
    free(want_a);
    free(body);

    /* urgent, with an expiry */
    char when[32];
    time_t t = time(NULL) + 3 * 3600;
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
    json_t *o =
        json_pack("{s:s,s:s,s:s,s:b}", "topic", "sortie", "text",
                  "La sortie de samedi est annulée (pluie).", "expires_at", when, "urgent", 1);
    body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    q.body = body;
    w = expect(&q, 202, NULL, "an urgent alert with expires_at");
    id = h_jint(w->r->json, "id");
    wresp_free(w);
    long long n =
        h_sql_int(G.conninfo,
                  "SELECT count(*) FROM deliveries d JOIN alerts a ON a.id = d.alert_id"
                  " WHERE a.id = %lld AND a.urgent AND d.urgent"
                  "   AND a.expires_at = '%s'::timestamptz AND d.expires_at = a.expires_at",
                  id, when);
    H_ASSERT(n == 5,
             "urgent alert %lld with expires_at %s: expected 5 urgent deliveries expiring "
             "then, got %lld",
             id, when, n);
    free(body);
}

/* ------------------------------------------------------------------ 2. bad signatures */

static void test_bad_signatures_401(void **state)
{
    (void)state;
    long long alerts_before = count("SELECT count(*) FROM alerts WHERE centre_id = %lld", G.centre);
    char *body = alert_body("sortie", "Ceci ne doit jamais partir.");
    char *other = alert_body("sortie", "Ceci non plus.");
    const char *zeros = "0000000000000000000000000000000000000000000000000000000000000000";
    struct {
        const char *what;
        struct wreq q;
    } cases[] = {
        {"wrong secret", {.secret = zeros}},
        {"another partner's secret", {.secret = G.club.secret}},
        {"timestamp 6 minutes old", {.skew_s = -360}},
        {"timestamp 6 minutes ahead", {.skew_s = 360}},
        {"signature of another body", {.signed_body = other}},
        {"unknown key id", {.key_id = "pk_0123456789abcdef"}},
        {"malformed key id", {.key_id = "pk_<script>"}},
        {"no X-Passerelle-Key", {.omit = OMIT_KEY}},
        {"no X-Passerelle-Timestamp", {.omit = OMIT_TS}},
        {"no X-Passerelle-Signature", {.omit = OMIT_SIG}},
        {"signature without v1=", {.signature = "sha256=00"}},
        {"signature not hex", {.signature = "v1=zzzz"}},
        {"signature too short", {.signature = "v1=00ff"}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct wreq q = cases[i].q;
        q.path = "/api/v1/alerts";
        q.p = &G.mairie;
        q.body = body;
        expect_401(&q, cases[i].what);
    }
    struct wreq none = {.path = "/api/v1/alerts", .body = body};
    expect_401(&none, "no signature headers at all");
    struct wreq job = {.path = "/api/v1/jobs", .p = &G.mairie, .body = body, .skew_s = -3600};
    expect_401(&job, "POST /api/v1/jobs, timestamp an hour old");
    struct wreq del = {
        .method = "DELETE", .path = "/api/v1/jobs/x", .p = &G.mairie, .secret = zeros};
    expect_401(&del, "DELETE /api/v1/jobs/x, wrong secret");
    /* just inside the window, either way: accepted */
    struct wreq edge = {.path = "/api/v1/alerts", .p = &G.mairie, .body = other, .skew_s = -240};
    expect_free(&edge, 202, NULL, "timestamp 4 minutes old");
    edge.skew_s = 240;
    expect_free(&edge, 202, NULL, "timestamp 4 minutes ahead");
    long long alerts_after = count("SELECT count(*) FROM alerts WHERE centre_id = %lld", G.centre);
    H_ASSERT(alerts_after == alerts_before + 2,
             "refused requests must not create alerts: %lld before, %lld after (2 accepted)",
             alerts_before, alerts_after);
    free(body);
    free(other);
}

/* ------------------------------------------------------------------ 3. Idempotency-Key */

static void test_idempotency(void **state)
{
    (void)state;
    const char *text = "Atelier couture reporté à mardi 10 h.";
    char *body = alert_body("sortie", text);
    struct wreq q = {
        .path = "/api/v1/alerts", .p = &G.mairie, .body = body, .idem = "evt-2026-0042"};
    struct wresp *first = expect(&q, 202, NULL, "first request with Idempotency-Key");
    long long id = h_jint(first->r->json, "id");
    char *replayed = resp_header(first, "Idempotent-Replay");
    H_ASSERT(!replayed, "the first answer is not a replay");
    /* the retry is signed again (another timestamp): same answer, no second alert */
    h_sleep_ms(1100);
    struct wresp *again = expect(&q, 202, NULL, "the same request again (retry)");
    H_ASSERT(!strcmp(first->r->body, again->r->body),
             "a replay must answer exactly the first answer:\n  first %s\n  again %s",
             first->r->body, again->r->body);
    replayed = resp_header(again, "Idempotent-Replay");
    H_ASSERT(replayed && !strcmp(replayed, "true"), "a replay says Idempotent-Replay: true");
    free(replayed);
    wresp_free(again);
    H_ASSERT(h_sql_int(G.conninfo, "SELECT count(*) FROM alerts WHERE body = '%s'", text) == 1,
             "one alert only for one Idempotency-Key");
    H_ASSERT(count("SELECT count(*) FROM deliveries WHERE alert_id = %lld", id) == 5,
             "the replay must not add deliveries");
    char *rec = h_sql_rows(G.conninfo,
                           "SELECT r.status, r.response::jsonb->>'id' FROM partner_requests r"
                           " JOIN partners p ON p.id = r.partner_id"
                           " WHERE p.key_id = '%s' AND r.idem_key = 'evt-2026-0042'",
                           G.mairie.key_id);
    char *want = h_printf("202|%lld", id);
    H_ASSERT(!strcmp(rec, want), "partner_requests: got %s, want %s", rec, want);
    free(rec);
    free(want);

    /* the same key with another body */
    long long before = count("SELECT count(*) FROM alerts WHERE centre_id = %lld", G.centre);
    char *body2 = alert_body("sortie", "Un autre texte sous la même clé.");
    q.body = body2;
    expect_free(&q, 409, "idempotency_key_reused", "same Idempotency-Key, another body");
    H_ASSERT(count("SELECT count(*) FROM alerts WHERE centre_id = %lld", G.centre) == before,
             "a 409 creates nothing");
    /* another partner may use the same key: keys are per partner */
    struct wreq club = {.path = "/api/v1/alerts", .p = &G.club, .body = body, .idem = q.idem};
    char *club_body = alert_body("atelier", text);
    club.body = club_body;
    expect_free(&club, 202, NULL, "another partner, same Idempotency-Key");
    free(club_body);

    /* eight identical requests at once: one alert, eight identical answers */
    const char *ptext = "Fête de quartier : rendez-vous à 18 h sur la place.";
    char *pbody = alert_body("sortie", ptext);
    struct wreq pq = {
        .path = "/api/v1/alerts", .p = &G.mairie, .body = pbody, .idem = "parallel-1"};
    struct wresp *par[8];
    before = count("SELECT count(*) FROM alerts WHERE centre_id = %lld", G.centre);
    wsend_parallel(&pq, 8, par);
    for (int i = 0; i < 8; i++) {
        H_ASSERT(par[i]->r->status == 202, "parallel request %d: expected 202, got %ld %s%s", i,
                 par[i]->r->status, par[i]->r->body, par[i]->r->err);
        H_ASSERT(!strcmp(par[i]->r->body, par[0]->r->body),
                 "parallel requests with one key: answers differ: %s vs %s", par[i]->r->body,
                 par[0]->r->body);
    }
    for (int i = 0; i < 8; i++)
        wresp_free(par[i]);
    H_ASSERT(count("SELECT count(*) FROM alerts WHERE centre_id = %lld", G.centre) == before + 1,
             "8 parallel requests with one Idempotency-Key: one alert");
    wresp_free(first);
    free(body);
    free(body2);
    free(pbody);
}

/* ------------------------------------------------------------------ 4. topics */

static void test_topics(void **state)
{
    (void)state;
    char *b = alert_body("sortie", "Le club n'a pas le droit d'écrire ici.");
    struct wreq q = {.path = "/api/v1/alerts", .p = &G.club, .body = b};
    expect_free(&q, 403, "topic_not_allowed", "the club posts to sortie (it has atelier only)");
    free(b);
    H_ASSERT(h_sql_int(G.conninfo,
                       "SELECT count(*) FROM alerts WHERE created_by = '%s'"
                       " AND body LIKE 'Le club%%'",
                       "partner:Club des aînés") == 0,
             "a 403 creates no alert");
    b = alert_body("atelier", "Atelier tricot jeudi 15 h.");
    q.body = b;
    struct wresp *w = expect(&q, 202, NULL, "the club posts to atelier");
    H_ASSERT(h_jint(w->r->json, "recipients") == 2, "atelier has 2 consenting subscribers: %s",
             w->r->body);
    wresp_free(w);
    free(b);
    /* topic names are matched case-insensitively */
    b = alert_body("SORTIE", "Sortie piscine mercredi.");
    struct wreq up = {.path = "/api/v1/alerts", .p = &G.mairie, .body = b};
    expect_free(&up, 202, NULL, "topic SORTIE in capitals");
    free(b);
    /* the centre no longer has the partner's topic */
    b = alert_body("fete", "Fête annulée.");
    struct wreq gone = {.path = "/api/v1/alerts", .p = &G.fete, .body = b};
    expect_free(&gone, 422, "unknown_topic", "a topic the centre deleted");
    free(b);
}

/* ------------------------------------------------------------------ 5. jobs without permission */

static void test_jobs_forbidden(void **state)
{
    (void)state;
    char *b = job_body("club-1", "Animateur", "cuisine");
    struct wreq q = {.path = "/api/v1/jobs", .p = &G.club, .body = b};
    expect_free(&q, 403, "jobs_not_allowed", "a partner without --jobs publishes an offer");
    struct wreq d = {.method = "DELETE", .path = "/api/v1/jobs/club-1", .p = &G.club};
    expect_free(&d, 403, "jobs_not_allowed", "a partner without --jobs withdraws an offer");
    H_ASSERT(h_sql_int(G.conninfo, "SELECT count(*) FROM jobs WHERE external_id = 'club-1'") == 0,
             "a 403 creates no offer");
    free(b);
}

/* ------------------------------------------------------------------ 6. job offers */

static void test_jobs(void **state)
{
    (void)state;
    char *b = job_body("offre-1", "Commis de cuisine", "cuisine");
    struct wreq q = {.path = "/api/v1/jobs", .p = &G.mairie, .body = b};
    struct wresp *w = expect(&q, 201, NULL, "a new job offer");
    G.job1 = h_jint(w->r->json, "id");
    long long number = h_jint(w->r->json, "number");
    H_ASSERT(h_jint(w->r->json, "alerted") == 3, "3 consenting subscribers of cuisine: %s",
             w->r->body);
    wresp_free(w);
    char *row = h_sql_rows(G.conninfo,
                           "SELECT j.number, j.source = 'partner:' || p.id, j.title, j.category,"
                           " j.contact, j.withdrawn_at IS NULL FROM jobs j, partners p"
                           " WHERE j.id = %lld AND p.key_id = '%s'",
                           G.job1, G.mairie.key_id);
    char *want = h_printf("%lld|t|Commis de cuisine|cuisine|04 78 11 22 33|t", number);
    H_ASSERT(!strcmp(row, want), "job %lld:\n  got  %s\n  want %s", G.job1, row, want);
    H_ASSERT(number == 5, "the seed has offers 1-4: the new one is number 5, got %lld", number);
    free(row);
    free(want);
    /* one pending job alert per consenting subscriber of cuisine */
    const char *jobs_sql = "SELECT string_agg(ct.phone || '=' || d.status || ':' ||"
                           " array_to_string(d.job_ids, ','), ' ' ORDER BY ct.phone)"
                           " FROM deliveries d JOIN contacts ct ON ct.id = d.contact_id"
                           " WHERE d.centre_id = %lld AND d.kind = 'jobs'";
    row = h_sql_str(G.conninfo, jobs_sql, G.centre);
    want = h_printf("+33612000001=pending:%lld +33612000002=pending:%lld +33612000003=pending:%lld",
                    G.job1, G.job1, G.job1);
    H_ASSERT(row && !strcmp(row, want), "job alerts:\n  got  %s\n  want %s", row, want);
    free(row);
    free(want);
    free(b);

    /* the same external_id again: an update, not a new offer, no new alert */
    b = job_body("offre-1", "Commis de cuisine (CDI)", "cuisine");
    q.body = b;
    w = expect(&q, 200, NULL, "the same offer updated");
    H_ASSERT(h_jint(w->r->json, "id") == G.job1 && h_jint(w->r->json, "number") == number &&
                 h_jint(w->r->json, "alerted") == 0,
             "update: expected {id: %lld, number: %lld, alerted: 0}, got %s", G.job1, number,
             w->r->body);
    wresp_free(w);
    free(b);
    row = h_sql_str(G.conninfo, "SELECT title FROM jobs WHERE id = %lld", G.job1);
    H_ASSERT(row && !strcmp(row, "Commis de cuisine (CDI)"), "updated title: %s", row);
    free(row);

    /* a second new offer in the category joins the pending job alerts */
    b = job_body("offre-2", "Plongeur", "Cuisine");
    q.body = b;
    w = expect(&q, 201, NULL, "a second offer in cuisine");
    G.job2 = h_jint(w->r->json, "id");
    H_ASSERT(h_jint(w->r->json, "number") == number + 1 && h_jint(w->r->json, "alerted") == 3,
             "second offer: expected number %lld, alerted 3, got %s", number + 1, w->r->body);
    wresp_free(w);
    free(b);
    row = h_sql_str(G.conninfo, jobs_sql, G.centre);
    want = h_printf("+33612000001=pending:%lld,%lld +33612000002=pending:%lld,%lld "
                    "+33612000003=pending:%lld,%lld",
                    G.job1, G.job2, G.job1, G.job2, G.job1, G.job2);
    H_ASSERT(row && !strcmp(row, want), "grouped job alerts:\n  got  %s\n  want %s", row, want);
    free(row);
    free(want);

    /* withdraw: 200, then it is gone (404), like an id never published */
    struct wreq d = {.method = "DELETE", .path = "/api/v1/jobs/offre-1", .p = &G.mairie};
    w = expect(&d, 200, NULL, "DELETE offre-1");
    H_ASSERT(h_jint(w->r->json, "id") == G.job1, "DELETE answers the offer's id: %s", w->r->body);
    wresp_free(w);
    H_ASSERT(count("SELECT count(*) FROM jobs WHERE id = %lld AND withdrawn_at IS NOT NULL",
                   G.job1) == 1,
             "offre-1 is withdrawn");
    expect_free(&d, 404, "not_found", "DELETE offre-1 again");
    d.path = "/api/v1/jobs/jamais-vue";
    expect_free(&d, 404, "not_found", "DELETE of an offer never published");
    d.path = "/api/v1/jobs/";
    expect_free(&d, 404, "not_found", "DELETE without an id");
    H_ASSERT(count("SELECT count(*) FROM jobs WHERE id = %lld AND withdrawn_at IS NULL", G.job2) ==
                 1,
             "offre-2 is still published");
}

/* ------------------------------------------------------------------ 7. invalid requests */

static void test_invalid_422(void **state)
{
    (void)state;
    long long alerts_before = count("SELECT count(*) FROM alerts WHERE centre_id = %lld", G.centre);
    long long jobs_before = count("SELECT count(*) FROM jobs WHERE centre_id = %lld", G.centre);
    char long_text[1200];
    memset(long_text, 'a', sizeof long_text - 1);
    long_text[sizeof long_text - 1] = '\0';
    char title101[102];
    memset(title101, 't', 101);
    title101[101] = '\0';
    char *long_alert = alert_body("sortie", long_text);
    char *job_long_title = job_body("offre-x", title101, "cuisine");
    char *job_bad_ext = job_body("offre x/1", "Plongeur", "cuisine");
    char *job_bad_cat = job_body("offre-y", "Plongeur", "jardinage");
    char *job_no_exp =
        h_printf("{\"external_id\":\"offre-z\",\"title\":\"Plongeur\",\"text\":\"x\","
                 "\"category\":\"cuisine\",\"contact\":\"04\"}");
    char big[9000];
    memset(big, ' ', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    big[0] = '{';
    big[sizeof big - 2] = '}';
    char idem201[202];
    memset(idem201, 'k', 201);
    idem201[201] = '\0';
    struct {
        const char *path, *body, *idem;
        long status;
        const char *code;
    } cases[] = {
        {"/api/v1/alerts", "{\"text\":\"Bonjour\"}", NULL, 422, "missing_field"},
        {"/api/v1/alerts", "{\"topic\":\"sortie\"}", NULL, 422, "missing_field"},
        {"/api/v1/alerts", "{\"topic\":\"sortie\",\"text\":null}", NULL, 422, "missing_field"},
        {"/api/v1/alerts", "{\"topic\":\"sortie\",\"text\":\"  \\n \"}", NULL, 422, "empty_field"},
        {"/api/v1/alerts", "{\"topic\":\"\",\"text\":\"Bonjour\"}", NULL, 422, "empty_field"},
        {"/api/v1/alerts", "{\"topic\":\"sortie\",\"text\":5}", NULL, 422, "bad_field_type"},
        {"/api/v1/alerts", "{\"topic\":\"sortie\",\"text\":\"Bonjour\",\"urgent\":\"oui\"}", NULL,
         422, "bad_field_type"},
        {"/api/v1/alerts", "{\"topic\":\"sortie\",\"text\":\"Bonjour\",\"to\":\"0612345678\"}",
         NULL, 422, "unknown_field"},
        {"/api/v1/alerts", long_alert, NULL, 422, "text_too_long"},
        {"/api/v1/alerts", "{\"topic\":\"sortie\",\"text\":\"Bonjour\",\"expires_at\":\"demain\"}",
         NULL, 422, "invalid_expires_at"},
        {"/api/v1/alerts",
         "{\"topic\":\"sortie\",\"text\":\"Bonjour\",\"expires_at\":\"2020-01-01T10:00:00Z\"}",
         NULL, 422, "invalid_expires_at"},
        {"/api/v1/alerts", "{\"topic\":\"sortie\",\"text\":\"Bonjour\"}", "", 422,
         "invalid_idempotency_key"},
        {"/api/v1/alerts", "{\"topic\":\"sortie\",\"text\":\"Bonjour\"}", idem201, 422,
         "invalid_idempotency_key"},
        {"/api/v1/alerts", "{\"topic\":\"sortie\",", NULL, 400, "malformed_json"},
        {"/api/v1/alerts", "[\"sortie\"]", NULL, 400, "malformed_json"},
        {"/api/v1/alerts", "", NULL, 400, "malformed_json"},
        {"/api/v1/alerts", big, NULL, 413, "body_too_large"},
        {"/api/v1/jobs", job_long_title, NULL, 422, "title_too_long"},
        {"/api/v1/jobs", job_bad_ext, NULL, 422, "invalid_external_id"},
        {"/api/v1/jobs", job_bad_cat, NULL, 422, "unknown_category"},
        {"/api/v1/jobs", job_no_exp, NULL, 422, "missing_field"},
        {"/api/v1/jobs", "{}", NULL, 422, "missing_field"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct wreq q = {
            .path = cases[i].path, .p = &G.mairie, .body = cases[i].body, .idem = cases[i].idem};
        char *what = h_printf("case %zu: POST %s %.80s%s", i + 1, cases[i].path, cases[i].body,
                              cases[i].idem ? " (with an Idempotency-Key)" : "");
        expect_free(&q, cases[i].status, cases[i].code, what);
        free(what);
    }
    H_ASSERT(count("SELECT count(*) FROM alerts WHERE centre_id = %lld", G.centre) ==
                     alerts_before &&
                 count("SELECT count(*) FROM jobs WHERE centre_id = %lld", G.centre) == jobs_before,
             "refused requests create nothing");
    free(long_alert);
    free(job_long_title);
    free(job_bad_ext);
    free(job_bad_cat);
    free(job_no_exp);
}

/* ------------------------------------------------------------------ 8. rate limit */

static void test_rate_limited_429(void **state)
{
    (void)state;
    char *b = alert_body("sortie", "Rappel : sortie demain.");
    struct wreq q = {.path = "/api/v1/alerts", .p = &G.bavard, .body = b};
    for (int i = 1; i <= 5; i++) {
        char *what = h_printf("request %d of a partner allowed 5 a minute", i);
        expect_free(&q, 202, NULL, what);
        free(what);
    }
    struct wresp *w = expect(&q, 429, "rate_limited", "the 6th request within a minute");
    char *ra = resp_header(w, "Retry-After");
    long s = ra ? strtol(ra, NULL, 10) : 0;
    H_ASSERT(s >= 1 && s <= 12,
             "Retry-After: expected 1 to 12 seconds (a token every 12 s), "
             "got %s",
             ra ? ra : "(none)");
    free(ra);
    wresp_free(w);
    /* other partners are not affected */
    struct wreq other = {.path = "/api/v1/alerts", .p = &G.mairie, .body = b};
    expect_free(&other, 202, NULL, "another partner meanwhile");
    free(b);
}

/* ------------------------------------------------------------------ 9. revocation */

struct revoke_poll {
    struct wreq *q;
    long last;
    char *last_body;
};

static int revoked_pred(void *arg)
{
    struct revoke_poll *p = arg;
    struct wresp *w = wsend(p->q);
    p->last = w->r->status;
    free(p->last_body);
    p->last_body = h_printf("%s", w->r->body);
    wresp_free(w);
    return p->last == 401;
}

static void test_revoked_401(void **state)
{
    (void)state;
    char *b = alert_body("sortie", "Message d'un ancien partenaire.");
    struct wreq q = {.path = "/api/v1/alerts", .p = &G.ancien, .body = b};
    expect_free(&q, 202, NULL, "before the revocation");
    char *out = NULL;
    int rc = h_ctl(G.config, &out, "partner", "revoke", G.ancien.key_id, NULL);
    H_ASSERT(rc == 0, "gatewayctl partner revoke failed (exit %d): %s", rc, h_ctl_stderr());
    free(out);
    struct revoke_poll p = {.q = &q};
    H_ASSERT(h_poll(90, 1000, revoked_pred, &p),
             "a revoked partner must be refused within a minute; still %ld %s", p.last,
             p.last_body);
    H_ASSERT(!strcmp(p.last_body, G.unauthorized_body),
             "the revoked key's 401 must be the same as every other: '%s' vs '%s'", p.last_body,
             G.unauthorized_body);
    free(p.last_body);
    expect_401(&q, "a revoked partner");
    rc = h_ctl(G.config, NULL, "partner", "revoke", G.ancien.key_id, NULL);
    H_ASSERT(rc == 3, "revoking a revoked key: expected exit 3, got %d", rc);
    free(b);
}

/* ------------------------------------------------------------------ 10. a large fan-out */

static void test_fanout_10000(void **state)
{
    (void)state;
    /* 10,000 consenting subscribers of "grande", the first 100 of whom opted out */
    h_sql_exec(G.conninfo,
               "WITH c AS (INSERT INTO contacts (centre_id, phone, consent_at, opted_out_at)"
               "  SELECT %lld, '+33620' || lpad(g::text, 6, '0'), now(),"
               "         CASE WHEN g <= 100 THEN now() END"
               "    FROM generate_series(1, 10000) g RETURNING id)"
               " INSERT INTO subscriptions (topic_id, contact_id)"
               " SELECT t.id, c.id FROM c, topics t"
               "  WHERE t.centre_id = %lld AND t.kind = 'alert' AND t.name = 'grande'",
               G.centre, G.centre);
    char *b = alert_body("grande", "Coupure d'eau demain de 8 h à 12 h dans tout le quartier.");
    struct wreq q = {.path = "/api/v1/alerts", .p = &G.mairie, .body = b};
    struct wresp *w = expect(&q, 403, "fanout_too_large", "9,900 recipients, fanout_max 500");
    const char *msg = h_jstr(w->r->json, "error.message");
    H_ASSERT(msg && strstr(msg, "9900") && strstr(msg, "500"),
             "the message says how many and the limit: %s", w->r->body);
    wresp_free(w);
    H_ASSERT(h_ctl(G.config, NULL, "centre", "set", CENTRE, "fanout_max=20000", NULL) == 0,
             "gatewayctl centre set fanout_max=20000 failed: %s", h_ctl_stderr());
    w = expect(&q, 202, NULL, "the same alert with fanout_max 20000");
    long long id = h_jint(w->r->json, "id");
    H_ASSERT(h_jint(w->r->json, "recipients") == 9900, "recipients: expected 9900, got %s",
             w->r->body);
    wresp_free(w);
    H_ASSERT(count("SELECT count(*) FROM deliveries WHERE alert_id = %lld", id) == 9900,
             "expected exactly 9,900 deliveries");
    H_ASSERT(count("SELECT count(DISTINCT contact_id) FROM deliveries WHERE alert_id = %lld", id) ==
                 9900,
             "one delivery per resident");
    H_ASSERT(count("SELECT count(*) FROM deliveries d JOIN contacts c ON c.id = d.contact_id"
                   " WHERE d.alert_id = %lld AND c.opted_out_at IS NOT NULL",
                   id) == 0,
             "no delivery to a resident who opted out");
    free(b);
}

/* ------------------------------------------------------------------ 11. the command line */

static void test_cli(void **state)
{
    (void)state;
    char *out = NULL;
    int rc = h_ctl(G.config, &out, "partner", "list", CENTRE, NULL);
    H_ASSERT(rc == 0, "partner list: exit %d: %s", rc, h_ctl_stderr());
    H_ASSERT(strstr(out, G.mairie.key_id) && strstr(out, "Mairie") &&
                 strstr(out, "sortie,grande") && strstr(out, G.ancien.key_id),
             "partner list shows key ids, names and topics: %s", out);
    H_ASSERT(!strstr(out, G.mairie.secret) && !strstr(out, G.club.secret),
             "partner list must never show a secret: %s", out);
    free(out);
    struct {
        int want;
        const char *a[6];
    } cases[] = {
        {1, {"partner", "create", CENTRE, "Intrus", "--topics", "inconnu"}},
        {1, {"partner", "create", CENTRE, "Mairie", "--topics", "sortie"}},
        {3, {"partner", "create", "Pas de centre", "X", "--topics", "sortie"}},
        {2, {"partner", "create", CENTRE, "Y", "--rate", "0"}},
        {3, {"partner", "revoke", "pk_ffffffffffffffff", NULL}},
        {3, {"partner", "list", "Pas de centre", NULL}},
        {2, {"centre", "set", CENTRE, "fanout_max=0", NULL}},
        {2, {"centre", "set", CENTRE, "daily_cap=51", NULL}},
        {2, {"centre", "set", CENTRE, "quiet_start=24:00", NULL}},
        {2, {"centre", "set", CENTRE, "quiet_sundays=oui", NULL}},
        {2, {"centre", "set", CENTRE, "catchup_min=10081", NULL}},
        {0, {"centre", "set", CENTRE, "daily_cap=50", "quiet_end=21:30", "quiet_holidays=no"}},
        {0, {"centre", "set", CENTRE, "catchup_min=10080", NULL}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *const *a = cases[i].a;
        rc = h_ctl(G.config, NULL, a[0], a[1], a[2], a[3], a[4], a[5], NULL);
        H_ASSERT(rc == cases[i].want, "gatewayctl %s %s %s %s: expected exit %d, got %d (%s)", a[0],
                 a[1], a[2], a[3] ? a[3] : "", cases[i].want, rc, h_ctl_stderr());
    }
}

/* ------------------------------------------------------------------ 12. metrics, stop */

static void test_metrics(void **state)
{
    (void)state;
    struct h_resp *r = h_get(G.d, "/metrics", NULL);
    H_ASSERT(r->status == 200, "GET /metrics: %ld", r->status);
    static const char *const results[] = {"accepted", "unauthorized", "forbidden",
                                          "invalid",  "conflict",     "rate_limited"};
    for (size_t i = 0; i < sizeof results / sizeof results[0]; i++) {
        char *name = h_printf("passerelle_webhook_requests_total{result=\"%s\"} ", results[i]);
        const char *at = strstr(r->body, name);
        H_ASSERT(at && strtol(at + strlen(name), NULL, 10) > 0,
                 "/metrics: expected %s with a positive count", name);
        free(name);
    }
    H_ASSERT(strstr(r->body, "passerelle_webhook_requests_total{result=\"unavailable\"} 0"),
             "/metrics: no request met a database outage");
    h_resp_free(r);
}

static void test_clean_shutdown(void **state)
{
    (void)state;
    h_daemon_stop(G.d);
}

int main(int argc, char **argv)
{
    h_init("webhooks", argc, argv);
    if (sodium_init() < 0) {
        fprintf(stderr, "libsodium failed to initialise\n");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alert_accepted),
        cmocka_unit_test(test_bad_signatures_401),
        cmocka_unit_test(test_idempotency),
        cmocka_unit_test(test_topics),
        cmocka_unit_test(test_jobs_forbidden),
        cmocka_unit_test(test_jobs),
        cmocka_unit_test(test_invalid_422),
        cmocka_unit_test(test_rate_limited_429),
        cmocka_unit_test(test_revoked_401),
        cmocka_unit_test(test_fanout_10000),
        cmocka_unit_test(test_cli),
        cmocka_unit_test(test_metrics),
        cmocka_unit_test(test_clean_shutdown),
    };
    int failures =
        cmocka_run_group_tests_name("webhooks (one daemon)", tests, group_setup, group_teardown);
    h_exit(failures);
}
