/* Unit tests of the partner webhooks' pure half (gatewayd/gw_partners_parse.c): the signature
 * headers (a known HMAC vector, the 5-minute window, every malformed header) and the alert
 * and job bodies (every refusal before the database, and what an accepted body becomes). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "gw_config.h"
#include "gw_partners_parse.h"

#define NOW 1767225600LL /* 2026-01-01T00:00:00Z */
#define BODY "{\"topic\":\"sortie\",\"text\":\"Bonjour\"}"
/* HMAC-SHA256("s3cr3t", "1767225600." BODY), computed with Python's hmac module */
#define SIG "v1=423823cb5b9c3cc3ac91ddeab0a1ce7709403d16a2aa6494ccbb8c7601932627"

static struct gw_config *cfg;
static json_t *topics;

static int setup(void **state)
{
    (void)state;
    char err[256];
    topics = json_pack("[s,s]", "sortie", "meteo");
    return gw_config_parse("[route sim]\ndriver = sim\n", &cfg, err, sizeof err);
}

static int teardown(void **state)
{
    (void)state;
    gw_config_free(cfg);
    json_decref(topics);
    return 0;
}

static const char *why_of(const char *key, const char *ts, const char *sig, const char *body,
                          int64_t now)
{
    const char *why = NULL;
    if (gw_partners_sig_check(key, ts, sig, body, strlen(body), "s3cr3t", 6, now, &why) == 0)
        return "ok";
    return why;
}

static void test_signature(void **state)
{
    (void)state;
    assert_string_equal(why_of("mairie-1", "1767225600", SIG, BODY, NOW), "ok");
    /* the window is 300 s either way, bounds included */
    assert_string_equal(why_of("mairie-1", "1767225600", SIG, BODY, NOW + 300), "ok");
    assert_string_equal(why_of("mairie-1", "1767225600", SIG, BODY, NOW - 300), "ok");
    assert_string_equal(why_of("mairie-1", "1767225600", SIG, BODY, NOW + 301),
                        "timestamp too old");
    assert_string_equal(why_of("mairie-1", "1767225600", SIG, BODY, NOW - 301),
                        "timestamp in the future");
    /* the hex is read in either case */
    char upper[68];
    snprintf(upper, sizeof upper, "v1=%s", SIG + 3);
    for (char *p = upper + 3; *p; p++)
        if (*p >= 'a' && *p <= 'f')
            *p = (char)(*p - 32);
    assert_string_equal(why_of("mairie-1", "1767225600", upper, BODY, NOW), "ok");

    assert_string_equal(why_of("mairie-1", "1767225600", SIG, "{\"topic\":\"sortie\"}", NOW),
                        "wrong signature");
    assert_string_equal(why_of(NULL, "1767225600", SIG, BODY, NOW), "no X-Passerelle-Key");
    assert_string_equal(why_of("mairie 1", "1767225600", SIG, BODY, NOW), "malformed key id");
    char key64[65];
    memset(key64, 'k', 64);
    key64[64] = '\0';
    assert_string_equal(why_of(key64, "1767225600", SIG, BODY, NOW), "malformed key id");
    assert_string_equal(why_of("mairie-1", NULL, SIG, BODY, NOW), "no X-Passerelle-Timestamp");
    assert_string_equal(why_of("mairie-1", "-1767225600", SIG, BODY, NOW), "malformed timestamp");
    assert_string_equal(why_of("mairie-1", "1767225600.5", SIG, BODY, NOW), "malformed timestamp");
    assert_string_equal(why_of("mairie-1", "1767225600", NULL, BODY, NOW),
                        "no X-Passerelle-Signature");
    assert_string_equal(why_of("mairie-1", "1767225600", "v2=423823cb", BODY, NOW),
                        "malformed signature");
    char shortsig[67];
    memcpy(shortsig, SIG, 66);
    shortsig[66] = '\0';
    assert_string_equal(why_of("mairie-1", "1767225600", shortsig, BODY, NOW),
                        "malformed signature");

    /* the key id is kept for the log when a later header fails */
    struct gw_partner_sig h;
    const char *why;
    assert_int_equal(gw_partners_sig_parse("mairie-1", "x", SIG, NOW, &h, &why), -1);
    assert_string_equal(h.key_id, "mairie-1");
}

static int alert(const char *body, struct gw_partner_alert *a, struct gw_partner_verdict *v)
{
    return gw_partners_alert_parse(body, strlen(body), topics, cfg, NOW, a, v);
}

