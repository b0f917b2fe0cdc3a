/*
 * test_isendpro_parse.c — unit tests for providers/prov_isendpro_parse: every answer shape
 * listed in shared/reference/isendpro.md ("Responses"), the code classification, the
 * temporary/permanent split by HTTP status, number matching in each notation, credit answers,
 * truncation and garbage bodies.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prov_isendpro_parse.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* Parses a NUL-terminated body and expects `rc`; the caller frees. */
static void parse_expect(int status, const char *body, int rc, struct prov_isp_result *r)
{
    memset(r, 0xA5, sizeof *r); /* the parser must not rely on a zeroed struct */
    assert_int_equal(prov_isp_parse(status, body, body != NULL ? strlen(body) : 0, r), rc);
    assert_int_equal(r->http_status, status);
    if (rc == 0) {
        assert_string_equal(r->error, "");
    } else {
        assert_true(r->error[0] != '\0');
        assert_int_equal(r->n, 0);
        assert_null(r->items);
        assert_int_equal(r->general_error, 0);
        assert_int_equal(r->general_ok, 0);
    }
    if (r->n == 0) {
        assert_null(r->items);
    } else {
        assert_non_null(r->items);
    }
}

static void expect_item(const struct prov_isp_item *it, int code, enum prov_isp_kind kind,
                        const char *tel, const char *message, int parts)
{
    assert_non_null(it);
    assert_int_equal(it->code, code);
    assert_int_equal(it->kind, kind);
    assert_string_equal(it->tel, tel);
    assert_string_equal(it->message, message);
    assert_int_equal(it->parts, parts);
}

/* ---- shapes ------------------------------------------------------------------------------ */

static void test_success_array(void **state)
{
    struct prov_isp_result r;
    (void)state;
    parse_expect(200,
                 "{\"etat\":{\"etat\":[{\"code\":0,\"tel\":\"33612345678\","
                 "\"message\":\"Envoi OK\",\"smslong\":\"2\"}]}}",
                 0, &r);
    assert_int_equal(r.temporary, 0);
    assert_int_equal(r.general_error, 0);
    assert_int_equal(r.general_ok, 0);
    assert_int_equal(r.n, 1);
    expect_item(&r.items[0], 0, PROV_ISP_SENT, "33612345678", "Envoi OK", 2);
    /* no general error: the general slot never reads as "sent" */
    assert_int_equal(r.general.code, -1);
    assert_int_equal(r.general.kind, PROV_ISP_OTHER_ERROR);
    prov_isp_result_free(&r);
}

static void test_success_array_two_numbers(void **state)
{
    struct prov_isp_result r;
    (void)state;
    parse_expect(200,
                 "{\"etat\":{\"etat\":[{\"code\":\"0\",\"tel\":\"33612345678\"},"
                 "{\"code\":\"0\",\"tel\":\"33698765432\",\"smslong\":3}]}}",
                 0, &r);
    assert_int_equal(r.n, 2);
    expect_item(&r.items[0], 0, PROV_ISP_SENT, "33612345678", "", 0);
    expect_item(&r.items[1], 0, PROV_ISP_SENT, "33698765432", "", 3);
    prov_isp_result_free(&r);
}

static void test_inner_object_instead_of_array(void **state)
{
    struct prov_isp_result r;
    (void)state;
    parse_expect(
        200, "{\"etat\":{\"etat\":{\"code\":\"0\",\"tel\":\"33612345678\",\"message\":\"ok\"}}}", 0,
        &r);
    assert_int_equal(r.n, 1);
    expect_item(&r.items[0], 0, PROV_ISP_SENT, "33612345678", "ok", 0);
    prov_isp_result_free(&r);
}

static void test_inner_level_dropped(void **state)
{
    struct prov_isp_result r;
    (void)state;
    parse_expect(200, "{\"etat\":{\"code\":\"0\",\"tel\":\"33612345678\",\"message\":\"ok\"}}", 0,
                 &r);
    assert_int_equal(r.n, 1);
    expect_item(&r.items[0], 0, PROV_ISP_SENT, "33612345678", "ok", 0);
    prov_isp_result_free(&r);

    /* without a tel and with code 0: neither an item nor an error, counted in general_ok */
    parse_expect(200, "{\"etat\":{\"code\":\"0\",\"message\":\"Envoi OK\"}}", 0, &r);
    assert_int_equal(r.n, 0);
    assert_int_equal(r.general_error, 0);
    assert_int_equal(r.general_ok, 1);
    assert_null(prov_isp_find(&r, "+33612345678"));
    prov_isp_result_free(&r);

    /* inner level dropped, error without tel */
    parse_expect(400, "{\"etat\":{\"code\":\"7\",\"message\":\"Emetteur invalide\"}}", 0, &r);
    assert_int_equal(r.general_error, 1);
    expect_item(&r.general, 7, PROV_ISP_OTHER_ERROR, "", "Emetteur invalide", 0);
    prov_isp_result_free(&r);
}

