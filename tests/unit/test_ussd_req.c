/*
 * Unit tests of the USSD callback parser and screen formatter (flows/ussd_req.c).
 *
 * Every expectation is derived from the rules at the top of flows/ussd_req.h and from the
 * GSM 03.38 tables (1 septet for the default alphabet, 2 for { } [ ] ~ | ^ € \), not from
 * running the code. Each test checks the strings a caller would use, not only return codes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ussd_req.h"

static const struct ussd_fields custom_fields = {
    .session = "session_id",
    .service = "service_code",
    .phone = "msisdn",
    .text = "ussd_string",
    .network = NULL,
};

static struct ussd_req req;
static char err[128];

static int parse(const char *body)
{
    memset(&req, 0, sizeof req);
    return ussd_req_parse(&ussd_fields_africastalking, body, strlen(body), &req, err,
                          sizeof err);
}

/* "sessionId=s1&phoneNumber=%2B33612345678&text=" + the URL-encoded `text` */
static int parse_text(const char *text)
{
    char body[8192];
    snprintf(body, sizeof body, "sessionId=s1&phoneNumber=%%2B33612345678&text=%s", text);
    return parse(body);
}

static char *repeat(const char *unit, size_t n)
{
    size_t ul = strlen(unit);
    char *s = malloc(ul * n + 1);
    assert_non_null(s);
    for (size_t i = 0; i < n; i++)
        memcpy(s + i * ul, unit, ul);
    s[ul * n] = '\0';
    return s;
}

/* ---------------------------------------------------------------------------- parsing */

static void test_first_request(void **state)
{
    (void)state;
    assert_int_equal(parse("sessionId=ATUid_0a1b2c&serviceCode=%2A384%2A12%23"
                           "&phoneNumber=%2B33612345678&text=&networkCode=20801"),
                     USSD_OK);
    assert_string_equal(err, "");
    assert_string_equal(req.session, "ATUid_0a1b2c");
    assert_string_equal(req.service, "*384*12#");
    assert_string_equal(req.phone, "+33612345678");
    assert_string_equal(req.network, "20801");
    assert_int_equal(req.nsteps, 0);
}

static void test_text_absent_and_optional_fields(void **state)
{
    (void)state;
    assert_int_equal(parse("phoneNumber=0612345678&sessionId=abc"), USSD_OK);
    assert_string_equal(req.session, "abc");
    assert_string_equal(req.phone, "0612345678");
    assert_string_equal(req.service, "");
    assert_string_equal(req.network, "");
    assert_int_equal(req.nsteps, 0);
}

static void test_deep_path(void **state)
{
    (void)state;
    assert_int_equal(parse_text("1*2*3"), USSD_OK);
    assert_int_equal(req.nsteps, 3);
    assert_string_equal(req.steps[0], "1");
    assert_string_equal(req.steps[1], "2");
    assert_string_equal(req.steps[2], "3");
    /* the '*' may also come escaped */
    assert_int_equal(parse_text("4%2A55%2a6"), USSD_OK);
    assert_int_equal(req.nsteps, 3);
    assert_string_equal(req.steps[0], "4");
    assert_string_equal(req.steps[1], "55");
    assert_string_equal(req.steps[2], "6");
}

static void test_empty_steps_kept(void **state)
{
    (void)state;
    assert_int_equal(parse_text("1*2*"), USSD_OK);
    assert_int_equal(req.nsteps, 3);
    assert_string_equal(req.steps[0], "1");
    assert_string_equal(req.steps[1], "2");
    assert_string_equal(req.steps[2], "");
    assert_int_equal(parse_text("*"), USSD_OK);
    assert_int_equal(req.nsteps, 2);
    assert_string_equal(req.steps[0], "");
    assert_string_equal(req.steps[1], "");
    /* one blank answer is one empty step, not a first request */
    assert_int_equal(parse_text("+"), USSD_OK);
    assert_int_equal(req.nsteps, 1);
    assert_string_equal(req.steps[0], "");
}

