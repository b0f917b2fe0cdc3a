/* Unit tests of the send-request parser (gatewayd/gw_send.c): every rejection the API makes
 * before touching the database, and what an accepted request becomes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "gw_config.h"
#include "gw_send.h"
#include "prov_phone.h"

static struct gw_config *cfg;

static int normalize(void *arg, const char *in, char *out, size_t outlen)
{
    (void)arg;
    return prov_phone_normalize(in, "FR", out, outlen);
}

static int setup(void **state)
{
    (void)state;
    char err[256];
    return gw_config_parse("[route sim]\ndriver = sim\n", &cfg, err, sizeof err);
}

static int teardown(void **state)
{
    (void)state;
    gw_config_free(cfg);
    return 0;
}

static void expect_reject(const char *body, int status, const char *code, const char *in_msg)
{
    struct gw_send_req r;
    const char *c = NULL;
    char msg[512] = "";
    int st = gw_send_parse(body, strlen(body), cfg, normalize, NULL, &r, &c, msg, sizeof msg);
    if (st != status || !c || strcmp(c, code) != 0 || !strstr(msg, in_msg))
        fail_msg("%s → %d %s '%s', expected %d %s containing '%s'", body, st, c ? c : "(null)",
                 msg, status, code, in_msg);
    assert_null(r.text);
    assert_null(r.idem);
}

static struct gw_send_req accept(const char *body)
{
    struct gw_send_req r;
    const char *c = NULL;
    char msg[512] = "";
    int st = gw_send_parse(body, strlen(body), cfg, normalize, NULL, &r, &c, msg, sizeof msg);
    if (st != 0)
        fail_msg("%s rejected: %d %s %s", body, st, c, msg);
    return r;
}

static void test_shape_errors(void **state)
{
    (void)state;
    expect_reject("{\"to\":", 400, "malformed_json", "line 1");
    expect_reject("[1,2]", 400, "malformed_json", "JSON object");
    expect_reject("{\"text\":\"hi\"}", 400, "missing_field", "'to'");
    expect_reject("{\"to\":\"0612345678\"}", 400, "missing_field", "'text'");
    expect_reject("{\"to\":\"0612345678\",\"text\":\"hi\",\"txt\":1}", 400, "unknown_field",
                  "'txt'");
    expect_reject("{\"to\":612345678,\"text\":\"hi\"}", 400, "bad_field_type", "strings");
    expect_reject("{\"to\":\"0612345678\",\"text\":\"a\",\"text\":\"b\"}", 400, "malformed_json",
                  "duplicate");
}

static void test_value_errors(void **state)
{
    (void)state;
    expect_reject("{\"to\":\"01 23 45 67 89\",\"text\":\"hi\"}", 422, "invalid_phone", "mobile");
    expect_reject("{\"to\":\"hello\",\"text\":\"hi\"}", 422, "invalid_phone", "mobile");
    expect_reject("{\"to\":\"0612345678\",\"text\":\"  \\n\"}", 422, "empty_text", "empty");
    /* jansson refuses \u0000 itself: a NUL never reaches the text checks */
    expect_reject("{\"to\":\"0612345678\",\"text\":\"a\\u0000b\"}", 400, "malformed_json",
                  "u0000");
    char big[2000];
    int n = snprintf(big, sizeof big, "{\"to\":\"0612345678\",\"text\":\"");
    for (int i = 0; i < 919; i++) /* 919 GSM-7 characters: 7 segments */
        big[n++] = 'a';
    snprintf(big + n, sizeof big - (size_t)n, "\"}");
    expect_reject(big, 422, "text_too_long", "7 SMS segments");
    expect_reject("{\"to\":\"0612345678\",\"text\":\"hi\",\"send_at\":\"demain\"}", 422,
                  "invalid_send_at", "RFC 3339");
    expect_reject("{\"to\":\"0612345678\",\"text\":\"hi\",\"send_at\":\"2999-01-01T00:00:00Z\"}",
                  422, "invalid_send_at", "400 days");
    expect_reject("{\"to\":\"0612345678\",\"text\":\"hi\",\"idempotency_key\":\"\"}", 422,
                  "invalid_idempotency_key", "1 to 200");
}

static void test_accepted(void **state)
{
    (void)state;
    struct gw_send_req r = accept("{\"to\":\"06 12 34 56 78\",\"text\":\"Fête « Noël »\","
                                  "\"send_at\":\"2026-12-01T10:00:00+01:00\","
                                  "\"idempotency_key\":\"k-1\"}");
    assert_string_equal(r.phone, "+33612345678");
    assert_string_equal(r.text, "Fete \" Noel \""); /* transliterated: now GSM-7 */
    assert_string_equal(r.encoding, "gsm7");
    assert_int_equal(r.segments, 1);
    assert_int_equal(r.send_at, 1796115600);
    assert_string_equal(r.idem, "k-1");
    gw_send_req_clear(&r);

    /* an emoji cannot be transliterated: the text stays as written, in UCS-2 */
    r = accept("{\"to\":\"+32 470 12 34 56\",\"text\":\"Fête 🎉\",\"idempotency_key\":null}");
    assert_string_equal(r.phone, "+32470123456");
    assert_string_equal(r.text, "Fête 🎉");
    assert_string_equal(r.encoding, "ucs2");
    assert_int_equal(r.segments, 1);
    assert_null(r.idem);
    assert_int_equal(r.send_at, 0);
    gw_send_req_clear(&r);
}

static void test_transliteration_can_be_off(void **state)
{
    (void)state;
    cfg->transliterate = 0;
    struct gw_send_req r = accept("{\"to\":\"0756789012\",\"text\":\"Fête\"}");
    assert_string_equal(r.text, "Fête");
    assert_string_equal(r.encoding, "ucs2");
    gw_send_req_clear(&r);
    cfg->transliterate = 1;
}

/* Error messages go into JSON answers: they must be valid UTF-8 even when they quote bytes of
 * the input (jansson's syntax errors) or are cut short inside a character. */
static void test_messages_stay_utf8(void **state)
{
    (void)state;
    static const char *const bodies[] = {
        "{\"text\":\"\\\xc3\xa9\"}",                       /* invalid escape before é */
        "{\"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\":1}", /* unknown field */
    };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        struct gw_send_req r;
        const char *c = NULL;
        char msg[24]; /* small: the message is cut */
        int st = gw_send_parse(bodies[i], strlen(bodies[i]), cfg, normalize, NULL, &r, &c, msg,
                               sizeof msg);
        assert_int_equal(st, 400);
        json_t *j = json_string(msg); /* NULL when msg is not valid UTF-8 */
        assert_non_null(j);
        json_decref(j);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shape_errors),
        cmocka_unit_test(test_value_errors),
        cmocka_unit_test(test_accepted),
        cmocka_unit_test(test_transliteration_can_be_off),
        cmocka_unit_test(test_messages_stay_utf8),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