static void test_etat_array_tolerated(void **state)
{
    struct prov_isp_result r;
    (void)state;
    parse_expect(200, "{\"etat\":[{\"code\":21,\"tel\":\"33612345678\"}]}", 0, &r);
    assert_int_equal(r.n, 1);
    expect_item(&r.items[0], 21, PROV_ISP_INVALID_NUMBER, "33612345678", "", 0);
    prov_isp_result_free(&r);
}

static void test_outer_code_next_to_inner_is_kept(void **state)
{
    struct prov_isp_result r;
    (void)state;
    parse_expect(200,
                 "{\"etat\":{\"code\":\"5\",\"message\":\"outer\","
                 "\"etat\":[{\"code\":0,\"tel\":\"33612345678\"}]}}",
                 0, &r);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.general_error, 1);
    expect_item(&r.general, 5, PROV_ISP_OTHER_ERROR, "", "outer", 0);
    prov_isp_result_free(&r);
}

static void test_bom_and_whitespace_tolerated(void **state)
{
    struct prov_isp_result r;
    (void)state;
    parse_expect(200,
                 "\xEF\xBB\xBF \r\n{\"etat\":{\"etat\":[{\"code\":0,\"tel\":\"33612345678\"}]}}\n",
                 0, &r);
    assert_int_equal(r.n, 1);
    prov_isp_result_free(&r);
}

static void test_body_not_nul_terminated(void **state)
{
    const char buf[] = "{\"etat\":{\"etat\":[{\"code\":11,\"tel\":\"33612345678\"}]}}GARBAGE";
    struct prov_isp_result r;
    (void)state;
    assert_int_equal(prov_isp_parse(200, buf, strlen(buf) - strlen("GARBAGE"), &r), 0);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.items[0].kind, PROV_ISP_BLACKLISTED);
    prov_isp_result_free(&r);
    /* the whole buffer is not JSON */
    assert_int_equal(prov_isp_parse(200, buf, strlen(buf), &r), -1);
    prov_isp_result_free(&r);
}

/* ---- codes and classification ------------------------------------------------------------ */

static void expect_code(const char *code_json, int code, enum prov_isp_kind kind)
{
    char body[256];
    struct prov_isp_result r;

    snprintf(body, sizeof body, "{\"etat\":{\"etat\":[{\"code\":%s,\"tel\":\"33612345678\"}]}}",
             code_json);
    parse_expect(200, body, 0, &r);
    assert_int_equal(r.n, 1);
    if (r.items[0].code != code || r.items[0].kind != kind) {
        fail_msg("code %s: got code %d kind %d, want %d %d", code_json, r.items[0].code,
                 (int)r.items[0].kind, code, (int)kind);
    }
    prov_isp_result_free(&r);
}

static void test_codes_as_integers(void **state)
{
    (void)state;
    expect_code("0", 0, PROV_ISP_SENT);
    expect_code("11", 11, PROV_ISP_BLACKLISTED);
    expect_code("21", 21, PROV_ISP_INVALID_NUMBER);
    expect_code("1", 1, PROV_ISP_OTHER_ERROR);
    expect_code("99", 99, PROV_ISP_OTHER_ERROR);
    expect_code("-5", -5, PROV_ISP_OTHER_ERROR);
    expect_code("11.0", 11, PROV_ISP_BLACKLISTED);
}

static void test_codes_as_strings(void **state)
{
    (void)state;
    expect_code("\"0\"", 0, PROV_ISP_SENT);
    expect_code("\"11\"", 11, PROV_ISP_BLACKLISTED);
    expect_code("\"21\"", 21, PROV_ISP_INVALID_NUMBER);
    expect_code("\" 21 \"", 21, PROV_ISP_INVALID_NUMBER);
    expect_code("\"\\t0\\n\"", 0, PROV_ISP_SENT);
    expect_code("\"00\"", 0, PROV_ISP_SENT);
    expect_code("\"42\"", 42, PROV_ISP_OTHER_ERROR);
}

static void test_codes_unparseable_are_errors(void **state)
{
    static const char *const bad[] = {
        "\"\"",    "\" \"",  "\"abc\"",     "\"0 ok\"",
        "\"0x0\"", "\"+0\"", "\"0.0\"",     "null",
        "true",    "false",  "0.5",         "[0]",
        "{}",      "1e300",  "99999999999", "\"99999999999999999999\"",
        "\"-\"",
    };
    size_t i;
    (void)state;
    for (i = 0; i < N_ELEMS(bad); i++) {
        expect_code(bad[i], -1, PROV_ISP_OTHER_ERROR);
    }
}