static void test_spaces_around_steps(void **state)
{
    (void)state;
    /* decoded: " 1 *  2 *3 %20" -> " 1 ", "  2 ", "3  " */
    assert_int_equal(parse_text("+1+*++2+*3+%20"), USSD_OK);
    assert_int_equal(req.nsteps, 3);
    assert_string_equal(req.steps[0], "1");
    assert_string_equal(req.steps[1], "2");
    assert_string_equal(req.steps[2], "3");
    /* inner spaces stay */
    assert_int_equal(parse_text("Jean+Dupont*+rue+des+Lilas+"), USSD_OK);
    assert_int_equal(req.nsteps, 2);
    assert_string_equal(req.steps[0], "Jean Dupont");
    assert_string_equal(req.steps[1], "rue des Lilas");
}

static void test_phone_plus(void **state)
{
    (void)state;
    /* raw '+' decodes to a space: restored */
    assert_int_equal(parse("sessionId=s&phoneNumber=+33612345678"), USSD_OK);
    assert_string_equal(req.phone, "+33612345678");
    assert_int_equal(parse("sessionId=s&phoneNumber=%2B33612345678"), USSD_OK);
    assert_string_equal(req.phone, "+33612345678");
    assert_int_equal(parse("sessionId=s&phoneNumber=%2b221771234567"), USSD_OK);
    assert_string_equal(req.phone, "+221771234567");
    /* an encoded space before digits decodes the same: read as '+' too */
    assert_int_equal(parse("sessionId=s&phoneNumber=%2033612345678"), USSD_OK);
    assert_string_equal(req.phone, "+33612345678");
    /* as given otherwise, trimmed */
    assert_int_equal(parse("sessionId=s&phoneNumber=06+12+34+56+78++"), USSD_OK);
    assert_string_equal(req.phone, "06 12 34 56 78");
    /* two leading spaces: not a '+', just trimmed */
    assert_int_equal(parse("sessionId=s&phoneNumber=++33612345678"), USSD_OK);
    assert_string_equal(req.phone, "33612345678");
    /* space then a non-digit: trimmed */
    assert_int_equal(parse("sessionId=s&phoneNumber=+%2B33612345678"), USSD_OK);
    assert_string_equal(req.phone, "+33612345678");
}

static void test_accents_in_text(void **state)
{
    (void)state;
    /* "été*café crème" */
    assert_int_equal(parse_text("%C3%A9t%C3%A9*caf%C3%A9+cr%c3%a8me"), USSD_OK);
    assert_int_equal(req.nsteps, 2);
    assert_string_equal(req.steps[0], "\xc3\xa9t\xc3\xa9");
    assert_string_equal(req.steps[1], "caf\xc3\xa9 cr\xc3\xa8me");
    /* raw UTF-8 in the body is accepted as well */
    assert_int_equal(parse_text("\xc5\x93uf"), USSD_OK);
    assert_int_equal(req.nsteps, 1);
    assert_string_equal(req.steps[0], "\xc5\x93uf");
}

static void test_order_unknown_and_empty_pairs(void **state)
{
    (void)state;
    assert_int_equal(parse("&&text=2&foo=bar&networkCode=+20810+&hashCode&&phoneNumber=0612"
                           "&bad=%FF%00&serviceCode=*123%23&sessionId=z9&"),
                     USSD_OK);
    assert_string_equal(err, "");
    assert_string_equal(req.session, "z9");
    assert_string_equal(req.phone, "0612");
    assert_string_equal(req.service, "*123#");
    assert_string_equal(req.network, "20810");
    assert_int_equal(req.nsteps, 1);
    assert_string_equal(req.steps[0], "2");
    /* a known name without '=' is an empty value */
    assert_int_equal(parse("sessionId=s&phoneNumber=1&text"), USSD_OK);
    assert_int_equal(req.nsteps, 0);
    /* the field names are case-sensitive: "SessionId" is unknown */
    assert_int_equal(parse("SessionId=s&phoneNumber=1"), USSD_EMISSING);
    assert_string_equal(err, "missing field sessionId");
}

