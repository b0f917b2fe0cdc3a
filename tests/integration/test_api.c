/*
 * test_api — the HTTP API of a real gatewayd against a real PostgreSQL, as a user sees it:
 * sending, delivery and history, phone numbers and encodings, idempotency, every error with
 * its status and error.code, scheduled sends, inbound messages and the message list,
 * /metrics, the command line (--version, --check-config), and routes that fail permanently or
 * temporarily (each on a daemon and database of its own).
 *
 * Tests 1-17 share one daemon ("main", database t_api_<pid>) with two centres A and B; the
 * last of them stops it and asserts a clean exit.
 */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef PASSERELLE_VERSION
#define PASSERELLE_VERSION "unknown"
#endif

#define DELIVERY_TIMEOUT_S 30

static struct {
    char *conninfo;
    char *config;
    struct h_daemon *d;
    long long centre_a, centre_b;
    char *key_a, *key_b;
} G;

/* ------------------------------------------------------------------ helpers */

static char *json_body(const char *to, const char *text, const char *extra)
{
    json_t *o = json_pack("{s:s,s:s}", "to", to, "text", text);
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!extra)
        return s;
    /* extra is ",\"k\":v" spliced before the closing brace */
    size_t n = strlen(s);
    s[n - 1] = '\0';
    char *r = h_printf("%s%s}", s, extra);
    free(s);
    return r;
}

static struct h_resp *send_msg(const char *key, const char *to, const char *text,
                               const char *extra)
{
    char *body = json_body(to, text, extra);
    struct h_resp *r = h_post_json(G.d, "/api/v1/messages", key, body);
    free(body);
    return r;
}

/* POST and assert 202 {id, status: queued, segments, encoding}; returns the id. */
static long long send_ok(const char *key, const char *to, const char *text, const char *extra,
                         int want_segments, const char *want_encoding)
{
    struct h_resp *r = send_msg(key, to, text, extra);
    H_ASSERT(r->status == 202, "POST /api/v1/messages to=%s: expected 202, got %ld %s%s", to,
             r->status, r->body, r->err);
    long long id = h_jint(r->json, "id");
    H_ASSERT(id > 0, "202 with id %lld", id);
    const char *st = h_jstr(r->json, "status");
    H_ASSERT(st && !strcmp(st, "queued"), "202 status: expected \"queued\", got %s", r->body);
    if (want_segments > 0)
        H_ASSERT(h_jint(r->json, "segments") == want_segments,
                 "text '%s': expected %d segment(s), got %s", text, want_segments, r->body);
    if (want_encoding) {
        const char *enc = h_jstr(r->json, "encoding");
        H_ASSERT(enc && !strcmp(enc, want_encoding), "text '%s': expected encoding %s, got %s",
                 text, want_encoding, r->body);
    }
    h_resp_free(r);
    return id;
}

static json_t *get_msg(struct h_daemon *d, const char *key, long long id)
{
    char *path = h_printf("/api/v1/messages/%lld", id);
    struct h_resp *r = h_get(d, path, key);
    H_ASSERT(r->status == 200 && r->json, "GET %s: expected 200 with JSON, got %ld %s%s", path,
             r->status, r->body, r->err);
    free(path);
    json_t *j = json_incref(r->json);
    h_resp_free(r);
    return j;
}

/* Polls GET /api/v1/messages/{id} until its status is want; returns the message. */
static json_t *wait_status(struct h_daemon *d, const char *conninfo, const char *key,
                           long long id, const char *want, double timeout_s)
{
    double deadline = h_now() + timeout_s;
    for (;;) {
        json_t *m = get_msg(d, key, id);
        const char *st = h_jstr(m, "status");
        if (st && !strcmp(st, want))
            return m;
        if (h_now() > deadline) {
            char *s = json_dumps(m, JSON_COMPACT);
            char *q = h_sql_rows(conninfo,
                                 "SELECT 'queue', route, due_at, lease_node FROM outbox_queue"
                                 " WHERE message_id = %lld",
                                 id);
            char msg[4096];
            snprintf(msg, sizeof msg,
                     "message %lld did not reach status '%s' within %.0f s; it is: %s; "
                     "outbox_queue: %s",
                     id, want, timeout_s, s, q);
            free(s);
            free(q);
            json_decref(m);
            h_fail("%s", msg);
        }
        json_decref(m);
        h_sleep_ms(100);
    }
}

/* "queued,sending,…" from a message's history. */
static char *history_of(json_t *m)
{
    json_t *h = json_object_get(m, "history");
    H_ASSERT(json_is_array(h), "the message has no history array");
    char buf[1024] = "";
    size_t i;
    json_t *e;
    json_array_foreach(h, i, e)
    {
        const char *st = h_jstr(e, "status");
        size_t n = strlen(buf);
        snprintf(buf + n, sizeof buf - n, "%s%s", i ? "," : "", st ? st : "?");
    }
    return h_printf("%s", buf);
}

static char *random_wrong_key(void)
{
    /* well-formed (psk_ + 12 hex + _ + 32 hex) but never issued */
    return h_printf("psk_%012x_%032x", (unsigned)getpid(), 0xdeadbeefu);
}

/* ------------------------------------------------------------------ group set-up */