static void test_code_missing_is_never_sent(void **state)
{
    struct prov_isp_result r;
    (void)state;
    /* with a tel: a per-number error */
    parse_expect(200, "{\"etat\":{\"etat\":[{\"tel\":\"33612345678\",\"message\":\"?\"}]}}", 0, &r);
    assert_int_equal(r.n, 1);
    expect_item(&r.items[0], -1, PROV_ISP_OTHER_ERROR, "33612345678", "?", 0);
    assert_int_equal(r.general_error, 0);
    prov_isp_result_free(&r);
    /* without a tel: a general error */
    parse_expect(200, "{\"etat\":{\"etat\":[{\"message\":\"quelque chose\"}]}}", 0, &r);
    assert_int_equal(r.n, 0);
    assert_int_equal(r.general_error, 1);
    expect_item(&r.general, -1, PROV_ISP_OTHER_ERROR, "", "quelque chose", 0);
    prov_isp_result_free(&r);
    /* an empty element object */
    parse_expect(200, "{\"etat\":{\"etat\":[{}]}}", 0, &r);
    assert_int_equal(r.general_error, 1);
    assert_int_equal(r.general.code, -1);
    prov_isp_result_free(&r);
}

/* ---- general vs per-number --------------------------------------------------------------- */

static void test_http400_general_error(void **state)
{
    struct prov_isp_result r;
    (void)state;
    parse_expect(400, "{\"etat\":{\"etat\":[{\"code\":\"3\",\"message\":\"Cle API invalide\"}]}}",
                 0, &r);
    assert_int_equal(r.temporary, 0);
    assert_int_equal(r.general_error, 1);
    assert_int_equal(r.n, 0);
    expect_item(&r.general, 3, PROV_ISP_OTHER_ERROR, "", "Cle API invalide", 0);
    assert_null(prov_isp_find(&r, "+33612345678"));
    prov_isp_result_free(&r);
}

static void test_http200_with_error_codes(void **state)
{
    struct prov_isp_result r;
    (void)state;
    parse_expect(200,
                 "{\"etat\":{\"etat\":[{\"code\":\"11\",\"tel\":\"33612345678\",\"message\":"
                 "\"liste noire\"},"
                 "{\"code\":21,\"tel\":\"33700000000\",\"message\":\"non attribue\"}]}}",
                 0, &r);
    assert_int_equal(r.temporary, 0);
    assert_int_equal(r.general_error, 0);
    assert_int_equal(r.n, 2);
    expect_item(prov_isp_find(&r, "+33612345678"), 11, PROV_ISP_BLACKLISTED, "33612345678",
                "liste noire", 0);
    expect_item(prov_isp_find(&r, "+33700000000"), 21, PROV_ISP_INVALID_NUMBER, "33700000000",
                "non attribue", 0);
    prov_isp_result_free(&r);
    /* a general error on a 200 */
    parse_expect(200, "{\"etat\":{\"etat\":{\"code\":12,\"message\":\"Credit insuffisant\"}}}", 0,
                 &r);
    assert_int_equal(r.general_error, 1);
    expect_item(&r.general, 12, PROV_ISP_OTHER_ERROR, "", "Credit insuffisant", 0);
    prov_isp_result_free(&r);
}

static void test_batch_mixing_general_and_per_number(void **state)
{
    struct prov_isp_result r;
    (void)state;
    parse_expect(200,
                 "{\"etat\":{\"etat\":["
                 "{\"code\":0,\"tel\":\"33612345678\",\"smslong\":\"1\"},"
                 "{\"code\":\"9\",\"message\":\"first general\"},"
                 "{\"code\":\"21\",\"tel\":\"33611111111\"},"
                 "{\"code\":\"0\",\"message\":\"ack\"},"
                 "{\"code\":\"8\",\"message\":\"second general\"}]}}",
                 0, &r);
    assert_int_equal(r.n, 2);
    assert_int_equal(r.general_error, 1);
    assert_int_equal(r.general_ok, 1);
    expect_item(&r.general, 9, PROV_ISP_OTHER_ERROR, "", "first general", 0);
    expect_item(&r.items[0], 0, PROV_ISP_SENT, "33612345678", "", 1);
    expect_item(&r.items[1], 21, PROV_ISP_INVALID_NUMBER, "33611111111", "", 0);
    prov_isp_result_free(&r);
}