static void test_missing_fields(void **state)
{
    (void)state;
    assert_int_equal(parse("phoneNumber=%2B33612345678&text=1"), USSD_EMISSING);
    assert_string_equal(err, "missing field sessionId");
    assert_int_equal(parse("sessionId=&phoneNumber=%2B33612345678"), USSD_EMISSING);
    assert_string_equal(err, "missing field sessionId");
    assert_int_equal(parse("sessionId=abc&text=1"), USSD_EMISSING);
    assert_string_equal(err, "missing field phoneNumber");
    assert_int_equal(parse("sessionId=abc&phoneNumber=+++"), USSD_EMISSING);
    assert_string_equal(err, "missing field phoneNumber");
    assert_int_equal(parse(""), USSD_EMISSING);
    assert_string_equal(err, "missing field sessionId");
    /* a fault met while reading wins over a missing field */
    assert_int_equal(parse("text=%ZZ"), USSD_EINVAL);
    assert_string_equal(err, "bad %-escape at byte 5");
}

static void test_repeated_field(void **state)
{
    (void)state;
    assert_int_equal(parse("sessionId=a&phoneNumber=1&sessionId=a"), USSD_EINVAL);
    assert_string_equal(err, "repeated field sessionId");
    /* the same name escaped differently is the same field */
    assert_int_equal(parse("sessionId=a&phoneNumber=1&text=1&te%78t=2"), USSD_EINVAL);
    assert_string_equal(err, "repeated field text");
    assert_int_equal(parse("sessionId=a&phoneNumber=1&text=&text="), USSD_EINVAL);
    assert_string_equal(err, "repeated field text");
    /* repeated unknown fields are fine */
    assert_int_equal(parse("x=1&x=2&sessionId=a&phoneNumber=1"), USSD_OK);
    assert_string_equal(req.session, "a");
}

static void test_bad_escape(void **state)
{
    (void)state;
    assert_int_equal(parse("sessionId=a&phoneNumber=1&text=%G1"), USSD_EINVAL);
    assert_string_equal(err, "bad %-escape at byte 31");
    assert_int_equal(parse("sessionId=a&phoneNumber=1&text=1%4"), USSD_EINVAL);
    assert_string_equal(err, "bad %-escape at byte 32");
    assert_int_equal(parse("sessionId=a&phoneNumber=1&text=1%"), USSD_EINVAL);
    assert_string_equal(err, "bad %-escape at byte 32");
    /* in a name, and in a field we do not read */
    assert_int_equal(parse("session%4=a&phoneNumber=1"), USSD_EINVAL);
    assert_string_equal(err, "bad %-escape at byte 7");
    assert_int_equal(parse("sessionId=a&phoneNumber=1&junk=%%41"), USSD_EINVAL);
    assert_string_equal(err, "bad %-escape at byte 31");
}

static void test_invalid_utf8_nul_control(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "%FF",          /* never valid */
        "%C3%28",       /* bad continuation */
        "%C3",          /* truncated */
        "%C0%AF",       /* overlong '/' */
        "%ED%A0%80",    /* UTF-16 surrogate */
        "%F4%90%80%80", /* above U+10FFFF */
        "1%0A2",        /* control character */
        "%7F",          /* DEL */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(parse_text(bad[i]), USSD_EINVAL);
        assert_string_equal(err, "field text is not valid UTF-8 or contains a control character");
    }
    assert_int_equal(parse_text("1%002"), USSD_EINVAL);
    assert_string_equal(err, "field text contains a NUL byte");
    assert_int_equal(parse("sessionId=a&phoneNumber=%2B336%00"), USSD_EINVAL);
    assert_string_equal(err, "field phoneNumber contains a NUL byte");
    assert_int_equal(parse("sessionId=%E9t%E9&phoneNumber=1"), USSD_EINVAL);
    assert_string_equal(err, "field sessionId is not valid UTF-8 or contains a control character");
    /* session: printable ASCII without spaces */
    assert_int_equal(parse("sessionId=a+b&phoneNumber=1"), USSD_EINVAL);
    assert_string_equal(err, "field sessionId must be printable ASCII without spaces");
    assert_int_equal(parse("sessionId=%C3%A9&phoneNumber=1"), USSD_EINVAL);
    assert_string_equal(err, "field sessionId must be printable ASCII without spaces");
}