static int job(const char *body, struct gw_partner_job *j, struct gw_partner_verdict *v)
{
    return gw_partners_job_parse(body, strlen(body), cfg, NOW, j, v);
}

static void expect_alert_refused(const char *body, int status, const char *code, const char *in)
{
    struct gw_partner_alert a;
    struct gw_partner_verdict v;
    int st = alert(body, &a, &v);
    if (st != status || strcmp(v.code, code) || !strstr(v.msg, in))
        fail_msg("%s → %d %s '%s', expected %d %s containing '%s'", body, st, st ? v.code : "-",
                 st ? v.msg : "", status, code, in);
    assert_null(a.text);
}

static void test_alert(void **state)
{
    (void)state;
    struct gw_partner_alert a;
    struct gw_partner_verdict v;
    assert_int_equal(alert("{\"topic\":\"Sortie\",\"text\":\"Fête « Noël »\","
                           "\"expires_at\":\"2026-06-01T18:00:00+02:00\",\"urgent\":true}",
                           &a, &v),
                     0);
    assert_string_equal(a.topic, "sortie");
    assert_string_equal(a.text, "Fete \" Noel \""); /* transliterated: GSM-7 */
    assert_string_equal(a.expires_at, "2026-06-01T16:00:00Z");
    assert_int_equal(a.urgent, 1);
    gw_partner_alert_clear(&a);
    assert_int_equal(alert("{\"topic\":\"meteo\",\"text\":\"Vent\",\"expires_at\":null}", &a, &v),
                     0);
    assert_string_equal(a.expires_at, "");
    assert_int_equal(a.urgent, 0);
    gw_partner_alert_clear(&a);

    expect_alert_refused("{\"topic\":\"sortie\",", 400, "malformed_json", "line 1");
    expect_alert_refused("[\"sortie\"]", 400, "malformed_json", "JSON object");
    expect_alert_refused("{\"topic\":\"a\",\"topic\":\"b\",\"text\":\"x\"}", 400, "malformed_json",
                         "duplicate");
    expect_alert_refused("{\"text\":\"Bonjour\"}", 422, "missing_field", "'topic'");
    expect_alert_refused("{\"topic\":\"sortie\",\"text\":\" \\n\"}", 422, "empty_field", "'text'");
    expect_alert_refused("{\"topic\":\"sortie\",\"text\":\"x\",\"urgent\":\"oui\"}", 422,
                         "bad_field_type", "true or false");
    expect_alert_refused("{\"topic\":\"sortie\",\"text\":\"x\",\"to\":\"06\"}", 422,
                         "unknown_field", "'to' (expected topic, text, expires_at, urgent)");
    expect_alert_refused("{\"topic\":\"travaux\",\"text\":\"x\"}", 403, "topic_not_allowed",
                         "allowed: [\"sortie\",\"meteo\"]");
    expect_alert_refused("{\"topic\":\"sortie\",\"text\":\"x\",\"expires_at\":\"demain\"}", 422,
                         "invalid_expires_at", "RFC 3339");
    expect_alert_refused(
        "{\"topic\":\"sortie\",\"text\":\"x\",\"expires_at\":\"2025-12-31T23:59:59Z\"}", 422,
        "invalid_expires_at", "in the past");
    expect_alert_refused(
        "{\"topic\":\"sortie\",\"text\":\"x\",\"expires_at\":\"2027-02-05T00:00:01Z\"}", 422,
        "invalid_expires_at", "400 days");

    char body[2000];
    int n = snprintf(body, sizeof body, "{\"topic\":\"");
    for (int i = 0; i < 128; i++)
        body[n++] = 's';
    snprintf(body + n, sizeof body - (size_t)n, "\",\"text\":\"x\"}");
    expect_alert_refused(body, 422, "unknown_topic", "no alert topic");
    n = snprintf(body, sizeof body, "{\"topic\":\"sortie\",\"text\":\"");
    for (int i = 0; i < 919; i++) /* 7 segments */
        body[n++] = 'a';
    snprintf(body + n, sizeof body - (size_t)n, "\"}");
    expect_alert_refused(body, 422, "text_too_long", "7 SMS segments");
}

/* Found by fuzz_webhook: refusal messages that were not valid UTF-8, which jansson then refused
 * to encode (the answer became a 500): a long unknown field name cut inside a character, and
 * jansson's own syntax error quoting the first byte of a character. */