static int group_setup(void **state)
{
    (void)state;
    G.conninfo = h_db_create(h_test_pg(), "api", NULL);
    int port = h_free_port();
    struct h_config c = {.port = port, .conninfo = G.conninfo};
    G.config = h_config_write(&c, "main.ini");
    G.centre_a = h_centre_create(G.config, "Centre A");
    G.centre_b = h_centre_create(G.config, "Centre B");
    G.key_a = h_key_create(G.config, "Centre A");
    G.key_b = h_key_create(G.config, "Centre B");
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

/* ------------------------------------------------------------------ 1. send → delivered */

static void test_send_delivered_with_history(void **state)
{
    (void)state;
    long long id = send_ok(G.key_a, "+33612345670", "Bonjour, votre rendez-vous est confirme",
                           NULL, 1, "gsm7");
    json_t *m = wait_status(G.d, G.conninfo, G.key_a, id, "delivered", DELIVERY_TIMEOUT_S);
    char *hist = history_of(m);
    H_ASSERT(!strcmp(hist, "queued,sending,sent,delivered"),
             "message %lld: expected history queued,sending,sent,delivered, got %s", id, hist);
    free(hist);
    json_t *att = json_object_get(m, "attempts");
    H_ASSERT(json_is_array(att) && json_array_size(att) == 1,
             "message %lld: expected exactly one attempt, got %zu", id, json_array_size(att));
    const char *outcome = h_jstr(json_array_get(att, 0), "outcome");
    H_ASSERT(outcome && !strcmp(outcome, "accepted"), "attempt outcome: expected accepted, got %s",
             outcome ? outcome : "(none)");
    const char *node = h_jstr(json_array_get(att, 0), "node");
    H_ASSERT(node && !strcmp(node, "node-a"), "attempt node: expected node-a, got %s",
             node ? node : "(none)");
    H_ASSERT(h_jint(m, "attempt_count") == 1, "attempt_count: expected 1");
    const char *dir = h_jstr(m, "direction");
    H_ASSERT(dir && !strcmp(dir, "out"), "direction: expected out");
    const char *to = h_jstr(m, "to");
    H_ASSERT(to && !strcmp(to, "+33612345670"), "to: expected +33612345670, got %s",
             to ? to : "(none)");
    H_ASSERT(!h_jget(m, "last_error"), "a delivered message has no last_error");
    json_decref(m);
    /* and the database agrees */
    char *st = h_sql_str(G.conninfo, "SELECT status FROM messages WHERE id = %lld", id);
    H_ASSERT(st && !strcmp(st, "delivered"), "messages.status: expected delivered, got %s", st);
    free(st);
    H_ASSERT(h_sql_int(G.conninfo,
                       "SELECT count(*) FROM attempts WHERE message_id = %lld AND outcome = "
                       "'accepted'",
                       id) == 1,
             "attempts: expected one accepted attempt for message %lld", id);
    H_ASSERT(h_sql_int(G.conninfo, "SELECT count(*) FROM outbox_queue WHERE message_id = %lld",
                       id) == 0,
             "a delivered message must have left outbox_queue");
}

/* ------------------------------------------------------------------ 2. phone numbers */

static void test_phone_stored_e164(void **state)
{
    (void)state;
    long long id = send_ok(G.key_a, "06 12 34 56 78", "Test numero", NULL, 1, "gsm7");
    json_t *m = get_msg(G.d, G.key_a, id);
    const char *to = h_jstr(m, "to");
    H_ASSERT(to && !strcmp(to, "+33612345678"), "\"06 12 34 56 78\": expected to=+33612345678, "
                                                "got %s",
             to ? to : "(none)");
    json_decref(m);
    char *ph = h_sql_str(G.conninfo, "SELECT phone FROM messages WHERE id = %lld", id);
    H_ASSERT(ph && !strcmp(ph, "+33612345678"), "messages.phone: expected +33612345678, got %s",
             ph);
    free(ph);
}

/* ------------------------------------------------------------------ 3-4. encodings */

static void test_french_text_transliterated_to_gsm7(void **state)
{
    (void)state;
    const char *text = "F\xc3\xaate de l'\xc3\xa9" "cole \xc2\xab portes ouvertes \xc2\xbb samedi";
    const char *want = "Fete de l'\xc3\xa9" "cole \" portes ouvertes \" samedi";
    long long id = send_ok(G.key_a, "+33612345671", text, NULL, 1, "gsm7");
    json_t *m = get_msg(G.d, G.key_a, id);
    const char *got = h_jstr(m, "text");
    H_ASSERT(got && !strcmp(got, want), "transliterated text: expected '%s', got '%s'", want,
             got ? got : "(none)");
    const char *enc = h_jstr(m, "encoding");
    H_ASSERT(enc && !strcmp(enc, "gsm7"), "stored encoding: expected gsm7, got %s",
             enc ? enc : "(none)");
    json_decref(m);
}

static void test_emoji_stays_ucs2(void **state)
{
    (void)state;
    const char *smile = "\xf0\x9f\x98\x80"; /* U+1F600, two UTF-16 units */
    char *short_text = h_printf("Merci pour votre venue %s", smile);
    long long id = send_ok(G.key_a, "+33612345672", short_text, NULL, 1, "ucs2");
    json_t *m = get_msg(G.d, G.key_a, id);
    const char *got = h_jstr(m, "text");
    H_ASSERT(got && !strcmp(got, short_text), "a UCS-2 text is kept as written: expected '%s', "
                                              "got '%s'",
             short_text, got ? got : "(none)");
    H_ASSERT(h_jint(m, "segments") == 1, "segments: expected 1");
    json_decref(m);
    /* 80 letters + the emoji = 82 UTF-16 units: more than 70, at most 2 x 67 → 2 segments */
    char letters[81];
    memset(letters, 'a', 80);
    letters[80] = '\0';
    char *long_text = h_printf("%s%s", letters, smile);
    send_ok(G.key_a, "+33612345672", long_text, NULL, 2, "ucs2");
    /* 140 letters + the emoji = 142 units: more than 2 x 67 → 3 segments */
    char more[141];
    memset(more, 'b', 140);
    more[140] = '\0';
    char *longer = h_printf("%s%s", more, smile);
    send_ok(G.key_a, "+33612345672", longer, NULL, 3, "ucs2");
    free(short_text);
    free(long_text);
    free(longer);
}

/* ------------------------------------------------------------------ 5. idempotency */

static void test_idempotency(void **state)
{
    (void)state;
    char *key = h_printf("idem-%d-1", (int)getpid());
    char *extra = h_printf(",\"idempotency_key\":\"%s\"", key);
    struct h_resp *r1 = send_msg(G.key_a, "+33612345673", "Rappel: reunion", extra);
    H_ASSERT(r1->status == 202, "first POST with idempotency_key: expected 202, got %ld %s",
             r1->status, r1->body);
    long long id1 = h_jint(r1->json, "id");
    H_ASSERT(!json_is_true(h_jget(r1->json, "idempotent_replay")),
             "the first POST is not a replay: %s", r1->body);
    struct h_resp *r2 = send_msg(G.key_a, "+33612345673", "Rappel: reunion", extra);
    H_ASSERT(r2->status == 202, "second POST with the same idempotency_key: expected 202, got "
                                "%ld %s",
             r2->status, r2->body);
    long long id2 = h_jint(r2->json, "id");
    H_ASSERT(id1 == id2, "same idempotency_key: expected the same id, got %lld then %lld", id1,
             id2);
    H_ASSERT(json_is_true(h_jget(r2->json, "idempotent_replay")),
             "the second answer should say idempotent_replay: %s", r2->body);
    long long rows = h_sql_int(G.conninfo,
                               "SELECT count(*) FROM messages WHERE centre_id = %lld AND "
                               "idempotency_key = '%s'",
                               G.centre_a, key);
    H_ASSERT(rows == 1, "same idempotency_key twice: expected 1 row in messages, got %lld", rows);
    /* another centre may use the same key for a message of its own */
    struct h_resp *r3 = send_msg(G.key_b, "+33612345673", "Rappel: reunion", extra);
    H_ASSERT(r3->status == 202 && h_jint(r3->json, "id") != id1,
             "centre B with centre A's idempotency_key: expected 202 with a new id, got %ld %s",
             r3->status, r3->body);
    h_resp_free(r1);
    h_resp_free(r2);
    h_resp_free(r3);
    free(key);
    free(extra);
}

/* ------------------------------------------------------------------ 6. 400 */

static void expect_post(const char *key, const char *body, long status, const char *code,
                        const char *what)
{
    struct h_resp *r = h_post_json(G.d, "/api/v1/messages", key, body);
    char *w = h_printf("%s (body %s)", what, body);
    h_expect_error(r, status, code, w);
    free(w);
    h_resp_free(r);
}

static void test_bad_requests_400(void **state)
{
    (void)state;
    long long before = h_sql_int(G.conninfo, "SELECT count(*) FROM messages");
    expect_post(G.key_a, "{\"to\": \"+33612345674\", \"text\": ", 400, "malformed_json",
                "truncated JSON");
    expect_post(G.key_a, "not json at all", 400, "malformed_json", "not JSON");
    expect_post(G.key_a, "[\"+33612345674\", \"hello\"]", 400, "malformed_json",
                "a JSON array instead of an object");
    expect_post(G.key_a, "{\"text\": \"hello\"}", 400, "missing_field", "no 'to'");
    expect_post(G.key_a, "{\"to\": \"+33612345674\"}", 400, "missing_field", "no 'text'");
    expect_post(G.key_a, "{\"to\": \"+33612345674\", \"text\": \"hello\", \"priority\": 1}", 400,
                "unknown_field", "an unknown field");
    expect_post(G.key_a, "{\"to\": 33612345674, \"text\": \"hello\"}", 400, "bad_field_type",
                "'to' as a number");
    expect_post(G.key_a, "{\"to\": \"+33612345674\", \"text\": [\"hello\"]}", 400,
                "bad_field_type", "'text' as an array");
    /* the messages named the missing field */
    struct h_resp *r = h_post_json(G.d, "/api/v1/messages", G.key_a, "{\"to\": \"+33612345674\"}");
    const char *msg = h_jstr(r->json, "error.message");
    H_ASSERT(msg && strstr(msg, "text"), "missing 'text': the message should name the field, got "
                                         "%s",
             r->body);
    h_resp_free(r);
    long long after = h_sql_int(G.conninfo, "SELECT count(*) FROM messages");
    H_ASSERT(before == after, "rejected requests must not create messages (%lld → %lld)", before,
             after);
}

/* ------------------------------------------------------------------ 7. 401 */

static void test_unauthorized_401(void **state)
{
    (void)state;
    const char *body = "{\"to\": \"+33612345675\", \"text\": \"hello\"}";
    char *url = h_printf("%s/api/v1/messages", G.d->url);
    struct h_resp *r = h_http("POST", url, NULL, "application/json", body, strlen(body));
    h_expect_error(r, 401, "unauthorized", "POST without an Authorization header");
    h_resp_free(r);

    r = h_http("GET", url, NULL, NULL, NULL, 0);
    h_expect_error(r, 401, "unauthorized", "GET the list without an Authorization header");
    h_resp_free(r);

    char *wrong = random_wrong_key();
    r = h_post_json(G.d, "/api/v1/messages", wrong, body);
    h_expect_error(r, 401, "unauthorized", "POST with a well-formed key that was never issued");
    h_resp_free(r);
    free(wrong);

    /* a real key with its secret part changed */
    char *tampered = h_printf("%s", G.key_a);
    tampered[strlen(tampered) - 1] = tampered[strlen(tampered) - 1] == '0' ? '1' : '0';
    r = h_post_json(G.d, "/api/v1/messages", tampered, body);
    h_expect_error(r, 401, "unauthorized", "POST with centre A's key, last digit changed");
    h_resp_free(r);
    free(tampered);

    r = h_post_json(G.d, "/api/v1/messages", "hello", body);
    h_expect_error(r, 401, "unauthorized", "POST with a malformed key (Bearer hello)");
    h_resp_free(r);

    char *basic = h_printf("Basic %s", G.key_a);
    r = h_http("POST", url, basic, "application/json", body, strlen(body));
    h_expect_error(r, 401, "unauthorized", "POST with the key in a Basic header");
    h_resp_free(r);
    free(basic);

    /* revoked: a key that was never used, so no daemon has it in its cache */
    char *key_c = h_key_create(G.config, "Centre A");
    char prefix[17];
    memcpy(prefix, key_c, 16);
    prefix[16] = '\0';
    char *out = NULL;
    int rc = h_ctl(G.config, &out, "key", "revoke", prefix, NULL);
    H_ASSERT(rc == 0, "gatewayctl key revoke %s: exit %d (%s %s)", prefix, rc, out,
             h_ctl_stderr());
    free(out);
    r = h_post_json(G.d, "/api/v1/messages", key_c, body);
    h_expect_error(r, 401, "unauthorized", "POST with a revoked key");
    h_resp_free(r);
    rc = h_ctl(G.config, NULL, "key", "check", key_c, NULL);
    H_ASSERT(rc == 1, "gatewayctl key check on a revoked key: expected exit 1, got %d", rc);
    free(key_c);
    free(url);
    H_ASSERT(h_sql_int(G.conninfo, "SELECT count(*) FROM messages WHERE phone = '+33612345675'") ==
                 0,
             "an unauthorized POST created a message");
}

/* ------------------------------------------------------------------ 8. 404 */

static void test_not_found_404(void **state)
{
    (void)state;
    long long id = send_ok(G.key_a, "+33612345676", "Message du centre A", NULL, 1, "gsm7");
    char *path = h_printf("/api/v1/messages/%lld", id);
    struct h_resp *r = h_get(G.d, path, G.key_b);
    h_expect_error(r, 404, "not_found", "centre B reading centre A's message");
    H_ASSERT(!strstr(r->body, "Message du centre A"), "the 404 leaks the text: %s", r->body);
    h_resp_free(r);
    r = h_get(G.d, path, G.key_a);
    H_ASSERT(r->status == 200, "centre A reading its own message: expected 200, got %ld %s",
             r->status, r->body);
    h_resp_free(r);
    free(path);
    long long max = h_sql_int(G.conninfo, "SELECT coalesce(max(id), 0) FROM messages");
    path = h_printf("/api/v1/messages/%lld", max + 1000000);
    r = h_get(G.d, path, G.key_a);
    h_expect_error(r, 404, "not_found", "a message id that does not exist");
    h_resp_free(r);
    free(path);
    r = h_get(G.d, "/api/v1/messages/abc", G.key_a);
    h_expect_error(r, 404, "not_found", "a message id that is not a number");
    h_resp_free(r);
    /* centre B does not see A's messages in its list either */
    r = h_get(G.d, "/api/v1/messages?limit=200", G.key_b);
    H_ASSERT(r->status == 200, "centre B's list: expected 200, got %ld %s", r->status, r->body);
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(r->json, "messages"), i, m)
    {
        H_ASSERT(h_jint(m, "id") != id, "centre B's list shows centre A's message %lld", id);
    }
    h_resp_free(r);
}