static void test_tel_as_json_number(void **state)
{
    struct prov_isp_result r;
    (void)state;
    parse_expect(200,
                 "{\"etat\":{\"etat\":[{\"code\":0,\"tel\":33612345678},"
                 "{\"code\":0,\"tel\":3.3698765432e10},{\"code\":0,\"tel\":\"  33600000001 \"}]}}",
                 0, &r);
    assert_int_equal(r.n, 3);
    assert_string_equal(r.items[0].tel, "33612345678");
    assert_string_equal(r.items[1].tel, "33698765432");
    assert_string_equal(r.items[2].tel, "33600000001");
    assert_ptr_equal(prov_isp_find(&r, "+33612345678"), &r.items[0]);
    assert_ptr_equal(prov_isp_find(&r, "+33698765432"), &r.items[1]);
    assert_ptr_equal(prov_isp_find(&r, "+33600000001"), &r.items[2]);
    prov_isp_result_free(&r);
    /* unusable tel values count as "no tel": a non-zero code becomes a general error */
    parse_expect(200,
                 "{\"etat\":{\"etat\":[{\"code\":5,\"tel\":null},{\"code\":6,\"tel\":\"  \"},"
                 "{\"code\":0,\"tel\":true}]}}",
                 0, &r);
    assert_int_equal(r.n, 0);
    assert_int_equal(r.general_error, 1);
    assert_int_equal(r.general.code, 5);
    assert_int_equal(r.general_ok, 1);
    prov_isp_result_free(&r);
}

static void test_parts_variants(void **state)
{
    struct prov_isp_result r;
    (void)state;
    parse_expect(
        200,
        "{\"etat\":{\"etat\":[{\"code\":0,\"tel\":\"1\",\"smslong\":\" 4 \"},"
        "{\"code\":0,\"tel\":\"2\",\"smslong\":\"x\"},{\"code\":0,\"tel\":\"3\",\"smslong\":-2},"
        "{\"nb_caractere\":200,\"nb_sms\":2,\"tel\":\"4\",\"code\":0}]}}",
        0, &r);
    assert_int_equal(r.n, 4);
    assert_int_equal(r.items[0].parts, 4);
    assert_int_equal(r.items[1].parts, 0);
    assert_int_equal(r.items[2].parts, 0);
    assert_int_equal(r.items[3].parts, 2);
    prov_isp_result_free(&r);
}

/* ---- HTTP status --------------------------------------------------------------------------- */

static void test_temporary_statuses(void **state)
{
    static const int temp[] = {0, -1, 429, 500, 502, 503, 504, 599};
    static const int perm[] = {200, 201, 204, 301, 400, 401, 403, 404, 408, 600};
    const char *ok = "{\"etat\":{\"etat\":[{\"code\":0,\"tel\":\"33612345678\"}]}}";
    struct prov_isp_result r;
    size_t i;
    (void)state;
    for (i = 0; i < N_ELEMS(temp); i++) {
        parse_expect(temp[i], ok, 0, &r); /* parsed, but the request is retried anyway */
        assert_int_equal(r.temporary, 1);
        assert_int_equal(r.n, 1);
        prov_isp_result_free(&r);
        parse_expect(temp[i], "", -1, &r);
        assert_int_equal(r.temporary, 1);
        prov_isp_result_free(&r);
    }
    for (i = 0; i < N_ELEMS(perm); i++) {
        parse_expect(perm[i], ok, 0, &r);
        assert_int_equal(r.temporary, 0);
        prov_isp_result_free(&r);
        parse_expect(perm[i], "<html>nope</html>", -1, &r);
        assert_int_equal(r.temporary, 0);
        prov_isp_result_free(&r);
    }
}

static void test_html_on_500(void **state)
{
    struct prov_isp_result r;
    (void)state;
    parse_expect(500,
                 "<!DOCTYPE html><html><head><title>500 Internal Server Error</title></head>"
                 "<body><h1>Internal Server Error</h1></body></html>",
                 -1, &r);
    assert_int_equal(r.temporary, 1);
    assert_non_null(strstr(r.error, "not JSON"));
    prov_isp_result_free(&r);
    parse_expect(503, "Service Unavailable", -1, &r);
    assert_int_equal(r.temporary, 1);
    prov_isp_result_free(&r);
}

static void test_4xx_unparseable_is_permanent(void **state)
{
    struct prov_isp_result r;
    (void)state;
    parse_expect(400, "<html><body>Bad Request</body></html>", -1, &r);
    assert_int_equal(r.temporary, 0);
    prov_isp_result_free(&r);
    parse_expect(403, "IP non autorisee", -1, &r);
    assert_int_equal(r.temporary, 0);
    prov_isp_result_free(&r);
}