static void test_too_many_steps(void **state)
{
    (void)state;
    assert_int_equal(parse_text("1*2*3*4*5*6*7*8*9*10*11*12*13*14*15*16"), USSD_OK);
    assert_int_equal(req.nsteps, 16);
    assert_string_equal(req.steps[0], "1");
    assert_string_equal(req.steps[15], "16");
    assert_int_equal(parse_text("1*2*3*4*5*6*7*8*9*10*11*12*13*14*15*"), USSD_OK);
    assert_int_equal(req.nsteps, 16);
    assert_string_equal(req.steps[15], "");
    assert_int_equal(parse_text("1*2*3*4*5*6*7*8*9*10*11*12*13*14*15*16*17"), USSD_ETOOLONG);
    assert_string_equal(err, "text has more than 16 steps");
    assert_int_equal(parse_text("****************"), USSD_ETOOLONG); /* 17 empty steps */
    assert_string_equal(err, "text has more than 16 steps");
}

static void test_too_long_step_and_text(void **state)
{
    char *s32 = repeat("a", 32), *s33 = repeat("b", 33), *t;
    char buf[512];
    (void)state;

    snprintf(buf, sizeof buf, "1*+%s+", s32); /* 32 bytes once trimmed */
    assert_int_equal(parse_text(buf), USSD_OK);
    assert_int_equal(req.nsteps, 2);
    assert_string_equal(req.steps[1], s32);
    snprintf(buf, sizeof buf, "1*2*%s*4", s33);
    assert_int_equal(parse_text(buf), USSD_ETOOLONG);
    assert_string_equal(err, "text step 3 has more than 32 bytes");
    /* "é" is 2 bytes: 16 of them are 32 bytes, 17 are 34 */
    t = repeat("%C3%A9", 16);
    assert_int_equal(parse_text(t), USSD_OK);
    assert_int_equal(strlen(req.steps[0]), 32);
    free(t);
    t = repeat("%C3%A9", 17);
    assert_int_equal(parse_text(t), USSD_ETOOLONG);
    assert_string_equal(err, "text step 1 has more than 32 bytes");
    free(t);

    /* decoded text: 182 bytes pass (5 x 32 + 5 '*' + 17), 183 do not */
    snprintf(buf, sizeof buf, "%s*%s*%s*%s*%s*%.17s", s32, s32, s32, s32, s32, s32);
    assert_int_equal(strlen(buf), 182);
    assert_int_equal(parse_text(buf), USSD_OK);
    assert_int_equal(req.nsteps, 6);
    assert_string_equal(req.steps[5], "aaaaaaaaaaaaaaaaa");
    snprintf(buf, sizeof buf, "%s*%s*%s*%s*%s*%.18s", s32, s32, s32, s32, s32, s32);
    assert_int_equal(parse_text(buf), USSD_ETOOLONG);
    assert_string_equal(err, "text has more than 182 bytes");
    free(s32);
    free(s33);
}

static void test_field_lengths(void **state)
{
    char *s64 = repeat("S", 64), *s65 = repeat("S", 65), buf[256];
    (void)state;

    snprintf(buf, sizeof buf, "sessionId=%s&phoneNumber=1", s64);
    assert_int_equal(parse(buf), USSD_OK);
    assert_string_equal(req.session, s64);
    snprintf(buf, sizeof buf, "sessionId=%s&phoneNumber=1", s65);
    assert_int_equal(parse(buf), USSD_ETOOLONG);
    assert_string_equal(err, "field sessionId has more than 64 bytes");
    assert_int_equal(parse("sessionId=s&phoneNumber=%2B123456789012345678901234567890AB"),
                     USSD_ETOOLONG);
    assert_string_equal(err, "field phoneNumber has more than 32 bytes");
    assert_int_equal(parse("sessionId=s&phoneNumber=1&networkCode=12345678901234567"),
                     USSD_ETOOLONG);
    assert_string_equal(err, "field networkCode has more than 16 bytes");
    assert_int_equal(parse("sessionId=s&phoneNumber=1&networkCode=1234567890123456"), USSD_OK);
    assert_string_equal(req.network, "1234567890123456");
    free(s64);
    free(s65);
}