/* ------------------------------------------------------------------ 9. 413 */

static void test_body_too_large_413(void **state)
{
    (void)state;
    size_t n = 9000; /* max_body_bytes = 8192 */
    char *text = malloc(n + 1);
    memset(text, 'x', n);
    text[n] = '\0';
    char *body = json_body("+33612345677", text, NULL);
    struct h_resp *r = h_post_json(G.d, "/api/v1/messages", G.key_a, body);
    h_expect_error(r, 413, "body_too_large", "a 9000-byte body (max_body_bytes = 8192)");
    h_resp_free(r);
    free(body);
    free(text);
    H_ASSERT(h_sql_int(G.conninfo, "SELECT count(*) FROM messages WHERE phone = '+33612345677'") ==
                 0,
             "a body over max_body_bytes created a message");
}

/* ------------------------------------------------------------------ 10-11. 422 */

static void expect_send(const char *to, const char *text, const char *extra, long status,
                        const char *code, const char *what)
{
    struct h_resp *r = send_msg(G.key_a, to, text, extra);
    h_expect_error(r, status, code, what);
    h_resp_free(r);
}

static void test_unprocessable_422(void **state)
{
    (void)state;
    long long before = h_sql_int(G.conninfo, "SELECT count(*) FROM messages");
    expect_send("01 23 45 67 89", "hello", NULL, 422, "invalid_phone",
                "a French landline (01 23 45 67 89)");
    expect_send("hello", "hello", NULL, 422, "invalid_phone", "to=\"hello\"");
    expect_send("+33612345678", "", NULL, 422, "empty_text", "an empty text");
    expect_send("+33612345678", "   \n ", NULL, 422, "empty_text", "a blank text");
    /* 7 GSM-7 segments: 6 x 153 = 918 characters fit the default max_segments = 6 */
    char text[1001];
    memset(text, 'a', 1000);
    text[1000] = '\0';
    expect_send("+33612345678", text, NULL, 422, "text_too_long",
                "a 1000-character GSM-7 text (7 segments)");
    text[918] = '\0';
    long long id = send_ok(G.key_a, "+33612345678", text, NULL, 6, "gsm7");
    H_ASSERT(id > 0, "918 characters (6 segments) are accepted");
    expect_send("+33612345678", "hello", ",\"send_at\":\"tomorrow\"", 422, "invalid_send_at",
                "send_at=\"tomorrow\"");
    expect_send("+33612345678", "hello", ",\"send_at\":\"2030-13-01T10:00:00Z\"", 422,
                "invalid_send_at", "send_at with month 13");
    expect_send("+33612345678", "hello", ",\"send_at\":\"2030-01-01 10:00\"", 422,
                "invalid_send_at", "send_at without seconds or offset");
    expect_send("+33612345678", "hello", ",\"send_at\":\"2099-01-01T10:00:00Z\"", 422,
                "invalid_send_at", "send_at more than 400 days away");
    long long after = h_sql_int(G.conninfo, "SELECT count(*) FROM messages");
    H_ASSERT(after == before + 1, "only the 6-segment text should have been stored (%lld → %lld)",
             before, after);
}