static void test_empty_body(void **state)
{
    struct prov_isp_result r;
    (void)state;
    parse_expect(200, "", -1, &r);
    assert_int_equal(r.temporary, 0);
    assert_non_null(strstr(r.error, "empty"));
    prov_isp_result_free(&r);
    parse_expect(200, NULL, -1, &r);
    prov_isp_result_free(&r);
    parse_expect(200, " \r\n\t", -1, &r);
    prov_isp_result_free(&r);
    parse_expect(200, "\xEF\xBB\xBF", -1, &r);
    prov_isp_result_free(&r);
    parse_expect(0, NULL, -1, &r);
    assert_int_equal(r.temporary, 1);
    prov_isp_result_free(&r);
    assert_int_equal(prov_isp_parse(200, "{}", 2, NULL), -1);
}

static void test_json_not_an_object(void **state)
{
    static const char *const bodies[] = {
        "[1,2]", "\"etat\"", "42",
        "null",  "true",     "[{\"etat\":{\"etat\":[{\"code\":0,\"tel\":\"1\"}]}}]"};
    struct prov_isp_result r;
    size_t i;
    (void)state;
    for (i = 0; i < N_ELEMS(bodies); i++) {
        parse_expect(200, bodies[i], -1, &r);
        assert_non_null(strstr(r.error, "not an object"));
        prov_isp_result_free(&r);
    }
}

static void test_garbage_bodies(void **state)
{
    static const char *const bodies[] = {
        "{",
        "{\"etat\":",
        "{\"etat\":{\"etat\":[{\"code\":0,\"tel\":\"33612345678\"}",
        "{\"foo\":1}",
        "{\"etat\":\"erreur\"}",
        "{\"etat\":null}",
        "{\"etat\":42}",
        "{\"etat\":{}}",
        "{\"etat\":{\"credit\":\"12.34\"}}",
        "{\"etat\":{\"etat\":[]}}",
        "{\"etat\":[]}",
        "{\"etat\":{\"etat\":\"x\"}}",
        "{\"etat\":{\"etat\":null}}",
        "{\"etat\":{\"etat\":[1]}}",
        "{\"etat\":{\"etat\":[{\"code\":0,\"tel\":\"33612345678\"},\"oops\"]}}",
        "{\"etat\":{\"etat\":[[{\"code\":0}]]}}",
        "{\"etat\":{\"etat\":[{\"code\":0,\"tel\":\"\\u0000\"}]}}",
        "{\"etat\":{\"etat\":[{\"code\":0,\"tel\":\"33612345678\",\"message\":\"\xff\xfe\"}]}}",
        "{\"etat\":{\"etat\":[{\"code\":99999999999999999999999}]}}",
        "\x01\x02\x03\x04",
        "OK",
    };
    struct prov_isp_result r;
    size_t i;
    (void)state;
    for (i = 0; i < N_ELEMS(bodies); i++) {
        memset(&r, 0, sizeof r);
        if (prov_isp_parse(200, bodies[i], strlen(bodies[i]), &r) != -1) {
            fail_msg("garbage body %zu was accepted: %s", i, bodies[i]);
        }
        assert_true(r.error[0] != '\0');
        assert_int_equal(r.n, 0);
        assert_null(r.items);
        assert_int_equal(r.general_error, 0);
        prov_isp_result_free(&r);
    }
    /* embedded NUL bytes inside the body */
    {
        const char nul[] = "{\"etat\":{\"etat\":[{\"code\":0,\0\"tel\":\"1\"}]}}";
        assert_int_equal(prov_isp_parse(200, nul, sizeof nul - 1, &r), -1);
        prov_isp_result_free(&r);
    }
}

static void test_error_text_is_printable(void **state)
{
    const char body[] = "\x1b[31m\xc3\xa9\x07";
    struct prov_isp_result r;
    size_t i;
    (void)state;
    assert_int_equal(prov_isp_parse(200, body, sizeof body - 1, &r), -1);
    for (i = 0; r.error[i] != '\0'; i++) {
        assert_true(r.error[i] >= 0x20 && r.error[i] < 0x7F);
    }
    prov_isp_result_free(&r);
}

/* ---- strings ----------------------------------------------------------------------------- */