static void test_messages_utf8(void **state)
{
    (void)state;
    char body[1200];
    int n = snprintf(body, sizeof body, "{\"");
    for (int i = 0; i < 250; i++)
        n += snprintf(body + n, sizeof body - (size_t)n, "é");
    snprintf(body + n, sizeof body - (size_t)n, "x\":1}");
    struct gw_partner_alert a;
    struct gw_partner_verdict v;
    assert_int_equal(alert(body, &a, &v), 422);
    assert_string_equal(v.code, "unknown_field");
    assert_true(strlen(v.msg) == sizeof v.msg - 1);
    json_t *s = json_string(v.msg);
    assert_non_null(s);
    json_decref(s);

    assert_int_equal(alert("{\"topic\":\"\\é\"}", &a, &v), 400);
    assert_string_equal(v.code, "malformed_json");
    assert_non_null(strstr(v.msg, "invalid escape"));
    s = json_string(v.msg);
    assert_non_null(s);
    json_decref(s);
}

static void test_job(void **state)
{
    (void)state;
    struct gw_partner_job j;
    struct gw_partner_verdict v;
    assert_int_equal(job("{\"external_id\":\"offre-2026:1.a~b_c\",\"title\":\"Plongeur (H/F)\","
                         "\"text\":\"Restaurant cherche plongeur\",\"category\":\"Cuisine\","
                         "\"contact\":\"04 12 34 56 78\","
                         "\"expires_at\":\"2026-02-01T01:00:00+01:00\"}",
                         &j, &v),
                     0);
    assert_string_equal(j.external_id, "offre-2026:1.a~b_c");
    assert_string_equal(j.title, "Plongeur (H/F)");
    assert_string_equal(j.category, "cuisine");
    assert_string_equal(j.contact, "04 12 34 56 78");
    assert_string_equal(j.expires_at, "2026-02-01T00:00:00Z");
    gw_partner_job_clear(&j);

    const char *tmpl = "{\"external_id\":\"%s\",\"title\":\"%s\",\"text\":\"x\","
                       "\"category\":\"%s\",\"contact\":\"%s\",\"expires_at\":\"%s\"}";
    char title[400] = "", cat[200] = "", body[1200];
    size_t tl = 0;
    for (int i = 0; i < 101; i++)
        tl += (size_t)snprintf(title + tl, sizeof title - tl, "%s", i < 100 ? "é" : "e");
    memset(cat, 'c', 128);
    struct {
        const char *ext, *title, *cat, *contact, *exp;
        const char *code;
    } bad[] = {
        {"offre x/1", "t", "c", "c", "2026-02-01T00:00:00Z", "invalid_external_id"},
        {"", "t", "c", "c", "2026-02-01T00:00:00Z", "empty_field"},
        {"o", title, "c", "c", "2026-02-01T00:00:00Z", "title_too_long"},
        {"o", "t", "c", title, "2026-02-01T00:00:00Z", "contact_too_long"},
        {"o", "t", cat, "c", "2026-02-01T00:00:00Z", "unknown_category"},
        {"o", "t", "c", "c", "2026-01-01T00:00:00Z", "invalid_expires_at"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(body, sizeof body, tmpl, bad[i].ext, bad[i].title, bad[i].cat, bad[i].contact,
                 bad[i].exp);
        int st = job(body, &j, &v);
        if (st != 422 || strcmp(v.code, bad[i].code))
            fail_msg("case %zu → %d %s, expected 422 %s", i, st, st ? v.code : "-", bad[i].code);
        assert_null(j.title);
    }
    /* exactly 100 characters (200 bytes) is fine */
    title[strlen(title) - 1] = '\0';
    snprintf(body, sizeof body, tmpl, "o", title, "c", "c", "2026-02-01T00:00:00Z");
    assert_int_equal(job(body, &j, &v), 0);
    gw_partner_job_clear(&j);
    assert_int_equal(job("{\"external_id\":\"o\",\"title\":\"t\",\"text\":\"x\",\"category\":\"c\","
                         "\"contact\":\"c\"}",
                         &j, &v),
                     422);
    assert_string_equal(v.code, "missing_field");
    assert_true(gw_partners_external_id_ok("a:b.c~d_e-f"));
    assert_false(gw_partners_external_id_ok("a/b"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_signature),
        cmocka_unit_test(test_alert),
        cmocka_unit_test(test_messages_utf8),
        cmocka_unit_test(test_job),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