static void test_empty_phone_422(void **state)
{
    (void)state;
    long long max_before = h_sql_int(G.conninfo, "SELECT coalesce(max(id), 0) FROM messages");
    struct h_resp *r = send_msg(G.key_a, "", "hello", NULL);
    char *stored = h_sql_rows(G.conninfo,
                              "SELECT id, quote_literal(phone), status FROM messages WHERE id > "
                              "%lld ORDER BY id",
                              max_before);
    H_ASSERT(r->status == 422, "to=\"\": expected HTTP 422 invalid_phone, got %ld %s; messages "
                               "stored since (id|phone|status): %s",
             r->status, r->body, stored);
    h_expect_error(r, 422, "invalid_phone", "to=\"\"");
    H_ASSERT(!strcmp(stored, "(no rows)"), "to=\"\" stored a message: %s", stored);
    free(stored);
    h_resp_free(r);
}

static void test_opted_out_422(void **state)
{
    (void)state;
    h_sql_exec(G.conninfo,
               "INSERT INTO contacts (centre_id, phone, opted_out_at) VALUES (%lld, "
               "'+33612345699', now())",
               G.centre_a);
    expect_send("06 12 34 56 99", "Votre colis", NULL, 422, "opted_out",
                "a number that opted out (STOP)");
    H_ASSERT(h_sql_int(G.conninfo, "SELECT count(*) FROM messages WHERE phone = '+33612345699'") ==
                 0,
             "a message to an opted-out number was stored");
    /* the opt-out belongs to centre A only: centre B can still text the number */
    struct h_resp *r = send_msg(G.key_b, "06 12 34 56 99", "Votre colis", NULL);
    H_ASSERT(r->status == 202, "centre B to a number that opted out of centre A: expected 202, "
                               "got %ld %s",
             r->status, r->body);
    h_resp_free(r);
}

/* ------------------------------------------------------------------ 12. send_at */

static void test_scheduled_send(void **state)
{
    (void)state;
    /* at least 3 s ahead, on a whole second */
    time_t at = (time_t)h_wall() + 4;
    struct tm tm;
    gmtime_r(&at, &tm);
    char ts[32], extra[64];
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(extra, sizeof extra, ",\"send_at\":\"%s\"", ts);
    long long id = send_ok(G.key_a, "+33612345679", "Rappel programme", extra, 1, "gsm7");
    int checks = 0;
    while (h_wall() < (double)at - 0.3) {
        json_t *m = get_msg(G.d, G.key_a, id);
        const char *st = h_jstr(m, "status");
        H_ASSERT(st && !strcmp(st, "queued"),
                 "message %lld scheduled for %s is '%s' %.1f s before its time", id, ts,
                 st ? st : "?", (double)at - h_wall());
        json_decref(m);
        checks++;
        h_sleep_ms(250);
    }
    H_ASSERT(checks > 0, "the scheduled message was never observed before its time");
    json_t *m = wait_status(G.d, G.conninfo, G.key_a, id, "delivered", DELIVERY_TIMEOUT_S);
    const char *sa = h_jstr(m, "send_at");
    H_ASSERT(sa != NULL, "the message shows no send_at: it should echo %s", ts);
    json_decref(m);
    long long early = h_sql_int(G.conninfo,
                                "SELECT count(*) FROM message_events e JOIN messages m ON m.id = "
                                "e.message_id WHERE m.id = %lld AND e.status <> 'queued' AND "
                                "e.at < '%s'::timestamptz",
                                id, ts);
    H_ASSERT(early == 0, "message %lld scheduled for %s has %lld transition(s) before that time",
             id, ts, early);
    h_log("scheduled message %lld: queued during %d checks, delivered after %s", id, checks, ts);
}