static void test_message_truncation_1000(void **state)
{
    char *msg = malloc(1001);
    char *body = malloc(2000);
    struct prov_isp_result r;
    size_t i;
    (void)state;
    assert_non_null(msg);
    assert_non_null(body);
    for (i = 0; i < 1000; i++) {
        msg[i] = (char)('a' + i % 26);
    }
    msg[1000] = '\0';
    snprintf(body, 2000,
             "{\"etat\":{\"etat\":[{\"code\":0,\"tel\":\"33612345678\",\"message\":\"%s\"}]}}",
             msg);
    parse_expect(200, body, 0, &r);
    assert_int_equal(strlen(r.items[0].message), sizeof r.items[0].message - 1);
    assert_memory_equal(r.items[0].message, msg, sizeof r.items[0].message - 1);
    prov_isp_result_free(&r);

    /* 500 × "é" (2 bytes each): cut on a character boundary, 158 bytes, valid UTF-8 */
    {
        size_t off = (size_t)snprintf(body, 2000, "{\"etat\":{\"code\":\"4\",\"message\":\"");
        for (i = 0; i < 500; i++) {
            body[off++] = '\xc3';
            body[off++] = '\xa9';
        }
        snprintf(body + off, 2000 - off, "\"}}");
    }
    parse_expect(200, body, 0, &r);
    assert_int_equal(r.general_error, 1);
    assert_int_equal(strlen(r.general.message), 158);
    for (i = 0; i < 158; i += 2) {
        assert_int_equal((unsigned char)r.general.message[i], 0xc3);
        assert_int_equal((unsigned char)r.general.message[i + 1], 0xa9);
    }
    prov_isp_result_free(&r);
    free(body);
    free(msg);
}

static void test_control_chars_in_message(void **state)
{
    struct prov_isp_result r;
    (void)state;
    parse_expect(200,
                 "{\"etat\":{\"etat\":[{\"code\":0,\"tel\":\"33612345678\","
                 "\"message\":\"line1\\nline2\\u001b[0m\\t\\u007f\"}]}}",
                 0, &r);
    assert_string_equal(r.items[0].message, "line1 line2 [0m  ");
    prov_isp_result_free(&r);
    parse_expect(200, "{\"etat\":{\"etat\":[{\"code\":0,\"tel\":\"1\",\"message\":42}]}}", 0, &r);
    assert_string_equal(r.items[0].message, "42");
    prov_isp_result_free(&r);
    parse_expect(200, "{\"etat\":{\"etat\":[{\"code\":0,\"tel\":\"1\",\"message\":{\"a\":1}}]}}", 0,
                 &r);
    assert_string_equal(r.items[0].message, "");
    prov_isp_result_free(&r);
}

static void test_long_tel_truncated_never_matched(void **state)
{
    struct prov_isp_result r;
    (void)state;
    parse_expect(200,
                 /* 11 digits, 12 spaces, "99": truncated to 23 bytes it would read 33612345678 */
                 "{\"etat\":{\"etat\":[{\"code\":0,\"tel\":\"33612345678            99\"}]}}", 0,
                 &r);
    assert_int_equal(r.n, 1);
    assert_int_equal(strlen(r.items[0].tel), sizeof r.items[0].tel - 1);
    assert_string_equal(r.items[0].tel, "33612345678            ");
    assert_null(prov_isp_find(&r, "+33612345678"));
    prov_isp_result_free(&r);
}

/* ---- find -------------------------------------------------------------------------------- */

static void test_find_notations(void **state)
{
    static const char *const tels[] = {"33612345678",   "+33612345678",      "0612345678",
                                       "0033612345678", "+33 6 12 34 56 78", "06.12.34.56.78"};
    static const char *const queries[] = {"+33612345678", "33612345678", "0612345678",
                                          "0033612345678", " +33 (0)6 12 34 56 78"};
    char body[256];
    struct prov_isp_result r;
    size_t t, q;
    (void)state;
    for (t = 0; t < N_ELEMS(tels); t++) {
        snprintf(body, sizeof body,
                 "{\"etat\":{\"etat\":[{\"code\":21,\"tel\":\"33700000000\"},"
                 "{\"code\":11,\"tel\":\"%s\"}]}}",
                 tels[t]);
        parse_expect(200, body, 0, &r);
        assert_int_equal(r.n, 2);
        for (q = 0; q < N_ELEMS(queries); q++) {
            const struct prov_isp_item *it = prov_isp_find(&r, queries[q]);
            if (q == 4) {
                /* "+33 (0)6…" keeps the 0: 336… ≠ 3306…, a documented non-match */
                assert_null(it);
                continue;
            }
            if (it != &r.items[1]) {
                fail_msg("tel \"%s\" not found with \"%s\"", tels[t], queries[q]);
            }
        }
        assert_ptr_equal(prov_isp_find(&r, "+33700000000"), &r.items[0]);
        prov_isp_result_free(&r);
    }
}