static void test_body_limit(void **state)
{
    char *body = malloc(USSD_BODY_MAX + 2);
    const char *head = "sessionId=s&phoneNumber=1&text=7&pad=";
    size_t hl = strlen(head);
    (void)state;

    assert_non_null(body);
    memcpy(body, head, hl);
    memset(body + hl, 'x', USSD_BODY_MAX - hl);
    body[USSD_BODY_MAX] = '\0';
    assert_int_equal(parse(body), USSD_OK);
    assert_string_equal(req.steps[0], "7");
    body[USSD_BODY_MAX] = 'x';
    body[USSD_BODY_MAX + 1] = '\0';
    assert_int_equal(parse(body), USSD_ETOOLONG);
    assert_string_equal(err, "body has more than 4096 bytes");
    free(body);
}

static void test_custom_mapping(void **state)
{
    const char *body = "ussd_string=2*+1&service_code=*123%23&msisdn=+221771234567"
                       "&session_id=s-42&networkCode=ignored&sessionId=x&sessionId=y";
    (void)state;

    memset(&req, 0, sizeof req);
    assert_int_equal(ussd_req_parse(&custom_fields, body, strlen(body), &req, err, sizeof err),
                     USSD_OK);
    assert_string_equal(err, "");
    assert_string_equal(req.session, "s-42");
    assert_string_equal(req.service, "*123#");
    assert_string_equal(req.phone, "+221771234567");
    assert_string_equal(req.network, ""); /* not in this mapping */
    assert_int_equal(req.nsteps, 2);
    assert_string_equal(req.steps[0], "2");
    assert_string_equal(req.steps[1], "1");

    body = "sessionId=a&phoneNumber=1&text=1";
    assert_int_equal(ussd_req_parse(&custom_fields, body, strlen(body), &req, err, sizeof err),
                     USSD_EMISSING);
    assert_string_equal(err, "missing field session_id");
    body = "session_id=a&msisdn=1&ussd_string=1*2*3*4*5*6*7*8*9*0*1*2*3*4*5*6*7";
    assert_int_equal(ussd_req_parse(&custom_fields, body, strlen(body), &req, err, sizeof err),
                     USSD_ETOOLONG);
    assert_string_equal(err, "ussd_string has more than 16 steps");
}

static void test_out_untouched_len_and_err_buffer(void **state)
{
    struct ussd_req before;
    const char *body = "sessionId=a&phoneNumber=1&text=1*2";
    char small[8];
    (void)state;

    memset(&req, 0x5A, sizeof req);
    before = req;
    assert_int_equal(ussd_req_parse(&ussd_fields_africastalking, "text=%ZZ", 8, &req, err,
                                    sizeof err),
                     USSD_EINVAL);
    assert_memory_equal(&req, &before, sizeof req);

    /* the body need not be NUL-terminated: only len bytes are read */
    assert_int_equal(ussd_req_parse(&ussd_fields_africastalking, body, strlen(body) - 2, &req,
                                    err, sizeof err),
                     USSD_OK);
    assert_int_equal(req.nsteps, 1);
    assert_string_equal(req.steps[0], "1");

    /* the reason is cut to the buffer, NUL-terminated; err may be NULL */
    assert_int_equal(ussd_req_parse(&ussd_fields_africastalking, "", 0, &req, small, sizeof small),
                     USSD_EMISSING);
    assert_string_equal(small, "missing");
    assert_int_equal(ussd_req_parse(&ussd_fields_africastalking, "", 0, &req, NULL, 0),
                     USSD_EMISSING);
    assert_int_equal(ussd_req_parse(NULL, "", 0, &req, err, sizeof err), USSD_EINVAL);
    assert_int_equal(ussd_req_parse(&ussd_fields_africastalking, NULL, 3, &req, err, sizeof err),
                     USSD_EINVAL);
    assert_int_equal(ussd_req_parse(&ussd_fields_africastalking, "", 0, NULL, err, sizeof err),
                     USSD_EINVAL);
}

/* ---------------------------------------------------------------------------- screens */

static char screen[USSD_SCREEN_MAX];

static void expect_screen(int final, const char *text, const char *want)
{
    int n = ussd_screen(final, text, screen, sizeof screen);
    assert_string_equal(screen, want);
    assert_int_equal(n, (int)strlen(want));
}