/* ------------------------------------------------------------------ 13-16. inbound, list */

static long long inbound(const char *form)
{
    struct h_resp *r = h_post_form(G.d, "/providers/sim/inbound", form);
    H_ASSERT(r->status == 200, "POST /providers/sim/inbound %s: expected 200, got %ld %s%s", form,
             r->status, r->body, r->err);
    long long id = h_jint(r->json, "id");
    h_resp_free(r);
    return id;
}

static json_t *list(const char *key, const char *query)
{
    char *path = h_printf("/api/v1/messages%s", query);
    struct h_resp *r = h_get(G.d, path, key);
    H_ASSERT(r->status == 200 && json_is_array(json_object_get(r->json, "messages")),
             "GET %s: expected 200 with a messages array, got %ld %s", path, r->status, r->body);
    free(path);
    json_t *j = json_incref(r->json);
    h_resp_free(r);
    return j;
}

struct reply_wait {
    long long in_id, reply_id;
};

static int reply_queued(void *arg)
{
    struct reply_wait *w = arg;
    char *v = h_sql_str(G.conninfo, "SELECT id::text FROM messages WHERE idempotency_key = 'flow:%lld:0'",
                        w->in_id);
    w->reply_id = v ? strtoll(v, NULL, 10) : 0;
    free(v);
    return w->reply_id > 0;
}

static void test_inbound_and_list_direction(void **state)
{
    (void)state;
    long long id = inbound("from=0612345678&text=AIDE");
    json_t *l = list(G.key_a, "?direction=in");
    json_t *msgs = json_object_get(l, "messages");
    int found = 0;
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m)
    {
        const char *dir = h_jstr(m, "direction");
        H_ASSERT(dir && !strcmp(dir, "in"), "direction=in lists a message with direction %s",
                 dir ? dir : "(none)");
        if (h_jint(m, "id") == id) {
            found = 1;
            const char *from = h_jstr(m, "from");
            const char *text = h_jstr(m, "text");
            const char *st = h_jstr(m, "status");
            H_ASSERT(from && !strcmp(from, "+33612345678"), "inbound from: expected "
                                                            "+33612345678, got %s",
                     from ? from : "(none)");
            H_ASSERT(text && !strcmp(text, "AIDE"), "inbound text: expected AIDE, got %s",
                     text ? text : "(none)");
            H_ASSERT(st && !strcmp(st, "received"), "inbound status: expected received, got %s",
                     st ? st : "(none)");
        }
    }
    H_ASSERT(found, "the inbound message %lld is not in GET /api/v1/messages?direction=in", id);
    json_decref(l);
    /* direction=out does not show it */
    l = list(G.key_a, "?direction=out&limit=200");
    json_array_foreach(json_object_get(l, "messages"), i, m)
    {
        H_ASSERT(h_jint(m, "id") != id, "direction=out lists the inbound message %lld", id);
        const char *dir = h_jstr(m, "direction");
        H_ASSERT(dir && !strcmp(dir, "out"), "direction=out lists a message with direction %s",
                 dir ? dir : "(none)");
    }
    json_decref(l);
    struct h_resp *r = h_get(G.d, "/api/v1/messages?direction=sideways", G.key_a);
    h_expect_error(r, 400, "bad_parameter", "direction=sideways");
    h_resp_free(r);
    /* AIDE is a keyword: the help reply follows the inbound message (queued just after its
     * 200); once it is there, the newest message first: the reply, then the inbound */
    struct reply_wait rw = {.in_id = id};
    H_ASSERT(h_poll(10, 100, reply_queued, &rw),
             "the automatic reply to AIDE (message %lld) should be queued within 10 s", id);
    l = list(G.key_a, "");
    long long prev = 0;
    json_array_foreach(json_object_get(l, "messages"), i, m)
    {
        long long mid = h_jint(m, "id");
        H_ASSERT(i == 0 || mid < prev, "the list is not newest first: %lld after %lld", mid, prev);
        if (i == 0) {
            const char *dir = h_jstr(m, "direction"), *to = h_jstr(m, "to");
            H_ASSERT(mid == rw.reply_id && dir && !strcmp(dir, "out") && to &&
                         !strcmp(to, "+33612345678"),
                     "the newest message should be the reply %lld to +33612345678, got %lld "
                     "(%s to %s)",
                     rw.reply_id, mid, dir ? dir : "?", to ? to : "?");
        }
        if (i == 1)
            H_ASSERT(mid == id, "the second newest should be the inbound %lld, got %lld", id, mid);
        prev = mid;
    }
    json_decref(l);
}

static void test_list_to_filter(void **state)
{
    (void)state;
    long long a = send_ok(G.key_a, "+33698765401", "Filtre un", NULL, 1, "gsm7");
    long long b = send_ok(G.key_a, "+33698765402", "Filtre deux", NULL, 1, "gsm7");
    long long c = send_ok(G.key_a, "06 98 76 54 01", "Filtre trois", NULL, 1, "gsm7");
    json_t *l = list(G.key_a, "?to=0698765401");
    json_t *msgs = json_object_get(l, "messages");
    H_ASSERT(json_array_size(msgs) == 2, "to=0698765401: expected 2 messages, got %zu",
             json_array_size(msgs));
    H_ASSERT(h_jint(json_array_get(msgs, 0), "id") == c && h_jint(json_array_get(msgs, 1), "id") == a,
             "to=0698765401: expected ids %lld, %lld (newest first)", c, a);
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m)
    {
        const char *to = h_jstr(m, "to");
        H_ASSERT(to && !strcmp(to, "+33698765401"), "to filter returned a message to %s",
                 to ? to : "(none)");
        H_ASSERT(h_jint(m, "id") != b, "to filter returned the message to another number");
    }
    json_decref(l);
    struct h_resp *r = h_get(G.d, "/api/v1/messages?to=hello", G.key_a);
    h_expect_error(r, 422, "invalid_phone", "to=hello in the list");
    h_resp_free(r);
}