static void test_find_overseas_and_mismatches(void **state)
{
    struct prov_isp_result r;
    (void)state;
    parse_expect(200,
                 "{\"etat\":{\"etat\":[{\"code\":0,\"tel\":\"0692123456\"},"
                 "{\"code\":0,\"tel\":\"447700900123\"}]}}",
                 0, &r);
    assert_ptr_equal(prov_isp_find(&r, "+262692123456"), &r.items[0]);
    assert_ptr_equal(prov_isp_find(&r, "+33692123456"), &r.items[0]); /* same national number */
    assert_null(prov_isp_find(&r, "+44692123456"));                   /* not the French plan */
    assert_null(prov_isp_find(&r, "+3369212345"));                    /* one digit short */
    assert_null(prov_isp_find(&r, "+336921234567"));
    assert_ptr_equal(prov_isp_find(&r, "+447700900123"), &r.items[1]);
    assert_null(prov_isp_find(&r, "07700900123")); /* UK national form is not French */
    assert_null(prov_isp_find(&r, ""));
    assert_null(prov_isp_find(&r, "+"));
    assert_null(prov_isp_find(&r, "0"));
    assert_null(prov_isp_find(&r, "abc"));
    assert_null(prov_isp_find(&r, "+33612345678x"));
    assert_null(prov_isp_find(&r, "+1234567890123456789012345678"));
    assert_null(prov_isp_find(&r, NULL));
    assert_null(prov_isp_find(NULL, "+33612345678"));
    prov_isp_result_free(&r);
    assert_null(prov_isp_find(&r, "+262692123456")); /* after free */
}

static void test_find_large_batch(void **state)
{
    enum { N = 1000 };
    size_t cap = N * 64 + 64, off = 0, i;
    char *body = malloc(cap);
    struct prov_isp_result r;
    char num[32];
    (void)state;
    assert_non_null(body);
    off += (size_t)snprintf(body + off, cap - off, "{\"etat\":{\"etat\":[");
    for (i = 0; i < N; i++) {
        off += (size_t)snprintf(body + off, cap - off, "%s{\"code\":%d,\"tel\":\"336%08zu\"}",
                                i ? "," : "", i % 3 == 0 ? 0 : (i % 3 == 1 ? 11 : 21), i);
    }
    snprintf(body + off, cap - off, "]}}");
    parse_expect(200, body, 0, &r);
    assert_int_equal(r.n, N);
    for (i = 0; i < N; i++) {
        const struct prov_isp_item *it;
        snprintf(num, sizeof num, "+336%08zu", i);
        it = prov_isp_find(&r, num);
        assert_ptr_equal(it, &r.items[i]);
        assert_int_equal(
            it->kind, i % 3 == 0 ? PROV_ISP_SENT
                                 : (i % 3 == 1 ? PROV_ISP_BLACKLISTED : PROV_ISP_INVALID_NUMBER));
    }
    assert_null(prov_isp_find(&r, "+33699999999"));
    prov_isp_result_free(&r);
    free(body);
}

static void test_result_free_is_idempotent(void **state)
{
    struct prov_isp_result r;
    (void)state;
    memset(&r, 0, sizeof r);
    prov_isp_result_free(&r);
    prov_isp_result_free(NULL);
    parse_expect(200, "{\"etat\":{\"etat\":[{\"code\":0,\"tel\":\"33612345678\"}]}}", 0, &r);
    prov_isp_result_free(&r);
    assert_null(r.items);
    assert_int_equal(r.n, 0);
    prov_isp_result_free(&r);
}

/* ---- credit ------------------------------------------------------------------------------ */

static void expect_credit(const char *body, int rc, double euros, long qty)
{
    double e = -99.0;
    long q = -99;

    if (prov_isp_parse_credit(body, body != NULL ? strlen(body) : 0, &e, &q) != rc) {
        fail_msg("credit body %s: rc != %d", body != NULL ? body : "(null)", rc);
    }
    assert_float_equal(e, euros, 1e-9);
    assert_int_equal(q, qty);
}