/* "CON " + body, for expectations built at run time */
static void expect_con(const char *text, const char *body)
{
    char want[USSD_SCREEN_MAX + 8];
    snprintf(want, sizeof want, "CON %s", body);
    expect_screen(0, text, want);
}

static void test_screen_short_and_prefix(void **state)
{
    (void)state;
    expect_screen(0, "Bienvenue\n1. Inscription\n2. Aide",
                  "CON Bienvenue\n1. Inscription\n2. Aide");
    expect_screen(1, "Merci, a bientot", "END Merci, a bientot");
    expect_screen(7, "x", "END x");
    expect_screen(0, "", "CON ");
    expect_screen(1, "", "END ");
}

static void test_screen_transliteration(void **state)
{
    (void)state;
    /* é à stay (GSM-7), ç -> c (only Ç is GSM-7), œ -> oe, « » -> " */
    expect_screen(0, "\xc3\xa9 \xc3\xa0 \xc3\xa7 \xc5\x93 \xc2\xab\xc2\xbb",
                  "CON \xc3\xa9 \xc3\xa0 c oe \"\"");
    /* ê -> e, ’ -> ', … -> ... */
    expect_screen(1, "F\xc3\xaate d\xe2\x80\x99\xc3\xa9t\xc3\xa9\xe2\x80\xa6",
                  "END Fete d'\xc3\xa9t\xc3\xa9...");
}

static void test_screen_non_gsm_to_question_mark(void **state)
{
    (void)state;
    /* emoji, CJK, Cyrillic, tab: no GSM-7 equivalent -> one '?' each */
    expect_screen(0, "Salut \xf0\x9f\x98\x80 \xe4\xb8\xad\xd0\x96\tok", "CON Salut ? ??\?ok");
    /* invalid UTF-8 and NULL are refused */
    screen[0] = 'x';
    assert_int_equal(ussd_screen(0, "caf\xc3", screen, sizeof screen), -1);
    assert_string_equal(screen, "");
    assert_int_equal(ussd_screen(0, NULL, screen, sizeof screen), -1);
}

static void test_screen_182_and_183(void **state)
{
    char *a182 = repeat("a", 182), *a183 = repeat("a", 183);
    (void)state;

    expect_con(a182, a182);
    expect_con(a183, a182);
    free(a182);
    free(a183);
}

static void test_screen_extension_chars(void **state)
{
    char *e91 = repeat("\xe2\x82\xac", 91), *e92 = repeat("\xe2\x82\xac", 92);
    char *a = repeat("a", 181), text[512], want[256];
    (void)state;

    expect_con(e91, e91); /* 91 x 2 = 182 septets */
    expect_con(e92, e91);
    /* 164 + 9 x 2 = 182 septets: fits; one more character does not */
    snprintf(text, sizeof text, "%.164s{}[]~|^\xe2\x82\xac\\", a);
    expect_con(text, text);
    snprintf(want, sizeof want, "%.164s{}[]~|^\xe2\x82\xac\\", a);
    snprintf(text, sizeof text, "%sx", want);
    expect_con(text, want);
    /* 181 + 2: the extension character does not fit whole; its ESC pair is never split */
    snprintf(text, sizeof text, "%s{", a);
    expect_con(text, a);
    free(e91);
    free(e92);
    free(a);
}

static void test_screen_cut_at_newline(void **state)
{
    char *line = repeat("a", 100), *words = repeat("bb ", 50), text[512];
    (void)state;

    /* newline at septet 100 (second half): cut there although spaces come later */
    snprintf(text, sizeof text, "%s\n%s", line, words);
    expect_con(text, line);
    /* newline exactly after the 182nd septet */
    free(line);
    line = repeat("a", 182);
    snprintf(text, sizeof text, "%s\nSuite", line);
    expect_con(text, line);
    free(line);
    free(words);
}