static void test_list_pagination(void **state)
{
    (void)state;
    /* add a few so that there are several pages whatever ran before */
    for (int k = 0; k < 5; k++)
        send_ok(G.key_a, "+33698765410", "Page", NULL, 1, "gsm7");
    char *want = h_sql_rows(G.conninfo,
                            "SELECT id FROM messages WHERE centre_id = %lld ORDER BY id DESC",
                            G.centre_a);
    long long total = h_sql_int(G.conninfo, "SELECT count(*) FROM messages WHERE centre_id = %lld",
                                G.centre_a);
    size_t cap = 64 * (size_t)total + 64, n = 0;
    char *got = malloc(cap);
    got[0] = '\0';
    long long before = 0, seen = 0;
    int pages = 0;
    for (;;) {
        char q[64];
        if (before)
            snprintf(q, sizeof q, "?limit=2&before=%lld", before);
        else
            snprintf(q, sizeof q, "?limit=2");
        json_t *l = list(G.key_a, q);
        json_t *msgs = json_object_get(l, "messages");
        H_ASSERT(json_array_size(msgs) <= 2, "limit=2 returned %zu messages",
                 json_array_size(msgs));
        size_t i;
        json_t *m;
        json_array_foreach(msgs, i, m)
        {
            n += (size_t)snprintf(got + n, cap - n, "%s%lld", seen ? "; " : "", h_jint(m, "id"));
            seen++;
        }
        pages++;
        json_t *nb = json_object_get(l, "next_before");
        H_ASSERT(pages <= total + 2, "pagination does not end after %d pages", pages);
        if (!json_is_integer(nb)) {
            H_ASSERT(json_is_null(nb) || !nb, "next_before is neither an id nor null");
            json_decref(l);
            break;
        }
        long long next = (long long)json_integer_value(nb);
        H_ASSERT(json_array_size(msgs) == 2 &&
                     next == h_jint(json_array_get(msgs, 1), "id"),
                 "next_before %lld should be the last id of a full page", next);
        before = next;
        json_decref(l);
    }
    H_ASSERT(seen == total, "pagination saw %lld messages, the centre has %lld", seen, total);
    H_ASSERT(!strcmp(got, want), "pagination (limit=2) did not cover every message exactly once "
                                 "newest first:\n  got  %s\n  want %s",
             got, want);
    h_log("pagination: %lld messages in %d pages of 2", seen, pages);
    free(got);
    free(want);
    struct h_resp *r = h_get(G.d, "/api/v1/messages?limit=0", G.key_a);
    h_expect_error(r, 400, "bad_parameter", "limit=0");
    h_resp_free(r);
    r = h_get(G.d, "/api/v1/messages?limit=201", G.key_a);
    h_expect_error(r, 400, "bad_parameter", "limit=201");
    h_resp_free(r);
}

static void test_inbound_duplicate_id(void **state)
{
    (void)state;
    char *form = h_printf("from=0612345680&text=STOP%%20INFO&id=sim-in-%d", (int)getpid());
    long long id1 = inbound(form);
    long long id2 = inbound(form);
    H_ASSERT(id1 == id2, "the same inbound id twice: expected the same message id, got %lld and "
                         "%lld",
             id1, id2);
    long long rows = h_sql_int(G.conninfo,
                               "SELECT count(*) FROM messages WHERE direction = 'in' AND "
                               "phone = '+33612345680'");
    H_ASSERT(rows == 1, "the same inbound id twice: expected 1 row, got %lld", rows);
    json_t *l = list(G.key_a, "?direction=in&to=0612345680");
    size_t n = json_array_size(json_object_get(l, "messages"));
    H_ASSERT(n == 1, "the same inbound id twice: the list shows %zu messages from 0612345680, "
                     "expected 1",
             n);
    json_decref(l);
    char *text = h_sql_str(G.conninfo, "SELECT body FROM messages WHERE id = %lld", id1);
    H_ASSERT(text && !strcmp(text, "STOP INFO"), "inbound text: expected 'STOP INFO', got %s",
             text);
    free(text);
    free(form);
    /* without an id, two posts are two messages */
    long long a = inbound("from=0612345681&text=Bonjour");
    long long b = inbound("from=0612345681&text=Bonjour");
    H_ASSERT(a != b, "two inbound messages without an id got the same message id %lld", a);
    /* missing fields */
    struct h_resp *r = h_post_form(G.d, "/providers/sim/inbound", "text=hello");
    h_expect_error(r, 400, "missing_field", "inbound without 'from'");
    h_resp_free(r);
}

/* ------------------------------------------------------------------ 17. /metrics, /healthz */

static void test_metrics_and_healthz(void **state)
{
    (void)state;
    struct h_resp *r = h_get(G.d, "/metrics", NULL);
    H_ASSERT(r->status == 200, "GET /metrics: expected 200, got %ld", r->status);
    H_ASSERT(!strncmp(r->content_type, "text/plain", 10),
             "GET /metrics: expected a text/plain content type, got '%s'", r->content_type);
    H_ASSERT(strstr(r->body, "# TYPE passerelle_message_transitions_total counter"),
             "/metrics has no TYPE line for passerelle_message_transitions_total");
    const char *needle = "passerelle_message_transitions_total{state=\"delivered\"} ";
    const char *p = strstr(r->body, needle);
    H_ASSERT(p, "/metrics has no %s line:\n%s", needle, r->body);
    char *end;
    long long v = strtoll(p + strlen(needle), &end, 10);
    H_ASSERT(end != p + strlen(needle) && (*end == '\n' || *end == '\0'),
             "the delivered counter is not an integer");
    H_ASSERT(v >= 1, "passerelle_message_transitions_total{state=\"delivered\"} = %lld, expected "
                     ">= 1 after deliveries",
             v);
    h_log("metrics: delivered transitions = %lld", v);
    h_resp_free(r);

    r = h_get(G.d, "/healthz", NULL);
    H_ASSERT(r->status == 200, "GET /healthz: expected 200, got %ld", r->status);
    const char *st = h_jstr(r->json, "status");
    const char *db = h_jstr(r->json, "db");
    const char *node = h_jstr(r->json, "node");
    const char *ver = h_jstr(r->json, "version");
    H_ASSERT(st && !strcmp(st, "ok") && db && !strcmp(db, "up"),
             "/healthz: expected status ok and db up, got %s", r->body);
    H_ASSERT(node && !strcmp(node, "node-a"), "/healthz node: expected node-a, got %s", r->body);
    H_ASSERT(ver && !strcmp(ver, PASSERELLE_VERSION), "/healthz version: expected %s, got %s",
             PASSERELLE_VERSION, r->body);
    h_resp_free(r);
}