static void test_credit_variants(void **state)
{
    (void)state;
    expect_credit("{\"etat\":{\"credit\":\"12.34\",\"quantite\":\"240\"}}", 0, 12.34, 240);
    expect_credit("{\"etat\":{\"credit\":12.34,\"quantite\":240}}", 0, 12.34, 240);
    expect_credit("{\"etat\":{\"credit\":12}}", 0, 12.0, -1);
    expect_credit("{\"etat\":{\"credit\":\"12,5\",\"quantite\":\" 100 \"}}", 0, 12.5, 100);
    expect_credit("{\"etat\":{\"credit\":\" 0 \"}}", 0, 0.0, -1);
    expect_credit("{\"etat\":{\"credit\":\"-3.5\"}}", 0, -3.5, -1);
    expect_credit("{\"etat\":{\"etat\":{\"credit\":\"7.10\",\"quantite\":\"88\"}}}", 0, 7.1, 88);
    expect_credit("{\"etat\":{\"etat\":[{\"credit\":\"7.10\",\"quantite\":88}]}}", 0, 7.1, 88);
    expect_credit("{\"etat\":{\"etat\":[{\"code\":0},{\"credit\":1.5}]}}", 0, 1.5, -1);
    expect_credit("{\"etat\":[{\"credit\":\"2\"}]}", 0, 2.0, -1);
    expect_credit("\xEF\xBB\xBF{\"etat\":{\"credit\":\"2\"}}", 0, 2.0, -1);
    /* quantite present but unusable: credit still read, quantity -1 */
    expect_credit("{\"etat\":{\"credit\":\"5\",\"quantite\":\"beaucoup\"}}", 0, 5.0, -1);
    expect_credit("{\"etat\":{\"credit\":\"5\",\"quantite\":-4}}", 0, 5.0, -1);
    expect_credit("{\"etat\":{\"credit\":\"5\",\"quantite\":null}}", 0, 5.0, -1);
}

static void test_credit_failures(void **state)
{
    static const char *const bad[] = {
        "",
        "   ",
        "<html>500</html>",
        "[]",
        "{}",
        "{\"credit\":\"12\"}",
        "{\"etat\":{}}",
        "{\"etat\":{\"quantite\":\"240\"}}",
        "{\"etat\":{\"credit\":\"\"}}",
        "{\"etat\":{\"credit\":\"12.34 EUR\"}}",
        "{\"etat\":{\"credit\":\"1.2.3\"}}",
        "{\"etat\":{\"credit\":\"1e3\"}}",
        "{\"etat\":{\"credit\":\".\"}}",
        "{\"etat\":{\"credit\":null}}",
        "{\"etat\":{\"credit\":true}}",
        "{\"etat\":{\"credit\":[1]}}",
        "{\"etat\":{\"etat\":[{\"code\":\"3\",\"message\":\"Cle invalide\"}]}}",
        "{\"etat\":{\"etat\":\"x\"}}",
    };
    double e;
    long q;
    size_t i;
    (void)state;
    for (i = 0; i < N_ELEMS(bad); i++) {
        expect_credit(bad[i], -1, 0.0, -1);
    }
    expect_credit(NULL, -1, 0.0, -1);
    assert_int_equal(prov_isp_parse_credit("{\"etat\":{\"credit\":1}}", 21, NULL, &q), -1);
    assert_int_equal(prov_isp_parse_credit("{\"etat\":{\"credit\":1}}", 21, &e, NULL), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_success_array),
        cmocka_unit_test(test_success_array_two_numbers),
        cmocka_unit_test(test_inner_object_instead_of_array),
        cmocka_unit_test(test_inner_level_dropped),
        cmocka_unit_test(test_etat_array_tolerated),
        cmocka_unit_test(test_outer_code_next_to_inner_is_kept),
        cmocka_unit_test(test_bom_and_whitespace_tolerated),
        cmocka_unit_test(test_body_not_nul_terminated),
        cmocka_unit_test(test_codes_as_integers),
        cmocka_unit_test(test_codes_as_strings),
        cmocka_unit_test(test_codes_unparseable_are_errors),
        cmocka_unit_test(test_code_missing_is_never_sent),
        cmocka_unit_test(test_http400_general_error),
        cmocka_unit_test(test_http200_with_error_codes),
        cmocka_unit_test(test_batch_mixing_general_and_per_number),
        cmocka_unit_test(test_tel_as_json_number),
        cmocka_unit_test(test_parts_variants),
        cmocka_unit_test(test_temporary_statuses),
        cmocka_unit_test(test_html_on_500),
        cmocka_unit_test(test_4xx_unparseable_is_permanent),
        cmocka_unit_test(test_empty_body),
        cmocka_unit_test(test_json_not_an_object),
        cmocka_unit_test(test_garbage_bodies),
        cmocka_unit_test(test_error_text_is_printable),
        cmocka_unit_test(test_message_truncation_1000),
        cmocka_unit_test(test_control_chars_in_message),
        cmocka_unit_test(test_long_tel_truncated_never_matched),
        cmocka_unit_test(test_find_notations),
        cmocka_unit_test(test_find_overseas_and_mismatches),
        cmocka_unit_test(test_find_large_batch),
        cmocka_unit_test(test_result_free_is_idempotent),
        cmocka_unit_test(test_credit_variants),
        cmocka_unit_test(test_credit_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