static void test_screen_cut_at_space(void **state)
{
    char *head = repeat("a", 50), *words = repeat("bbbb ", 30), *a182 = repeat("a", 182);
    char text[512], want[512];
    (void)state;

    /* newline at septet 50 (first half) is not used: the last space is. 51 + 131 septets fit:
     * 26 "bbbb " and one 'b'; the last space fitting is the 26th, which is dropped. */
    snprintf(text, sizeof text, "%s\n%s", head, words);
    snprintf(want, sizeof want, "%s\n%.129s", head, words);
    assert_int_equal(want[strlen(want) - 1], 'b');
    expect_con(text, want);
    /* a space right after the 182nd septet */
    snprintf(text, sizeof text, "%s suite", a182);
    expect_con(text, a182);
    /* a leading space is not a cut point: hard cut */
    snprintf(text, sizeof text, " %s", a182);
    snprintf(want, sizeof want, " %.181s", a182);
    expect_con(text, want);
    free(head);
    free(words);
    free(a182);
}

static void test_screen_multibyte_at_cut(void **state)
{
    char *a = repeat("a", 181), *d182 = repeat("\xce\x94", 182), text[512], want[512];
    (void)state;

    /* é is 1 septet, 2 bytes: it fits as the 182nd septet, whole */
    snprintf(text, sizeof text, "%s\xc3\xa9x", a);
    snprintf(want, sizeof want, "%s\xc3\xa9", a);
    expect_con(text, want);
    assert_int_equal(strlen(screen), 4 + 181 + 2);
    /* emoji as the 182nd character: one '?' */
    snprintf(text, sizeof text, "%s\xf0\x9f\x98\x80", a);
    snprintf(want, sizeof want, "%s?", a);
    expect_con(text, want);
    snprintf(text, sizeof text, "%s\xf0\x9f\x98\x80\xf0\x9f\x98\x80", a);
    expect_con(text, want);
    /* transliteration happens before the cut: "…" is 3 septets */
    snprintf(text, sizeof text, "%.180s\xe2\x80\xa6", a);
    snprintf(want, sizeof want, "%.180s..", a);
    expect_con(text, want);
    /* the largest screen: 182 x Δ (2 bytes, 1 septet) fills USSD_SCREEN_MAX exactly */
    snprintf(text, sizeof text, "%s\xce\x94", d182);
    assert_int_equal(ussd_screen(0, text, screen, USSD_SCREEN_MAX), USSD_SCREEN_MAX - 1);
    assert_memory_equal(screen, "CON ", 4);
    assert_string_equal(screen + 4, d182);
    free(a);
    free(d182);
}

static void test_screen_buffer_size(void **state)
{
    char small[10];
    (void)state;

    assert_int_equal(ussd_screen(1, "Merci", small, 10), 9);
    assert_string_equal(small, "END Merci");
    assert_int_equal(ussd_screen(1, "Merci", small, 9), -1);
    assert_string_equal(small, "");
    assert_int_equal(ussd_screen(1, "Merci", small, 0), -1);
    assert_int_equal(ussd_screen(1, "Merci", NULL, 0), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_request),
        cmocka_unit_test(test_text_absent_and_optional_fields),
        cmocka_unit_test(test_deep_path),
        cmocka_unit_test(test_empty_steps_kept),
        cmocka_unit_test(test_spaces_around_steps),
        cmocka_unit_test(test_phone_plus),
        cmocka_unit_test(test_accents_in_text),
        cmocka_unit_test(test_order_unknown_and_empty_pairs),
        cmocka_unit_test(test_missing_fields),
        cmocka_unit_test(test_repeated_field),
        cmocka_unit_test(test_bad_escape),
        cmocka_unit_test(test_invalid_utf8_nul_control),
        cmocka_unit_test(test_too_many_steps),
        cmocka_unit_test(test_too_long_step_and_text),
        cmocka_unit_test(test_field_lengths),
        cmocka_unit_test(test_body_limit),
        cmocka_unit_test(test_custom_mapping),
        cmocka_unit_test(test_out_untouched_len_and_err_buffer),
        cmocka_unit_test(test_screen_short_and_prefix),
        cmocka_unit_test(test_screen_transliteration),
        cmocka_unit_test(test_screen_non_gsm_to_question_mark),
        cmocka_unit_test(test_screen_182_and_183),
        cmocka_unit_test(test_screen_extension_chars),
        cmocka_unit_test(test_screen_cut_at_newline),
        cmocka_unit_test(test_screen_cut_at_space),
        cmocka_unit_test(test_screen_multibyte_at_cut),
        cmocka_unit_test(test_screen_buffer_size),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