/* ------------------------------------------------------------------ clean shutdown */

static void test_clean_shutdown(void **state)
{
    (void)state;
    h_daemon_stop(G.d); /* asserts exit status 0 and no sanitizer report */
}

/* ------------------------------------------------------------------ 18. command line */

static void test_version_and_check_config(void **state)
{
    (void)state;
    char *out = NULL, *err = NULL;
    char *argv_v[] = {(char *)h_bin_gatewayd(), "--version", NULL};
    int rc = h_run(argv_v, &out, &err, 30);
    char *want = h_printf("gatewayd (Passerelle) %s\n", PASSERELLE_VERSION);
    H_ASSERT(rc == 0 && !strcmp(out, want), "gatewayd --version: expected exit 0 and '%s', got "
                                            "exit %d, '%s' %s",
             want, rc, out, err);
    free(want);
    free(out);
    free(err);

    /* a good file */
    char *ci = h_conninfo_with_db(h_test_pg(), "postgres");
    struct h_config c = {.port = h_free_port(), .conninfo = ci};
    char *good = h_config_write(&c, "good.ini");
    char *argv_g[] = {(char *)h_bin_gatewayd(), "--check-config", good, NULL};
    rc = h_run(argv_g, &out, &err, 30);
    H_ASSERT(rc == 0 && strstr(out, "configuration OK"),
             "gatewayd --check-config on a good file: expected exit 0 and 'configuration OK', got "
             "exit %d, stdout '%s', stderr '%s'",
             rc, out, err);
    free(out);
    free(err);

    /* a bad value on line 4 */
    char *bad = h_write_file("bad.ini", "[gateway]\n"
                                        "listen = 127.0.0.1:8080\n"
                                        "node_id = bad\n"
                                        "max_body_bytes = 12\n"
                                        "[route sim]\n"
                                        "driver = sim\n");
    char *argv_b[] = {(char *)h_bin_gatewayd(), "--check-config", bad, NULL};
    rc = h_run(argv_b, &out, &err, 30);
    char *where = h_printf("%s:4:", bad);
    H_ASSERT(rc == 1, "gatewayd --check-config on a bad file: expected exit 1, got %d (stderr %s)",
             rc, err);
    H_ASSERT(strstr(err, where) && strstr(err, "max_body_bytes"),
             "gatewayd --check-config: the message should name %s and max_body_bytes, got '%s'",
             where, err);
    free(where);
    free(out);
    free(err);

    /* an unknown key in a section, line 3 */
    char *bad2 = h_write_file("bad2.ini", "[gateway]\n"
                                          "listen = 127.0.0.1:8080\n"
                                          "colour = blue\n"
                                          "[route sim]\n"
                                          "driver = sim\n");
    char *argv_b2[] = {(char *)h_bin_gatewayd(), "--check-config", bad2, NULL};
    rc = h_run(argv_b2, &out, &err, 30);
    where = h_printf("%s:3:", bad2);
    H_ASSERT(rc == 1 && strstr(err, where) && strstr(err, "colour"),
             "gatewayd --check-config with an unknown key on line 3: expected exit 1 naming %s and "
             "'colour', got exit %d, '%s'",
             where, rc, err);
    free(where);
    free(out);
    free(err);

    /* a route option the sim driver does not know */
    char *bad3 = h_write_file("bad3.ini", "[gateway]\n"
                                          "listen = 127.0.0.1:8080\n"
                                          "[route sim]\n"
                                          "driver = sim\n"
                                          "latency = 20\n");
    char *argv_b3[] = {(char *)h_bin_gatewayd(), "--check-config", bad3, NULL};
    rc = h_run(argv_b3, &out, &err, 30);
    H_ASSERT(rc == 1 && strstr(err, "latency"),
             "gatewayd --check-config with an unknown sim option: expected exit 1 naming "
             "'latency', got exit %d, '%s'",
             rc, err);
    free(out);
    free(err);
    free(good);
    free(bad);
    free(bad2);
    free(bad3);
    free(ci);
}

/* ------------------------------------------------------------------ 19-20. failing routes */

struct solo {
    char *conninfo;
    struct h_daemon *d;
    char *key;
};

static struct solo solo_start(const char *name, const char *route_sim, const char *outbox_add)
{
    struct solo s;
    s.conninfo = h_db_create(h_test_pg(), name, NULL);
    int port = h_free_port();
    struct h_config c = {.port = port, .conninfo = s.conninfo, .route_sim = route_sim,
                         .outbox_add = outbox_add};
    char *file = h_printf("%s.ini", name);
    char *config = h_config_write(&c, file);
    h_centre_create(config, "Centre");
    s.key = h_key_create(config, "Centre");
    s.d = h_daemon_start(name, config, port);
    free(file);
    free(config);
    return s;
}

static long long solo_send(struct solo *s, const char *to)
{
    char *body = json_body(to, "Bonjour", NULL);
    struct h_resp *r = h_post_json(s->d, "/api/v1/messages", s->key, body);
    free(body);
    H_ASSERT(r->status == 202, "%s: POST expected 202, got %ld %s", s->d->name, r->status,
             r->body);
    long long id = h_jint(r->json, "id");
    h_resp_free(r);
    return id;
}

static void test_permanent_failure(void **state)
{
    (void)state;
    struct solo s = solo_start("api_perm", "latency_ms = 20\ndlr_delay_ms = 100\n"
                                           "perm_failure_rate = 1\n",
                               NULL);
    long long id = solo_send(&s, "+33612345690");
    json_t *m = wait_status(s.d, s.conninfo, s.key, id, "failed", DELIVERY_TIMEOUT_S);
    const char *code = h_jstr(m, "last_error.code");
    const char *msg = h_jstr(m, "last_error.message");
    H_ASSERT(code && !strcmp(code, "sim_permanent") && msg && *msg,
             "a permanent failure: expected last_error {code: sim_permanent, message}, got %s",
             json_dumps(m, JSON_COMPACT));
    H_ASSERT(h_jint(m, "attempt_count") == 1, "a permanent failure is not retried: attempt_count "
                                              "should be 1");
    char *hist = history_of(m);
    H_ASSERT(!strcmp(hist, "queued,sending,failed"), "history: expected queued,sending,failed, got "
                                                     "%s",
             hist);
    free(hist);
    json_decref(m);
    char *att = h_sql_rows(s.conninfo,
                           "SELECT outcome, error_code FROM attempts WHERE message_id = %lld "
                           "ORDER BY id",
                           id);
    H_ASSERT(!strcmp(att, "permfail|sim_permanent"), "attempts: expected one "
                                                     "permfail|sim_permanent, got %s",
             att);
    free(att);
    H_ASSERT(h_sql_int(s.conninfo, "SELECT count(*) FROM outbox_queue") == 0,
             "a failed message must leave outbox_queue");
    h_daemon_stop(s.d);
    h_daemon_free(s.d);
    free(s.key);
    free(s.conninfo);
}

static void test_temporary_failure_max_attempts(void **state)
{
    (void)state;
    struct solo s = solo_start("api_temp", "latency_ms = 20\ndlr_delay_ms = 100\n"
                                           "temp_failure_rate = 1\n",
                               "max_attempts = 3\n");
    long long id = solo_send(&s, "+33612345691");
    json_t *m = wait_status(s.d, s.conninfo, s.key, id, "failed", DELIVERY_TIMEOUT_S);
    const char *code = h_jstr(m, "last_error.code");
    H_ASSERT(code && !strcmp(code, "sim_temporary"),
             "after the last temporary failure: expected last_error.code sim_temporary, got %s",
             json_dumps(m, JSON_COMPACT));
    H_ASSERT(h_jint(m, "attempt_count") == 3, "max_attempts = 3: attempt_count should be 3, got "
                                              "%lld",
             h_jint(m, "attempt_count"));
    char *hist = history_of(m);
    H_ASSERT(!strcmp(hist, "queued,sending,queued,sending,queued,sending,failed"),
             "history: expected three rounds of queued,sending then failed, got %s", hist);
    free(hist);
    json_decref(m);
    /* nothing more happens after the final failure */
    h_sleep_ms(1500);
    char *att = h_sql_rows(s.conninfo,
                           "SELECT outcome FROM attempts WHERE message_id = %lld ORDER BY id", id);
    H_ASSERT(!strcmp(att, "tempfail; tempfail; tempfail"),
             "max_attempts = 3: expected exactly 3 tempfail attempts, got %s", att);
    free(att);
    char *st = h_sql_str(s.conninfo, "SELECT status FROM messages WHERE id = %lld", id);
    H_ASSERT(st && !strcmp(st, "failed"), "the message should stay failed, it is %s", st);
    free(st);
    H_ASSERT(h_sql_int(s.conninfo, "SELECT count(*) FROM outbox_queue") == 0,
             "a failed message must leave outbox_queue");
    h_daemon_stop(s.d);
    h_daemon_free(s.d);
    free(s.key);
    free(s.conninfo);
}

/* ------------------------------------------------------------------ callback secret and allow-list */

static long inbound_status(struct solo *s, const char *path)
{
    char *url = h_printf("%s%s", s->d->url, path);
    const char *form = "from=0612345678&text=AIDE";
    struct h_resp *r = h_http("POST", url, NULL, "application/x-www-form-urlencoded", form,
                              strlen(form));
    long st = r->status;
    h_resp_free(r);
    free(url);
    return st;
}

static void test_callback_secret(void **state)
{
    (void)state;
    struct solo s = solo_start("cbsecret",
                               "callback_secret = Sekr3t-callback-2026\n"
                               "callback_allow = 127.0.0.0/8, ::1\n",
                               NULL);
    struct h_checks ck = {0};
    long none = inbound_status(&s, "/providers/sim/inbound");
    long wrong = inbound_status(&s, "/providers/sim/inbound?secret=Sekr3t-callback-2025");
    long good = inbound_status(&s, "/providers/sim/inbound?secret=Sekr3t-callback-2026");
    h_check(&ck, none == 401, "a callback without the route's secret is refused: %ld", none);
    h_check(&ck, wrong == 401, "a callback with a wrong secret is refused: %ld", wrong);
    h_check(&ck, good == 200, "a callback with the secret (from an allowed address) works: %ld",
            good);
    long long stored = h_sql_int(s.conninfo, "SELECT count(*) FROM messages WHERE direction = 'in'");
    h_check(&ck, stored == 1, "only the authenticated callback was stored: %lld", stored);
    h_daemon_stop_check(s.d, &ck);
    h_daemon_free(s.d);
    free(s.key);
    free(s.conninfo);
    h_checks_done(&ck, "callback secret");

    /* an allow-list that does not contain the loopback address */
    struct solo t = solo_start("cballow", "callback_allow = 192.0.2.0/24\n", NULL);
    struct h_checks ck2 = {0};
    long denied = inbound_status(&t, "/providers/sim/inbound");
    h_check(&ck2, denied == 403, "a callback from an address outside callback_allow: %ld", denied);
    h_daemon_stop_check(t.d, &ck2);
    h_daemon_free(t.d);
    free(t.key);
    free(t.conninfo);
    h_checks_done(&ck2, "callback allow-list");
}

int main(int argc, char **argv)
{
    h_init("api", argc, argv);
    const struct CMUnitTest shared[] = {
        cmocka_unit_test(test_send_delivered_with_history),
        cmocka_unit_test(test_phone_stored_e164),
        cmocka_unit_test(test_french_text_transliterated_to_gsm7),
        cmocka_unit_test(test_emoji_stays_ucs2),
        cmocka_unit_test(test_idempotency),
        cmocka_unit_test(test_bad_requests_400),
        cmocka_unit_test(test_unauthorized_401),
        cmocka_unit_test(test_not_found_404),
        cmocka_unit_test(test_body_too_large_413),
        cmocka_unit_test(test_unprocessable_422),
        cmocka_unit_test(test_empty_phone_422),
        cmocka_unit_test(test_opted_out_422),
        cmocka_unit_test(test_scheduled_send),
        cmocka_unit_test(test_inbound_and_list_direction),
        cmocka_unit_test(test_list_to_filter),
        cmocka_unit_test(test_list_pagination),
        cmocka_unit_test(test_inbound_duplicate_id),
        cmocka_unit_test(test_metrics_and_healthz),
        cmocka_unit_test(test_clean_shutdown),
    };
    const struct CMUnitTest own[] = {
        cmocka_unit_test(test_version_and_check_config),
        cmocka_unit_test(test_permanent_failure),
        cmocka_unit_test(test_temporary_failure_max_attempts),
        cmocka_unit_test(test_callback_secret),
    };
    int failures = cmocka_run_group_tests_name("api (one daemon)", shared, group_setup,
                                               group_teardown);
    failures += cmocka_run_group_tests_name("api (own daemons)", own, NULL, NULL);
    h_exit(failures);
}
